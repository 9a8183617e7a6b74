"""Stage 1, cold start: lambda1 x SFT (CoT tokens) + lambda2 x InfoNCE (in-batch negatives).

A library trainer (the `lrem train-cold-start` driver and the Airflow task only parse
config and call :func:`train_cold_start`). It runs the same under ``accelerate launch``
on several GPUs: bf16 and gradient checkpointing switch on with a GPU, checkpoints are
written every ``save_every`` optimizer steps, and a rerun resumes from the last one.
"""

from __future__ import annotations

import logging
import math
import random
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from components.config import ColdStartConfig
from components.data.generate import words
from components.model.lrem import LREMModel, QueryBatch
from components.training.losses import info_nce
from components.training.optim import build_optimizer

log = logging.getLogger(__name__)


def named_fields(item: dict, query: str) -> dict[str, str]:
    """The fields of ``item`` (brand, attributes) whose value the query names word for word."""
    qwords = set(words(query))
    fields: dict[str, str] = {}
    values = {"brand": item.get("brand")}
    attributes = item.get("attributes")
    if isinstance(attributes, dict):
        values.update({f"attribute:{k}": v for k, v in attributes.items()})
    for name, value in values.items():
        vw = set(words(value)) if isinstance(value, str) else set()
        if vw and vw <= qwords:
            fields[name] = value
    return fields


def _field(item: dict, name: str) -> Any:
    if name == "brand":
        return item.get("brand")
    attributes = item.get("attributes")
    return attributes.get(name.split(":", 1)[1]) if isinstance(attributes, dict) else None


def triplet_items(triplets: Sequence[dict]) -> dict[str, set[str]]:
    """Query id -> the items its triplets keep (each judged relevant to it by the teacher)."""
    out: dict[str, set[str]] = {}
    for t in triplets:
        out.setdefault(t["query_id"], set()).add(t["item_id"])
    return out


class TripletDataset(Dataset):
    """Query-CoT-Item triplets, optionally with attribute-contrast hard negatives per query.

    A hard negative is an item of the positive's product type that differs from the positive
    in a field the query names (the query says "leather trainers", the positive is leather
    trainers: a canvas pair is a negative), and is not judged relevant to the query. A query
    that names none of its positive's fields gets none: an unjudged item of the right type
    may well be relevant (the demo world judges at most ``max_relevant`` items per query),
    and the batch's other queries are its negatives as before.
    """

    def __init__(self, triplets: Sequence[dict], hard_negatives: int = 0, catalog: Sequence[dict] | None = None,
                 relevant: dict[str, set[str]] | None = None, seed: int = 0, mask_judged: bool = False):
        self.rows = list(triplets)
        self.mask_judged = mask_judged
        self.hard_negatives = hard_negatives
        self.rng = random.Random(seed)
        self.by_type: dict[str, list[dict]] = {}
        self.items: dict[str, dict] = {}
        # without the judgments, a query's own triplet items are what is known to be relevant to it
        self.relevant = relevant if relevant is not None else (triplet_items(self.rows) if mask_judged else {})
        if hard_negatives:
            if catalog is None:
                raise ValueError("hard negatives need the catalog")
            for item in catalog:
                self.items[item["item_id"]] = item
                if item.get("product_type"):
                    self.by_type.setdefault(item["product_type"], []).append(item)

    def __len__(self) -> int:
        return len(self.rows)

    def negatives_for(self, row: dict) -> list[dict]:
        positive = self.items.get(row["item_id"])
        if positive is None:
            return []
        fields = named_fields(positive, row["query"])
        if not fields:
            return []
        pool = self.by_type.get(positive.get("product_type"), [])
        bad = self.relevant.get(row["query_id"], set()) | {row["item_id"]}
        picks: list[dict] = []
        for _ in range(self.hard_negatives * 8):
            if len(picks) == self.hard_negatives or not pool:
                break
            cand = pool[self.rng.randrange(len(pool))]
            if cand["item_id"] in bad or any(c is cand for c in picks):
                continue
            if any(_field(cand, name) != value for name, value in fields.items()):
                picks.append(cand)
        return picks

    def __getitem__(self, idx: int) -> dict:
        row = dict(self.rows[idx])
        if self.mask_judged:
            row["judged"] = self.relevant.get(row.get("query_id"), frozenset())
        if self.hard_negatives:
            row["negatives"] = [(c["item_id"], c["title"]) for c in self.negatives_for(row)]
        return row


def judged_matrix(rows: Sequence[dict], keys: Sequence[str]) -> torch.Tensor | None:
    """(len(rows) x len(keys)) bool: item j is judged relevant to row i's query (rows carry
    ``judged`` when the dataset masks judged negatives); None when no row carries it."""
    if not any("judged" in r for r in rows):
        return None
    return torch.tensor([[k in r.get("judged", ()) for k in keys] for r in rows], dtype=torch.bool)


class ColdStartCollator:
    def __init__(self, model: LREMModel, reasoning: bool = True, private_negatives: bool = False):
        self.model = model
        self.reasoning = reasoning
        self.private_negatives = private_negatives

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        cots = [r["cot"] for r in rows] if self.reasoning else None
        query = self.model.query_batch([r["query"] for r in rows], cots)
        keys = [r["item_id"] for r in rows]
        titles = [r["item_title"] for r in rows]
        owners = []
        for i, r in enumerate(rows):
            for item_id, title in r.get("negatives", []):
                keys.append(item_id)
                titles.append(title)
                owners.append(i)
        item_ids, item_mask = self.model.item_batch(titles)
        return {"query": query, "item_ids": item_ids, "item_mask": item_mask, "item_keys": keys,
                "judged": judged_matrix(rows, keys),
                "negative_owners": owners if self.private_negatives else None,
                "queries": [r["query"] for r in rows], "cots": cots}


class ColdStartObjective(nn.Module):
    """The loss as one module, so DDP/accelerate can wrap it."""

    def __init__(self, model: LREMModel, cfg: ColdStartConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, query: QueryBatch, item_ids: torch.Tensor, item_mask: torch.Tensor,
                item_keys: Sequence[str], queries: Sequence[str] | None = None, cots: Sequence[str] | None = None,
                negative_owners: Sequence[int] | None = None, judged: torch.Tensor | None = None,
                own_cot_query: QueryBatch | None = None, lambda_sft: float | None = None,
                lambda_infonce: float | None = None, replay_ids: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """``own_cot_query``: the same queries after another CoT (the model's own, as evaluation
        does, and/or another query's: ``wrong_cot_ratio``); when given, InfoNCE embeds them
        while SFT still learns the teacher's CoT.
        ``lambda_infonce`` 0 skips the item side altogether (an SFT-only step)."""
        q_emb, sft = self.model.query_forward(query)
        w_nce = self.cfg.lambda_infonce if lambda_infonce is None else lambda_infonce
        if w_nce:
            if own_cot_query is not None:
                q_emb = self.model.encode(own_cot_query.input_ids, own_cot_query.attention_mask)
            i_emb = self.model.encode(item_ids, item_mask)
            nce = info_nce(q_emb, i_emb, self.cfg.temperature, item_keys=item_keys, negative_owners=negative_owners,
                           judged=judged)
        else:
            nce = torch.zeros((), device=sft.device)
        weight = self.cfg.lambda_sft if lambda_sft is None else lambda_sft
        loss = weight * sft + w_nce * nce
        if replay_ids is not None and self.cfg.lm_replay_weight:
            replay = replay_lm_loss(self.model.lm, replay_ids)
            loss = loss + self.cfg.lm_replay_weight * replay
        else:
            replay = torch.zeros((), device=sft.device)
        return {"loss": loss, "sft": sft.detach(), "infonce": nce.detach(), "replay": replay.detach()}


def replay_lm_loss(lm, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over packed sequences (no padding): the pre-training loss."""
    logits = lm(input_ids=ids, use_cache=False).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


class ReplayStream:
    """Packed sequences of the backbone's pre-training text, drawn in a seeded order (one pass,
    then a reshuffle), ``batch`` rows at a time."""

    def __init__(self, tokenizer, docs: Sequence[str], batch: int, seq_len: int, seed: int):
        from components.training.pretrain import _pack

        rows = tokenizer(list(docs), add_special_tokens=False)["input_ids"]
        self.rng = random.Random(seed)
        self.blocks = _pack(rows, tokenizer.eos_token_id, seq_len, self.rng)
        if len(self.blocks) == 0:
            raise ValueError(f"replay text too short for one {seq_len}-token sequence")
        self.batch = batch
        self.order: list[int] = []

    def next(self) -> torch.Tensor:
        picks = []
        while len(picks) < self.batch:
            if not self.order:
                self.order = list(range(len(self.blocks)))
                self.rng.shuffle(self.order)
            picks.append(self.order.pop())
        return self.blocks[picks]


def replay_stream(section: str, cfg, tokenizer, docs: Sequence[str] | None) -> ReplayStream | None:
    """The rehearsal stream a stage's config asks for (``<section>.lm_replay_*``), or None when it is off."""
    if not cfg.lm_replay_weight:
        return None
    if not docs:
        raise ValueError(f"{section}.lm_replay_weight > 0 needs the backbone's pre-training text (replay_docs); "
                         "set it to 0 for a Hugging Face checkpoint")
    return ReplayStream(tokenizer, docs, cfg.lm_replay_batch, cfg.lm_replay_seq_len, cfg.seed)


def swap_cots(cot_ids: Sequence[list[int]], queries: Sequence[str], ratio: float,
              rng: random.Random) -> list[list[int]]:
    """``cot_ids`` with about ``ratio`` of the rows given the CoT of a row of another query."""
    out = [list(c) for c in cot_ids]
    for i, query in enumerate(queries):
        if rng.random() >= ratio:
            continue
        others = [j for j, q in enumerate(queries) if q != query]
        if others:
            out[i] = list(cot_ids[rng.choice(others)])
    return out


def in_sft_warmup(cfg: ColdStartConfig, step: int, total_steps: int) -> bool:
    return cfg.reasoning and step < round(cfg.sft_warmup_ratio * total_steps)


def sft_weight(cfg: ColdStartConfig, step: int, total_steps: int) -> float:
    """lambda_sft at optimizer step ``step`` (0-based): the warm-up weight first, then the paper's."""
    return cfg.sft_warmup_lambda if in_sft_warmup(cfg, step, total_steps) else cfg.lambda_sft


def uses_own_cot(cfg: ColdStartConfig, step: int, total_steps: int) -> bool:
    """Whether step ``step`` trains InfoNCE on the model's own CoT: ``self_cot_ratio`` of the
    steps after the SFT warm-up, spread evenly."""
    if not cfg.reasoning or cfg.self_cot_ratio <= 0:
        return False
    start = round(cfg.sft_warmup_ratio * total_steps)
    if step < start:
        return False
    k = step - start
    return math.floor((k + 1) * cfg.self_cot_ratio) > math.floor(k * cfg.self_cot_ratio)


def _use_gpu_feature(setting: str) -> bool:
    if setting not in ("auto", "true", "false"):
        raise ValueError(f"expected auto/true/false, got {setting!r}")
    return torch.cuda.is_available() if setting == "auto" else setting == "true"


def _latest_checkpoint(ckpt_root: Path) -> tuple[Path | None, int]:
    best, step = None, 0
    for path in ckpt_root.glob("step-*"):
        m = re.fullmatch(r"step-(\d+)", path.name)
        if m and (path / "trainer_state.pt").exists() and int(m.group(1)) > step:
            best, step = path, int(m.group(1))
    return best, step


def per_device_batch_size(global_batch: int, num_processes: int, name: str) -> int:
    """A process's share of a global batch (the config's); several processes never multiply it."""
    if global_batch % num_processes:
        raise ValueError(f"{name} ({global_batch}) is the global batch: it must be divisible by the number of "
                         f"processes ({num_processes})")
    return global_batch // num_processes


def plan_steps(n_examples: int, cfg: ColdStartConfig) -> int:
    batches = math.ceil(n_examples / cfg.batch_size)
    if cfg.max_steps is not None:
        return cfg.max_steps
    return max(1, math.ceil(cfg.epochs * batches / cfg.grad_accum_steps))


def train_cold_start(model: LREMModel, triplets: Sequence[dict], cfg: ColdStartConfig, out_dir: str | Path,
                     catalog: Sequence[dict] | None = None, relevant: dict[str, set[str]] | None = None,
                     log_metrics: Callable[[dict[str, float], int], None] | None = None,
                     show_progress: bool = True, replay_docs: Sequence[str] | None = None) -> dict[str, Any]:
    """Train in place; returns a summary. ``log_metrics(metrics, step)`` receives the logged values.
    ``replay_docs``: the backbone's pre-training text, rehearsed when ``cfg.lm_replay_weight`` > 0.
    ``relevant`` (query id -> judged-relevant item ids): masked as in-batch negatives of the query
    (``cfg.mask_judged_negatives``); without it, each query's own triplet items."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    ckpt_root = out_dir / "checkpoints"
    set_seed(cfg.seed)
    bf16 = _use_gpu_feature(cfg.bf16)
    # the schedule counts optimizer steps: stepped once per step below (accelerate's default steps a
    # prepared scheduler once per process per step, i.e. world-size times too fast)
    # cpu without CUDA: under `accelerate launch` the processes then join one gloo group (MULTI_CPU)
    accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not torch.cuda.is_available(),
                              gradient_accumulation_steps=cfg.grad_accum_steps, step_scheduler_with_optimizer=False)
    per_device_batch = per_device_batch_size(cfg.batch_size, accelerator.num_processes, "cold_start.batch_size")
    if _use_gpu_feature(cfg.gradient_checkpointing):
        model.lm.gradient_checkpointing_enable()

    dataset = TripletDataset(triplets, cfg.hard_negatives, catalog, relevant, seed=cfg.seed,
                             mask_judged=cfg.mask_judged_negatives)
    gen = torch.Generator().manual_seed(cfg.seed)
    # cfg.batch_size is the global batch: each of the processes takes its share of it
    loader = DataLoader(dataset, batch_size=per_device_batch, shuffle=True, drop_last=len(dataset) > cfg.batch_size,
                        collate_fn=ColdStartCollator(model, cfg.reasoning, cfg.hard_negative_scope == "query"),
                        generator=gen)
    total_steps = plan_steps(len(dataset), cfg)
    objective = ColdStartObjective(model, cfg)
    optimizer, scheduler = build_optimizer(model, cfg.learning_rate, cfg.weight_decay, cfg.warmup_ratio, total_steps)
    objective, optimizer, loader, scheduler = accelerator.prepare(objective, optimizer, loader, scheduler)

    replay = replay_stream("cold_start", cfg, model.tokenizer, replay_docs)
    step, consumed_batches, examples_here = 0, 0, 0
    wrong_rng = random.Random(cfg.seed + 1)
    if cfg.resume:
        latest, step = _latest_checkpoint(ckpt_root)
        if latest is not None:
            accelerator.load_state(str(latest))
            consumed_batches = torch.load(latest / "trainer_state.pt")["consumed_batches"]
            log.info("resumed cold start from %s (step %d)", latest, step)

    model.train()
    history: list[dict[str, float]] = []
    window = {"loss": 0.0, "sft": 0.0, "infonce": 0.0, "replay": 0.0, "n": 0, "examples": 0, "own_cot": 0}
    t_window = time.perf_counter()
    t0 = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc="cold start", disable=not (show_progress and accelerator.is_main_process))
    batches_per_epoch = len(loader)
    while step < total_steps:
        epoch, skip = divmod(consumed_batches, batches_per_epoch)
        gen.manual_seed(cfg.seed + epoch)  # same order on resume
        epoch_loader = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in epoch_loader:
            extra: dict[str, Any] = {"lambda_sft": sft_weight(cfg, step, total_steps)}
            if in_sft_warmup(cfg, step, total_steps) and not cfg.sft_warmup_infonce:
                extra["lambda_infonce"] = 0.0
            own = None
            if uses_own_cot(cfg, step, total_steps):
                own = model.generate_cot_ids(batch["queries"])
                window["own_cot"] += 1
            wrong = cfg.reasoning and cfg.wrong_cot_ratio > 0 and not in_sft_warmup(cfg, step, total_steps)
            if own is not None or wrong:
                cot_ids = own if own is not None else [model.cot_ids(c) for c in batch["cots"]]
                if wrong:
                    cot_ids = swap_cots(cot_ids, batch["queries"], cfg.wrong_cot_ratio, wrong_rng)
                extra["own_cot_query"] = model.query_batch_from_ids(model.query_prompts_ids(batch["queries"]),
                                                                    cot_ids).to(accelerator.device)
            if replay is not None:
                extra["replay_ids"] = replay.next().to(accelerator.device)
            with accelerator.accumulate(objective):
                out = objective(**batch, **extra)
                accelerator.backward(out["loss"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(objective.parameters(), cfg.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            consumed_batches += 1
            window["loss"] += float(out["loss"].detach())
            window["sft"] += float(out["sft"])
            window["infonce"] += float(out["infonce"])
            window["replay"] += float(out["replay"])
            window["n"] += 1
            window["examples"] += batch["query"].input_ids.shape[0] * accelerator.num_processes
            examples_here += batch["query"].input_ids.shape[0]
            if not accelerator.sync_gradients:
                continue
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == total_steps or step == 1:
                elapsed = max(time.perf_counter() - t_window, 1e-9)
                metrics = {
                    "cold_start/loss": window["loss"] / window["n"],
                    "cold_start/sft": window["sft"] / window["n"],
                    "cold_start/infonce": window["infonce"] / window["n"],
                    "cold_start/lr": scheduler.get_last_lr()[0],
                    "cold_start/examples_per_s": window["examples"] / elapsed,
                    "cold_start/steps_per_s": (window["n"] / cfg.grad_accum_steps) / elapsed,
                    "cold_start/lambda_sft": extra["lambda_sft"],
                    "cold_start/own_cot_share": window["own_cot"] / window["n"],
                }
                if replay is not None:
                    metrics["cold_start/replay_lm"] = window["replay"] / window["n"]
                history.append({"step": step, **metrics})
                bar.set_postfix(loss=f"{metrics['cold_start/loss']:.3f}", nce=f"{metrics['cold_start/infonce']:.3f}")
                if log_metrics is not None and accelerator.is_main_process:
                    log_metrics(metrics, step)
                window = {"loss": 0.0, "sft": 0.0, "infonce": 0.0, "replay": 0.0, "n": 0, "examples": 0, "own_cot": 0}
                t_window = time.perf_counter()
            if cfg.save_every and step % cfg.save_every == 0 and step < total_steps:
                _save_checkpoint(accelerator, ckpt_root, step, consumed_batches)
            if step >= total_steps:
                break
    bar.close()
    accelerator.wait_for_everyone()
    model.eval()
    model_dir = out_dir / "model"
    if accelerator.is_main_process:
        accelerator.unwrap_model(objective).model.save(model_dir)
        shutil.rmtree(ckpt_root, ignore_errors=True)  # the finished model supersedes them
    return {
        "steps": step,
        "seconds": time.perf_counter() - t0,
        "model_dir": str(model_dir),
        "history": history,
        "first": history[0] if history else {},
        "last": history[-1] if history else {},
        "config": asdict(cfg),
        "num_processes": accelerator.num_processes,
        "per_device_batch_size": per_device_batch,
        "examples_this_process": examples_here,  # since this call started (a resumed run: after the checkpoint)
        "lr_last": scheduler.get_last_lr()[0],
    }


def _save_checkpoint(accelerator, ckpt_root: Path, step: int, consumed_batches: int) -> None:
    path = ckpt_root / f"step-{step}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        torch.save({"step": step, "consumed_batches": consumed_batches}, path / "trainer_state.pt")
        for old in ckpt_root.glob("step-*"):  # keep only the newest
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
