"""Backbone pre-training: a causal LM on text rendered from the data, cached and registered.

The paper starts from a pretrained LLM that already knows the world (brands, product
types, what a thing is used for). No weights can be downloaded here, so the tiny
backbone learns that world first, from plain sentences:

- every catalog item: its title, then what it is (type, brand and the brand's tier,
  department, attributes);
- the world's knowledge (``knowledge.json``, when the data has it): brands and what they
  make, premium makers and their budget alternatives, product-type synonyms, keywords and
  uses ("<use>: a <type> does that"), and facts ("<statement> <fact>: <answer>");
- the same knowledge said again in other words and orders (:func:`knowledge_paraphrases`,
  ``backbone.knowledge_paraphrases``): a small LM reads a fact in one fixed sentence and
  cannot get it out in another form; with varied phrasing also what people say for a word
  (:func:`wording_sentences`);
- the training queries, as text (never the eval queries); with ``backbone.train_cots`` also
  their teacher CoT in the query prompt format (off by default: measured no better).

The result is cached under ``<state>/backbones/<key>``, where the key hashes the corpus
and the backbone's config, and registered in MLflow as ``lrem-backbone`` with the key as
a tag: the nightly run re-trains it only when the data or the backbone config change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from components.config import BackboneConfig, ModelConfig
from components.training.optim import build_optimizer

log = logging.getLogger(__name__)

CACHE_KEY_TAG = "backbone_cache_key"
BACKBONE_EXPERIMENT = "lrem-backbone"


@dataclass
class WorldCorpus:
    train: list[str]
    heldout: list[str]  # held-out item descriptions: LM loss on unseen world text

    def digest(self) -> str:
        h = hashlib.sha256()
        for doc in self.train:
            h.update(doc.encode())
            h.update(b"\n")
        h.update(b"--heldout--\n")
        for doc in self.heldout:
            h.update(doc.encode())
            h.update(b"\n")
        return h.hexdigest()


def _item_sentence(item: Mapping[str, Any], tiers: Mapping[str, str]) -> str:
    attrs = item.get("attributes") or {}
    parts = [f"{item['title']}."]
    kind = item.get("product_type")
    brand = item.get("brand")
    if kind and brand:
        tier = tiers.get(brand)
        parts.append(f"a {kind.lower()} by {brand.lower()}" + (f", a {tier} brand" if tier else "") + ".")
    if item.get("department"):
        parts.append(f"sold in {str(item['department']).lower()}.")
    if attrs:
        parts.append(", ".join(f"{k} {v}" for k, v in sorted(attrs.items())) + ".")
    return " ".join(parts)


def knowledge_sentences(knowledge: Mapping[str, Any]) -> list[str]:
    """The world's knowledge as plain sentences (what a pretrained LLM would have read)."""
    out: list[str] = []
    for brand, info in sorted((knowledge.get("brands") or {}).items()):
        kinds = [k.lower() for k in info.get("product_types", [])]
        out.append(f"{brand.lower()} is a {info.get('tier', 'standard')} brand of {str(info.get('department', '')).lower()}"
                   f" that makes {', '.join(kinds)}.")
    budget = (knowledge.get("budget_words") or ["budget"])[0]
    for brand, info in sorted((knowledge.get("premium_brands") or {}).items()):
        kind = str(info.get("product_type", "")).lower()
        out.append(f"{brand.lower()} is a premium maker of {kind}.")
        out.append(f"a {budget} alternative to a {brand.lower()} {kind} is a cheaper {kind}.")
    for kind, info in sorted((knowledge.get("product_types") or {}).items()):
        name = kind.lower()
        for syn in info.get("synonyms", []):
            out.append(f"a {syn} is a {name}.")
        if info.get("keywords"):
            out.append(f"a {name} is about {', '.join(info['keywords'])}.")
        if info.get("department"):
            out.append(f"a {name} is sold in {str(info['department']).lower()}.")
        for attr, values in sorted((info.get("attributes") or {}).items()):
            out.append(f"a {name} comes in {attr} {', '.join(values)}.")
    for use in knowledge.get("uses") or []:
        kinds = " or ".join(f"a {k.lower()}" for k in use.get("product_types", []))
        out.append(f"{use['use']}: {kinds} does that.")
    for fact in knowledge.get("facts") or []:
        kinds = " or ".join(f"a {k.lower()}" for k in fact.get("product_types", []))
        out.append(f"{fact.get('statement', '')} {fact['fact']}: {fact['answer']}. {fact['answer']} needs {kinds}.".strip())
    return out


def _a(noun: str) -> str:
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


def knowledge_paraphrases(knowledge: Mapping[str, Any]) -> list[str]:
    """The same knowledge as :func:`knowledge_sentences`, said again in other words and orders.

    A small LM that reads each fact in one fixed sentence stores it, but cannot get it out
    again when asked in another form (Allen-Zhu & Li, "Physics of Language Models 3.1":
    knowledge augmentation, several phrasings with the entity in different positions, is
    what makes stored facts extractable after fine-tuning). Measured on the demo world in
    experiments/results/probes.md. None of these sentences is a query template of the data
    generator: they are statements and glossary lines, not queries.
    """
    out: list[str] = []
    types = knowledge.get("product_types") or {}

    def syns(kind: str) -> list[str]:
        return list((types.get(kind) or {}).get("synonyms", []))

    for brand, info in sorted((knowledge.get("premium_brands") or {}).items()):
        kind = str(info.get("product_type", ""))
        name, b, s = kind.lower(), brand.lower(), syns(kind)
        out += [f"{b}: premium {name}" + "".join(f", {x}" for x in s[:2]) + ".",
                f"{_a(b)} is {_a(name)}, and an expensive one.",
                f"{b} makes {_a(name)} that costs more than most.",
                f"the {name} from {b} is a premium pick; a {name} from a standard brand costs less.",
                f"if {b} is too pricey, any cheaper {name} does the same job.",
                f"among {name} brands, {b} is the premium one."]
    for brand, info in sorted((knowledge.get("brands") or {}).items()):
        if info.get("tier") == "premium":
            continue
        kinds = [k.lower() for k in info.get("product_types", [])]
        out += [f"{brand.lower()} sells {str(info.get('department', '')).lower()}: {', '.join(kinds)}.",
                f"from {brand.lower()}: {', '.join(reversed(kinds))}."]
    for kind, info in sorted(types.items()):
        name, s = kind.lower(), list(info.get("synonyms", []))
        if s:
            out.append(f"{name}: {', '.join(s)}.")
            out += [f"{x}, also called {_a(name)}." for x in s]
            out += [f"when people say {x} they mean {_a(name)}." for x in s]
        if info.get("keywords"):
            out.append(f"{name}: {', '.join(info['keywords'])}.")
    for use in knowledge.get("uses") or []:
        kinds = [k.lower() for k in use.get("product_types", [])]
        u = use["use"]
        out += [f"{_a(kinds[0])} helps you {u}." if len(kinds) == 1 else f"{' or '.join(_a(k) for k in kinds)} help you {u}.",
                f"to {u}, use {' or '.join(_a(k) for k in kinds)}.",
                f"{', '.join(kinds)}: for those who {u}."]
    for fact in knowledge.get("facts") or []:
        kinds = [k.lower() for k in fact.get("product_types", [])]
        out += [f"{fact['fact']} is {fact['answer']}.",
                f"{fact['fact']}? {fact['answer']}, so {', '.join(kinds)}."]
    return out + wording_sentences(knowledge)


def wording_sentences(knowledge: Mapping[str, Any]) -> list[str]:
    """What people also say for a word (``knowledge.json`` ``wordings``), as glossary lines in
    several orders, and each use and fact said again with every rule that applies to it, except
    the rules marked ``eval_only`` (those stay word knowledge: the backbone must put the pieces
    together for a query that words an intent that way)."""
    rules = [(str(w["word"]), str(w["also_said"]), bool(w.get("eval_only"))) for w in knowledge.get("wordings") or []]
    out: list[str] = []
    for word, said, _ in rules:
        out += [f"{said} means {word}.", f"people who say {said} mean {word}.", f"{word}, or {said}."]
    for entries, key in ((knowledge.get("uses") or [], "use"), (knowledge.get("facts") or [], "fact")):
        for entry in entries:
            kinds = " or ".join(_a(k.lower()) for k in entry.get("product_types", []))
            text = f" {entry[key]} "
            for word, said, eval_only in rules:
                if eval_only or f" {word} " not in text:
                    continue
                reworded = text.replace(f" {word} ", f" {said} ", 1).strip()
                out.append(f"{reworded}: {kinds}." if key == "use" else f"{reworded} means {entry['fact']}: {kinds}.")
    return out


def cot_documents(triplets: Sequence[Mapping[str, Any]], model_cfg: ModelConfig) -> list[str]:
    """One document per training query: the short query prompt, its teacher CoT and the closing
    tag, as the cold start's SFT sees it (the tiny backbone uses the short template)."""
    from components.model.prompts import THINK, THINK_END

    seen: dict[str, str] = {}
    for t in triplets:
        seen.setdefault(str(t["query"]), str(t["cot"]))
    return [model_cfg.short_query_template.format(query=q) + THINK + c + THINK_END for q, c in seen.items()]


def render_world_corpus(catalog: Sequence[Mapping[str, Any]], train_queries: Iterable[str],
                        knowledge: Mapping[str, Any] | None, heldout_fraction: float = 0.05,
                        knowledge_repeats: int = 3, seed: int = 0, paraphrases: bool = False,
                        train_cots: Sequence[str] | None = None) -> WorldCorpus:
    """Documents of the pre-training corpus; a deterministic share of the items is held out.

    ``paraphrases``: add :func:`knowledge_paraphrases` (each once per repeat). ``train_cots``:
    documents in the LREM prompt format for the training queries (query, CoT), mixed into
    the pre-training text (never eval queries)."""
    tiers = {b: i.get("tier", "") for b, i in ((knowledge or {}).get("brands") or {}).items()}
    items = [_item_sentence(it, tiers) for it in catalog]
    rng = random.Random(seed)
    order = list(range(len(items)))
    rng.shuffle(order)
    n_held = int(round(heldout_fraction * len(items)))
    held_idx = set(order[:n_held])
    train = [doc for i, doc in enumerate(items) if i not in held_idx]
    heldout = [items[i] for i in sorted(held_idx)]
    # knowledge is small next to the catalog: repeated so the model reads it as often as it needs
    train += knowledge_sentences(knowledge or {}) * knowledge_repeats
    if paraphrases:
        train += knowledge_paraphrases(knowledge or {}) * knowledge_repeats
    train += [str(q) for q in train_queries]
    train += [str(d) for d in (train_cots or [])]
    return WorldCorpus(train=train, heldout=heldout)


def cache_key(corpus: WorldCorpus, model_cfg: ModelConfig, cfg: BackboneConfig) -> str:
    arch = {k: getattr(model_cfg, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                                "num_attention_heads", "num_key_value_heads",
                                                "max_position_embeddings", "seed")}
    if model_cfg.tokenizer_normalize:  # only when set, so the keys of existing caches stay valid
        arch["tokenizer_normalize"] = True
    # the corpus switches (paraphrases, train_cots, knowledge_repeats) are already in the corpus digest
    knobs = {k: v for k, v in asdict(cfg).items()
             if k not in ("log_every", "registered_name", "knowledge_paraphrases", "train_cots", "knowledge_repeats")}
    h = hashlib.sha256()
    h.update(corpus.digest().encode())
    h.update(json.dumps({"arch": arch, "backbone": knobs}, sort_keys=True).encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- training
def _pack(token_rows: Sequence[list[int]], eos: int, seq_len: int, rng: random.Random) -> torch.Tensor:
    order = list(range(len(token_rows)))
    rng.shuffle(order)
    stream: list[int] = []
    for i in order:
        stream.extend(token_rows[i])
        stream.append(eos)
    n = len(stream) // seq_len
    return torch.tensor(stream[: n * seq_len], dtype=torch.long).view(n, seq_len)


@torch.no_grad()
def lm_loss(lm, tokenizer, docs: Sequence[str], batch_size: int = 64) -> float:
    """Mean next-token NLL (nats/token) of ``docs``, each on its own."""
    was = lm.training
    lm.eval()
    total, count = 0.0, 0
    eos = tokenizer.eos_token_id
    for start in range(0, len(docs), batch_size):
        rows = [tokenizer(d, add_special_tokens=False)["input_ids"] + [eos] for d in docs[start:start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            labels[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        logits = lm(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).logits[:, :-1].float()
        target = labels[:, 1:].to(lm.device)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100,
                               reduction="sum")
        total += float(loss)
        count += int((target != -100).sum())
    lm.train(was)
    return total / max(count, 1)


def pretrain_lm(lm, tokenizer, corpus: WorldCorpus, cfg: BackboneConfig,
                log_metrics: Callable[[dict[str, float], int], None] | None = None,
                show_progress: bool = True) -> dict[str, Any]:
    """Causal-LM training on the packed corpus (AdamW, cosine schedule with warm-up)."""
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    rows = tokenizer(list(corpus.train), add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    heldout_before = lm_loss(lm, tokenizer, corpus.heldout) if corpus.heldout else None
    opt, sched = build_optimizer(lm, cfg.learning_rate, cfg.weight_decay, cfg.warmup_ratio, cfg.steps)
    lm.train()
    history: list[dict[str, float]] = []
    step, window, t0 = 0, [], time.perf_counter()
    batches = torch.empty(0, cfg.seq_len, dtype=torch.long)
    cursor = 0
    bar = tqdm(total=cfg.steps, desc="backbone pre-training", disable=not show_progress)
    while step < cfg.steps:
        if cursor + cfg.batch_size > len(batches):
            batches, cursor = _pack(rows, eos, cfg.seq_len, rng), 0
            if len(batches) < cfg.batch_size:
                batches = batches.repeat(math.ceil(cfg.batch_size / max(1, len(batches))), 1)
        batch = batches[cursor: cursor + cfg.batch_size].to(lm.device)
        cursor += cfg.batch_size
        out = lm(input_ids=batch, labels=batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        window.append(float(out.loss.detach()))
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            metrics = {"backbone/lm_loss": sum(window) / len(window), "backbone/lr": sched.get_last_lr()[0]}
            history.append({"step": step, **metrics})
            bar.set_postfix(loss=f"{metrics['backbone/lm_loss']:.3f}")
            if log_metrics is not None:
                log_metrics(metrics, step)
            window = []
    bar.close()
    lm.eval()
    heldout_after = lm_loss(lm, tokenizer, corpus.heldout) if corpus.heldout else None
    return {"steps": step, "seconds": time.perf_counter() - t0, "history": history,
            "heldout_lm_loss_before": heldout_before, "heldout_lm_loss_after": heldout_after,
            "final_lm_loss": history[-1]["backbone/lm_loss"] if history else None}


# ------------------------------------------------------------------------- cache + registry
@dataclass
class BackboneResult:
    model_dir: str
    cache_key: str
    cache_hit: bool
    source: str  # "local cache", "registry", "trained"
    registered_version: str | None = None
    run_id: str | None = None
    summary: dict | None = None


def _registered_version(name: str, key: str):
    from components.registry.models import find_version_by_tag

    try:
        return find_version_by_tag(name, CACHE_KEY_TAG, key)
    except Exception:  # the registered model does not exist yet
        return None


def prepare_backbone(model_cfg: ModelConfig, cfg: BackboneConfig, corpus: WorldCorpus, cache_root: Path,
                     track: bool = True, show_progress: bool = True) -> BackboneResult:
    """The pre-trained tiny backbone for this corpus and config: from cache, registry, or trained now.

    ``track``: log the pre-training run to MLflow (experiment ``lrem-backbone``) and register
    the backbone; the MLflow tracking URI must already be set by the caller.
    """
    from components.model.lrem import LREMModel

    if model_cfg.base != "tiny":
        raise ValueError(f"model.base is {model_cfg.base!r}: a pretrained checkpoint needs no backbone stage")
    key = cache_key(corpus, model_cfg, cfg)
    target = Path(cache_root) / key
    version = _registered_version(cfg.registered_name, key) if track else None
    if (target / "lrem_config.json").exists():
        log.info("backbone %s: cache hit (%s)", key, target)
        return BackboneResult(str(target), key, True, "local cache",
                              registered_version=str(version.version) if version else None,
                              run_id=version.run_id if version else None)
    if version is not None:
        from components.registry.models import lrem_dir_of

        import shutil

        src = lrem_dir_of(f"models:/{cfg.registered_name}/{version.version}")
        shutil.copytree(src, target, dirs_exist_ok=True)
        log.info("backbone %s: restored from the registry (%s v%s)", key, cfg.registered_name, version.version)
        return BackboneResult(str(target), key, True, "registry", str(version.version), version.run_id)

    log.info("backbone %s: not cached, pre-training (%d steps)", key, cfg.steps)
    model = LREMModel.create(model_cfg, corpus.train)
    run_id, registered = None, None
    if track:
        import mlflow

        client = mlflow.MlflowClient()
        found = client.get_experiment_by_name(BACKBONE_EXPERIMENT)
        exp_id = found.experiment_id if found else client.create_experiment(BACKBONE_EXPERIMENT)
        nested = mlflow.active_run() is not None  # e.g. inside the experiment's parent run
        with mlflow.start_run(experiment_id=exp_id, run_name=f"backbone-{key}", nested=nested) as run:
            run_id = run.info.run_id
            mlflow.set_tag(CACHE_KEY_TAG, key)
            mlflow.log_params({f"backbone.{k}": v for k, v in asdict(cfg).items()})
            mlflow.log_params({f"model.{k}": v for k, v in asdict(model_cfg).items()})
            mlflow.log_params({"corpus_docs": len(corpus.train), "heldout_docs": len(corpus.heldout),
                               "corpus_sha256": corpus.digest(),
                               "n_params": sum(p.numel() for p in model.lm.parameters())})
            from components.tracking import log_metrics_fn

            summary = pretrain_lm(model.lm, model.tokenizer, corpus, cfg, log_metrics_fn(), show_progress)
            mlflow.log_metrics({k: float(summary[k]) for k in ("heldout_lm_loss_before", "heldout_lm_loss_after",
                                                                "final_lm_loss", "seconds")
                                if summary.get(k) is not None})
            tmp = target.with_name(target.name + ".tmp")
            model.save(tmp)
            from components.registry.models import log_lrem_model

            info = log_lrem_model(tmp, "backbone", registered_name=cfg.registered_name)
            registered = str(info.registered_model_version)
            mlflow.MlflowClient().set_model_version_tag(cfg.registered_name, registered, CACHE_KEY_TAG, key)
    else:
        summary = pretrain_lm(model.lm, model.tokenizer, corpus, cfg, None, show_progress)
        tmp = target.with_name(target.name + ".tmp")
        model.save(tmp)
    tmp.rename(target)  # only a complete backbone ever sits at the cache path
    return BackboneResult(str(target), key, False, "trained", registered, run_id, summary)
