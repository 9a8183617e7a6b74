"""Stage 2: GRPO with TRL's GRPOTrainer on the cold-start model, as the paper does it.

The policy samples G CoTs per query after ``<think>``; generation stops at ``</think>``.
Rewards are small named callables built from what they need (:data:`REWARDS`), weighted
as the paper does by default, 0.5 format + 0.2 length + 1.0 accuracy:

- ``format``: the CoT closed itself with ``</think>``, is not empty and holds no special token;
- ``length``: at most ``max_cot_tokens`` CoT tokens;
- ``accuracy``: 1 - log(rank) / log(N) for the query's relevant items, ranked among N catalog
  items by the query embedding taken after the sampled CoT with the current policy (mean
  over the relevant items in the pool).

The paper keeps InfoNCE on during RL, averaged over the G sampled embeddings:
loss = L_GRPO + 0.1 x L_InfoNCE. :class:`LREMGRPOTrainer` adds that term to TRL's loss (its
positive for a completion: one of the query's teacher-kept items drawn at random, by default;
always the first one pulled each query to a single item and moved the embedding, probes.md),
and optionally ``lm_replay_weight`` x the causal-LM loss on the backbone's pre-training text
(rehearsal, as in the cold start: not in the paper, whose backbone is a 3B LLM that a few
RL steps at lr 1e-6 do not make forget; a tiny backbone at a higher rate does).
No KL term (``beta`` 0). Every reward component, the InfoNCE term, the policy loss and the
CoT length are logged per step.

Checkpoints (``save_every``): TRL's (the Trainer's) checkpoint of weights, optimizer, schedule,
step and every process's RNG, plus this module's own random state (the InfoNCE term's positives
and negatives, the accuracy reward's targets and pool and its cached catalog embeddings, the
rehearsal stream) and a marker written last, once every process has written its part. A rerun
in the same ``out_dir`` resumes from the newest marked checkpoint of the same run (config,
prompts, catalog, number of processes and starting weights) and ends with the weights an
uninterrupted run would have (tests/training/test_distributed.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from components.config import GRPOStageConfig
from components.model import prompts
from components.model.lrem import LREMModel
from components.training.cold_start import ReplayStream, replay_lm_loss, replay_stream, triplet_items
from components.training.losses import info_nce

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ rewards
class FormatReward:
    """1 when the completion closed its CoT with ``</think>``, the CoT is non-empty and clean."""

    __name__ = "reward_format"

    def __init__(self, close_id: int, banned_ids: Sequence[int]):
        self.close_id = close_id
        self.banned = set(banned_ids)

    def __call__(self, completion_ids, **_: Any) -> list[float]:
        out = []
        for ids in completion_ids:
            ids = list(ids)
            closed = self.close_id in ids
            cot = ids[: ids.index(self.close_id)] if closed else ids
            out.append(1.0 if closed and cot and not self.banned.intersection(cot) else 0.0)
        return out


class LengthReward:
    """1 when the CoT (up to ``</think>``) has at most ``max_tokens`` tokens."""

    __name__ = "reward_length"

    def __init__(self, close_id: int, max_tokens: int):
        self.close_id = close_id
        self.max_tokens = max_tokens

    def __call__(self, completion_ids, **_: Any) -> list[float]:
        out = []
        for ids in completion_ids:
            ids = list(ids)
            n = ids.index(self.close_id) if self.close_id in ids else len(ids)
            out.append(1.0 if n <= self.max_tokens else 0.0)
        return out


class RankAccuracyReward:
    """1 - log(rank) / log(N) of the query's relevant items after the sampled CoT.

    The pool holds the relevant items of every query in the batch (at most ``max_targets``
    each) and random catalog items up to ``pool_size``; a query's rank for one of its items
    counts the pool items that are not relevant to it and score higher. Scored with the live
    policy: the query is embedded after the sampled CoT tokens, the items as the index would.

    ``pool_size`` 0 (or at least the catalog's size) ranks against the WHOLE catalog, as the
    evaluation and the index do: the item embeddings are then computed once every
    ``refresh_every`` calls (one call per generation batch) with the live policy and reused in
    between, since embedding every item on every step would cost more than the step.
    """

    __name__ = "reward_accuracy"

    def __init__(self, model: LREMModel, item_titles: Mapping[str, str], relevant: Mapping[str, set[str]],
                 pool_size: int, max_targets: int = 4, seed: int = 0, refresh_every: int = 10):
        if pool_size < 0 or refresh_every < 1:
            raise ValueError(f"reward pool_size must be >= 0 (0: the whole catalog) and refresh_every >= 1, "
                             f"got {pool_size} and {refresh_every}")
        self.model = model
        self.titles = item_titles
        self.relevant = relevant
        self.max_targets = max_targets
        self.rng = random.Random(seed)
        self.catalog = sorted(item_titles)
        self.full_catalog = pool_size == 0 or pool_size >= len(self.catalog)
        self.pool_size = len(self.catalog) if self.full_catalog else pool_size
        self.refresh_every = refresh_every
        self._calls = 0
        self._catalog_emb: torch.Tensor | None = None

    def state_dict(self) -> dict:
        """What a resumed run needs to draw the same targets and pools and rank against the same
        cached catalog embeddings as the run it continues."""
        return {"rng": self.rng.getstate(), "calls": self._calls, "catalog_emb": self._catalog_emb}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(_as_random_state(state["rng"]))
        self._calls = int(state["calls"])
        self._catalog_emb = state["catalog_emb"]

    def _item_embeddings(self, pool: Sequence[str]) -> torch.Tensor:
        if not self.full_catalog:
            return torch.from_numpy(self.model.embed_items([self.titles[i] for i in pool]))
        if self._catalog_emb is None or self._calls % self.refresh_every == 0:
            self._catalog_emb = torch.from_numpy(self.model.embed_items([self.titles[i] for i in self.catalog]))
        return self._catalog_emb

    def _pool(self, query_ids: Sequence[str]) -> tuple[list[str], dict[str, list[str]]]:
        targets = {}
        for qid in dict.fromkeys(query_ids):
            rel = sorted(i for i in self.relevant.get(qid, ()) if i in self.titles)
            targets[qid] = self.rng.sample(rel, min(len(rel), self.max_targets))
        if self.full_catalog:
            return self.catalog, targets
        pool = list(dict.fromkeys(t for ts in targets.values() for t in ts))
        seen = set(pool)
        while len(pool) < self.pool_size and len(seen) < len(self.catalog):
            cand = self.catalog[self.rng.randrange(len(self.catalog))]
            if cand not in seen:
                seen.add(cand)
                pool.append(cand)
        return pool, targets

    @torch.no_grad()
    def __call__(self, prompts, completion_ids, query, query_id, **_: Any) -> list[float]:
        pool, targets = self._pool(query_id)
        cots = [self.model.split_completion(ids)[0] for ids in completion_ids]
        q = torch.from_numpy(self.model.embed_queries_after_cot_ids(list(query), cots))
        items = self._item_embeddings(pool)
        self._calls += 1
        scores = q @ items.T
        index = {item: j for j, item in enumerate(pool)}
        negs: dict[str, torch.Tensor] = {}
        out = []
        for row, qid in enumerate(query_id):
            rel = self.relevant.get(qid, set())
            if qid not in negs:
                negs[qid] = torch.tensor([item not in rel for item in pool])
            neg = negs[qid]
            n = int(neg.sum()) + 1
            vals = []
            for t in targets[qid]:
                own = scores[row, index[t]]
                rank = int(((scores[row] > own) & neg).sum()) + 1
                vals.append(1.0 - math.log(rank) / math.log(n) if n > 1 else 1.0)
            out.append(sum(vals) / len(vals) if vals else 0.0)
        return out


@dataclass
class RewardContext:
    """What the reward factories may use."""

    model: LREMModel
    item_titles: Mapping[str, str]
    relevant: Mapping[str, set[str]]
    cfg: GRPOStageConfig


REWARDS: dict[str, Callable[[RewardContext], Callable]] = {
    "format": lambda ctx: FormatReward(ctx.model.close_id, ctx.model.banned_in_cot),
    "length": lambda ctx: LengthReward(ctx.model.close_id, ctx.model.spec.max_cot_tokens),
    "accuracy": lambda ctx: RankAccuracyReward(ctx.model, ctx.item_titles, ctx.relevant, ctx.cfg.reward_pool_size,
                                               seed=ctx.cfg.seed, refresh_every=ctx.cfg.reward_refresh_steps),
}


def _as_random_state(state) -> tuple:
    """``random.Random.getstate()`` as saved (torch.save keeps tuples; be lenient with lists)."""
    version, internal, gauss = state
    return int(version), tuple(int(x) for x in internal), gauss


def build_rewards(names: Sequence[str], ctx: RewardContext) -> list[Callable]:
    unknown = [n for n in names if n not in REWARDS]
    if unknown:
        raise ValueError(f"unknown reward functions {unknown}; known: {sorted(REWARDS)}")
    return [REWARDS[n](ctx) for n in names]


# ------------------------------------------------------------------------------ trainer
def rl_infonce(model: LREMModel, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
               completion_mask: torch.Tensor, positives: Sequence[str], item_titles: Mapping[str, str],
               negatives: Sequence[str], temperature: float,
               judged_sets: Sequence[set[str]] | None = None) -> torch.Tensor:
    """InfoNCE of the queries embedded after their sampled CoTs (one row per completion, so the
    mean is over the G samples of each query) against their positives, the other queries'
    positives and ``negatives`` from the catalog. Gradients flow into the policy.
    ``judged_sets`` (one per row): items judged relevant to the row's query, masked as its
    negatives (the other completions of the same query carry its other items as positives)."""
    prompts_list = [p[m.bool()].tolist() for p, m in zip(prompt_ids, prompt_mask)]
    cots = [model.split_completion(c[m.bool()].tolist())[0] for c, m in zip(completion_ids, completion_mask)]
    batch = model.query_batch_from_ids(prompts_list, cots).to(model.device)
    q = model.encode(batch.input_ids, batch.attention_mask)
    keys = list(positives) + [n for n in negatives if n not in set(positives)]
    unique = list(dict.fromkeys(keys))
    ids, mask = model.item_batch([item_titles[k] for k in unique])
    emb = model.encode(ids.to(model.device), mask.to(model.device))
    where = {k: j for j, k in enumerate(unique)}
    items = emb[torch.tensor([where[k] for k in keys], device=emb.device)]
    judged = None
    if judged_sets is not None:
        judged = torch.tensor([[k in js for k in keys] for js in judged_sets], dtype=torch.bool, device=q.device)
    return info_nce(q, items, temperature, item_keys=keys, n_positives=len(positives), judged=judged)


CHECKPOINT_MARKER = "lrem_checkpoint.json"  # written last: a checkpoint without it is incomplete


def _lrem_state_file(process_index: int) -> str:
    return f"lrem_state_{process_index}.pt"


def latest_checkpoint(root: str | Path, fingerprint: str) -> tuple[Path | None, int]:
    """The newest complete checkpoint (``checkpoint-N`` holding the marker, written after every
    process saved its part) of the run with ``fingerprint`` under ``root``, and its step."""
    best, step = None, 0
    for path in Path(root).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if not m or int(m.group(1)) <= step:
            continue
        try:
            marker = json.loads((path / CHECKPOINT_MARKER).read_text())
        except (OSError, ValueError):
            continue
        if marker.get("fingerprint") == fingerprint and marker.get("step") == int(m.group(1)):
            best, step = path, int(m.group(1))
    return best, step


def weights_digest(lm: torch.nn.Module) -> str:
    """sha256 of a model's state dict (names and bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(lm.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_fingerprint(cfg: GRPOStageConfig, rows: Sequence[dict], item_ids: Sequence[str], world: int,
                    start_digest: str) -> str:
    """What a checkpoint can be resumed by: the same config, prompts, catalog, number of
    processes and starting weights (a cold start retrained in the same run is another start)."""
    from dataclasses import asdict

    h = hashlib.sha256()
    h.update(json.dumps({"cfg": asdict(cfg), "world": world, "start": start_digest}, sort_keys=True).encode())
    h.update(json.dumps([[r["query_id"], r["prompt"], r["item_indices"]] for r in rows]).encode())
    h.update(json.dumps(list(item_ids)).encode())
    return h.hexdigest()[:24]


def make_trainer_class():
    """:class:`LREMGRPOTrainer`, built lazily so importing this module does not import TRL."""
    from transformers import TrainerCallback
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
    from trl import GRPOTrainer
    from trl.trainer.utils import RepeatSampler

    class EpochRepeatSampler(RepeatSampler):
        """TRL's sampler, its shuffle seeded by (seed, epoch): TRL's draws each epoch's order from
        one generator that a resumed run recreates, so a run resumed past epoch 0 would replay
        epoch 0's order. :class:`_SamplerEpoch` sets the epoch before each one, resumed or not."""

        epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = int(epoch)

        def __iter__(self):
            if self.shuffle:
                self.generator.manual_seed((self.seed or 0) + self.epoch)
            return super().__iter__()

    class _SamplerEpoch(TrainerCallback):
        """The epoch for the sampler, from the trainer's state at the start of each epoch (the
        Trainer's own ``set_epoch`` does not reach the sampler under several processes once a
        resumed run skips batches: accelerate wraps it one level deeper than it looks)."""

        def __init__(self, trainer):
            self.trainer = trainer

        def on_epoch_begin(self, _args, state, _control, **_kw):
            sampler = getattr(self.trainer, "_lrem_sampler", None)
            if sampler is not None:  # state.epoch: whole at an epoch's start, e + k/n when resumed mid-epoch
                sampler.set_epoch(math.floor(state.epoch or 0))

    class LREMGRPOTrainer(GRPOTrainer):
        """TRL's GRPO plus the paper's InfoNCE term: loss = L_GRPO + lambda x L_InfoNCE."""

        lrem_fingerprint = ""  # of the run, written into each checkpoint's marker

        def __init__(self, *args, lrem: LREMModel, item_titles: Mapping[str, str], item_ids: Sequence[str],
                     lambda_infonce: float, temperature: float, n_negatives: int, seed: int = 0,
                     replay: ReplayStream | None = None, lm_replay_weight: float = 0.0,
                     random_positive: bool = False, judged: Mapping[str, set[str]] | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.judged = judged  # query id -> judged-relevant item ids: not negatives of that query
            self.query_index: dict[str, int] = {}  # query id -> its number in lrem_query
            self.query_names: list[str] = []
            self.random_positive = random_positive
            self.replay = replay
            self.lm_replay_weight = lm_replay_weight if replay is not None else 0.0
            self.lrem = lrem
            self.item_titles = item_titles
            self.item_ids = list(item_ids)
            self.lambda_infonce = lambda_infonce
            self.nce_temperature = temperature
            self.n_negatives = n_negatives
            self.nce_rng = random.Random(seed)
            self.add_callback(_SamplerEpoch(self))

        def _get_train_sampler(self, dataset=None):
            trl = super()._get_train_sampler(dataset)
            self._lrem_sampler = EpochRepeatSampler(trl.data_source, trl.mini_repeat_count, trl.batch_size,
                                                    trl.repeat_count, trl.shuffle, self.args.seed)
            return self._lrem_sampler

        # ---- checkpoints: TRL's, plus this trainer's own random state, plus a marker
        def lrem_state_dict(self) -> dict:
            rewards = {str(i): f.state_dict() for i, f in enumerate(self.reward_funcs) if hasattr(f, "state_dict")}
            state = {"nce_rng": self.nce_rng.getstate(), "rewards": rewards}
            if self.replay is not None:
                state["replay"] = {"rng": self.replay.rng.getstate(), "order": list(self.replay.order)}
            return state

        def load_lrem_state(self, checkpoint: str | Path) -> None:
            state = torch.load(Path(checkpoint) / _lrem_state_file(self.args.process_index), weights_only=True)
            self.nce_rng.setstate(_as_random_state(state["nce_rng"]))
            for i, f in enumerate(self.reward_funcs):
                if hasattr(f, "load_state_dict"):
                    f.load_state_dict(state["rewards"][str(i)])
            if self.replay is not None:
                self.replay.rng.setstate(_as_random_state(state["replay"]["rng"]))
                self.replay.order = [int(x) for x in state["replay"]["order"]]

        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            root = Path(self._get_output_dir(trial=trial))
            path = root / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            path.mkdir(parents=True, exist_ok=True)
            torch.save(self.lrem_state_dict(), path / _lrem_state_file(self.args.process_index))
            self.accelerator.wait_for_everyone()  # every process has written its part
            if self.accelerator.is_main_process:
                marker = {"step": self.state.global_step, "fingerprint": self.lrem_fingerprint,
                          "num_processes": self.accelerator.num_processes}
                tmp = path / f".{CHECKPOINT_MARKER}.tmp"
                tmp.write_text(json.dumps(marker))
                tmp.rename(path / CHECKPOINT_MARKER)
                for old in root.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):  # keep only the newest
                    if old != path:
                        shutil.rmtree(old, ignore_errors=True)
            self.accelerator.wait_for_everyone()

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            # the positive item of each completion travels with it through TRL's shuffling
            picks = [self.nce_rng.choice(x["item_indices"]) if self.random_positive else x["item_index"]
                     for x in inputs]
            out["lrem_positive"] = torch.tensor(picks, device=out["prompt_ids"].device)
            out["lrem_query"] = torch.tensor([self._query_number(str(x["query_id"])) for x in inputs],
                                             device=out["prompt_ids"].device)
            return out

        def _query_number(self, qid: str) -> int:
            if qid not in self.query_index:
                self.query_index[qid] = len(self.query_names)
                self.query_names.append(qid)
            return self.query_index[qid]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            grpo_loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["grpo_loss"].append(float(grpo_loss.detach()))
            loss = grpo_loss
            if self.lambda_infonce > 0:
                positives = [self.item_ids[i] for i in inputs["lrem_positive"].tolist()]
                negatives = self.nce_rng.sample(self.item_ids, min(self.n_negatives, len(self.item_ids)))
                judged_sets = None
                if self.judged is not None:
                    judged_sets = [self.judged.get(self.query_names[i], set()) for i in inputs["lrem_query"].tolist()]
                nce = rl_infonce(self.lrem, inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"],
                                 inputs["completion_mask"], positives, self.item_titles, negatives,
                                 self.nce_temperature, judged_sets=judged_sets)
                self._metrics[mode]["infonce"].append(float(nce.detach()))
                loss = loss + self.lambda_infonce * nce
            if self.lm_replay_weight > 0 and self.model.training:
                replay = replay_lm_loss(model, self.replay.next().to(grpo_loss.device))
                self._metrics[mode]["replay_lm"].append(float(replay.detach()))
                loss = loss + self.lm_replay_weight * replay
            return loss

    return LREMGRPOTrainer


def split_for_rl(triplets: Sequence[dict], share: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(cold-start triplets, RL triplets): a deterministic ``share`` of the training queries set aside for RL.

    The paper sets query-item pairs aside for RL (4M of them). Here it matters for a second
    reason: the cold start fits its own training queries almost perfectly (token accuracy near
    100%), so GRPO on those queries has little left to learn; on queries the cold start never
    saw, the sampled CoTs differ and the rank reward tells the good ones apart. ``share`` 0
    gives every triplet to both stages (the split is by query id, so a query is in one side).
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"grpo.rl_query_share must be in [0, 1), got {share}")
    if share == 0.0:
        return list(triplets), list(triplets)
    import hashlib

    def held(qid: str) -> bool:
        digest = hashlib.sha256(f"{seed}:{qid}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64 < share

    cold = [t for t in triplets if not held(str(t["query_id"]))]
    rl = [t for t in triplets if held(str(t["query_id"]))]
    if not cold or not rl:  # tiny data: keep both stages fed
        return list(triplets), list(triplets)
    return cold, rl


def grpo_prompts(model: LREMModel, triplets: Sequence[dict], item_index: Mapping[str, int], seed: int) -> list[dict]:
    """One prompt per training query, with its first teacher-kept item (``item_index``) and all of
    them (``item_indices``): the InfoNCE positives."""
    rows_by_query: dict[str, dict] = {}
    for t in triplets:
        if t["item_id"] not in item_index:
            continue
        row = rows_by_query.get(t["query_id"])
        if row is None:
            rows_by_query[t["query_id"]] = {
                "prompt": prompts.query_prompt(model.tokenizer, model.spec.prompts, t["query"]),
                "query": t["query"], "query_id": t["query_id"], "item_id": t["item_id"],
                "item_index": item_index[t["item_id"]], "item_indices": [item_index[t["item_id"]]],
            }
        elif item_index[t["item_id"]] not in row["item_indices"]:
            row["item_indices"].append(item_index[t["item_id"]])
    rows = list(rows_by_query.values())
    random.Random(seed).shuffle(rows)
    return rows


def check_prompt_tokens(model: LREMModel, rows: Sequence[dict], sample: int = 64) -> None:
    """Raise unless TRL's tokenisation of the prompt strings (``processing_class(text=...)``, as
    its GRPO trainer calls it) gives the ids the cold start, evaluation and serving use: the
    policy must sample in the context it was trained and is served in. Checks the first
    ``sample`` prompts whose query fits ``max_query_tokens`` (a cut query differs by design)."""
    fits = [r for r in rows
            if len(model.tokenizer(r["query"], add_special_tokens=False)["input_ids"]) <= model.spec.max_query_tokens]
    fits = fits[:sample]
    if not fits:
        return
    trl_ids = model.tokenizer(text=[r["prompt"] for r in fits])["input_ids"]
    for row, ids, ours in zip(fits, trl_ids, model.query_prompts_ids([r["query"] for r in fits])):
        if list(ids) != ours:
            tok = model.tokenizer
            raise ValueError(
                f"GRPO prompt tokens differ from the model's own for query {row['query']!r}: TRL reads "
                f"{tok.convert_ids_to_tokens(list(ids))}, the cold start and serving "
                f"{tok.convert_ids_to_tokens(ours)}"
                + ("" if model.spec.joined_tail else
                   " (the model's spec has joined_tail false: it was saved before 2026-12-02 and encodes "
                   "the template's tail apart; train a new cold start before GRPO)"))


@torch.no_grad()
def greedy_rank_accuracy(model: LREMModel, rows: Sequence[dict], catalog_titles: Mapping[str, str],
                         relevant: Mapping[str, set[str]], batch_size: int = 64) -> list[float]:
    """Per prompt row: the accuracy reward of the model's own greedy CoT (1 - log rank / log N of
    the query's judged-relevant items, ranked against the whole catalog, mean over the items)."""
    catalog = sorted(catalog_titles)
    items = model.embed_items([catalog_titles[i] for i in catalog])
    q, _ = model.embed_queries([r["query"] for r in rows], reasoning=True, batch_size=batch_size)
    scores = q @ items.T
    index = {item: j for j, item in enumerate(catalog)}
    out = []
    for row, r in enumerate(rows):
        rel = [index[i] for i in relevant.get(r["query_id"], ()) if i in index]
        if not rel:
            out.append(1.0)
            continue
        neg = np.ones(len(catalog), dtype=bool)
        neg[rel] = False
        n = int(neg.sum()) + 1
        neg_scores = np.sort(scores[row][neg])
        ranks = len(neg_scores) - np.searchsorted(neg_scores, scores[row][rel], side="right") + 1
        out.append(float(np.mean(1.0 - np.log(ranks) / math.log(n))) if n > 1 else 1.0)
    return out


def hardest_prompts(model: LREMModel, rows: Sequence[dict], catalog_titles: Mapping[str, str],
                    relevant: Mapping[str, set[str]], share: float) -> list[dict]:
    """The ``share`` of the prompt rows whose greedy CoT the model ranks worst (lowest
    :func:`greedy_rank_accuracy`): RL spends its steps where the cold start does badly."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"grpo.hard_prompt_share must be in (0, 1], got {share}")
    if share >= 1.0:
        return list(rows)
    acc = greedy_rank_accuracy(model, rows, catalog_titles, relevant)
    keep = max(1, round(share * len(rows)))
    order = sorted(range(len(rows)), key=lambda i: (acc[i], i))[:keep]
    return [rows[i] for i in sorted(order)]


def train_grpo(model: LREMModel, triplets: Sequence[dict], catalog_titles: dict[str, str], cfg: GRPOStageConfig,
               out_dir: str | Path, relevant: Mapping[str, set[str]] | None = None,
               log_metrics: Callable[[dict[str, float], int], None] | None = None,
               show_progress: bool = True, replay_docs: Sequence[str] | None = None) -> dict:
    """GRPO on ``model`` in place; saves it to ``out_dir/model``.

    ``relevant`` (query id -> judged-relevant item ids) gives the accuracy reward its targets;
    without it, each query's teacher-kept items are its targets. ``replay_docs``: the
    backbone's pre-training text, rehearsed when ``cfg.lm_replay_weight`` > 0.
    """
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig

    from components.training.cold_start import per_device_batch_size

    if cfg.per_device_batch_size % cfg.num_generations:
        raise ValueError(f"grpo.per_device_batch_size ({cfg.per_device_batch_size}) must be divisible by "
                         f"grpo.num_generations ({cfg.num_generations})")
    # grpo.per_device_batch_size is the batch of completions of one optimizer step as one process
    # runs it; under `accelerate launch` the processes share it (TRL's generation batch is
    # per-device x processes), so the global batch and the schedule stay what the config says
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_device = per_device_batch_size(cfg.per_device_batch_size, world, "grpo.per_device_batch_size")
    if len(cfg.reward_weights) != len(cfg.reward_funcs):
        raise ValueError("grpo.reward_weights must give one weight per reward function")
    if cfg.save_every < 0 or cfg.save_every % cfg.num_iterations:
        raise ValueError(f"grpo.save_every ({cfg.save_every}) must be >= 0 and a multiple of grpo.num_iterations "
                         f"({cfg.num_iterations})")
    replay = replay_stream("grpo", cfg, model.tokenizer, replay_docs)
    out_dir = Path(out_dir)
    item_ids = sorted(catalog_titles)
    item_index = {item: i for i, item in enumerate(item_ids)}
    if relevant is None:
        relevant = triplet_items(triplets)
    rows = grpo_prompts(model, triplets, item_index, cfg.seed)
    if cfg.hard_prompt_share < 1.0:
        n_all = len(rows)
        rows = hardest_prompts(model, rows, catalog_titles, relevant, cfg.hard_prompt_share)
        log.info("GRPO prompts: the %d of %d queries the cold start ranks worst", len(rows), n_all)
    check_prompt_tokens(model, rows)
    dataset = Dataset.from_list(rows)

    lm = model.lm
    lm.generation_config.eos_token_id = [model.close_id, model.tokenizer.eos_token_id]
    lm.generation_config.pad_token_id = model.pad_id
    lm.generation_config.bos_token_id = None
    rewards = build_rewards(cfg.reward_funcs, RewardContext(model, catalog_titles, relevant, cfg))
    ckpt_root = out_dir / "checkpoints"
    fingerprint = ""
    if cfg.save_every:  # before training: the starting weights are part of what a checkpoint resumes
        fingerprint = run_fingerprint(cfg, rows, item_ids, world, weights_digest(model.lm))
    args = GRPOConfig(
        output_dir=str(ckpt_root),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=per_device,
        num_generations=cfg.num_generations,
        num_iterations=cfg.num_iterations,
        max_completion_length=model.spec.max_cot_tokens + 1,  # the CoT and its closing tag
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=0,
        temperature=cfg.temperature,
        beta=0.0,
        scale_rewards=cfg.scale_rewards,
        reward_weights=list(cfg.reward_weights),
        logging_steps=1,
        save_strategy="steps" if cfg.save_every else "no",
        save_steps=cfg.save_every or 500,
        save_total_limit=None,  # the trainer keeps the newest complete one itself
        report_to="none",
        seed=cfg.seed,
        bf16=torch.cuda.is_available(),
        # TRL turns it on by default; on a CPU the recomputation only costs time (bench/bench_grpo.py)
        gradient_checkpointing=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not show_progress,
    )
    history: list[dict] = []

    class _Relay(TrainerCallback):
        def on_step_end(self, _args, state, control, **_kw):
            if state.global_step >= state.max_steps:
                control.should_save = False  # the finished model is saved instead; no last checkpoint

        def on_log(self, _args, state, _control, logs=None, **_kw):
            if not logs:
                return
            numeric = {f"grpo/{k.replace('/', '_')}": float(v) for k, v in logs.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            history.append({"step": state.global_step, **numeric})
            if log_metrics is not None and numeric and state.is_world_process_zero:  # rank 0 logs
                log_metrics(numeric, state.global_step)

    trainer_cls = make_trainer_class()
    trainer = trainer_cls(
        model=lm,
        reward_funcs=rewards,
        args=args,
        train_dataset=dataset,
        processing_class=model.tokenizer,
        callbacks=[_Relay()],
        lrem=model, item_titles=catalog_titles, item_ids=item_ids,
        lambda_infonce=cfg.lambda_infonce, temperature=cfg.infonce_temperature,
        n_negatives=cfg.infonce_negatives, seed=cfg.seed,
        replay=replay, lm_replay_weight=cfg.lm_replay_weight,
        random_positive=cfg.infonce_positive == "random",
        judged=relevant if cfg.mask_judged_negatives else None,
    )
    trainer.lrem_fingerprint = fingerprint
    resume, resumed_step = latest_checkpoint(ckpt_root, fingerprint) if cfg.save_every else (None, 0)
    trainer.accelerator.wait_for_everyone()  # every process has chosen before any is removed
    if trainer.accelerator.is_main_process:  # another run's, torn or older checkpoints: never resumed
        for stale in ckpt_root.glob("checkpoint-*"):
            if stale != resume:
                shutil.rmtree(stale, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    if resume is not None:
        trainer.load_lrem_state(resume)
        log.info("resuming GRPO from %s (step %d of %d)", resume, resumed_step, cfg.max_steps)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    model.lm = trainer.model if not hasattr(trainer.model, "module") else trainer.model.module
    model.eval()
    model_dir = out_dir / "model"
    if trainer.accelerator.is_main_process:  # one writer; the other processes hold the same weights
        model.save(model_dir)
        shutil.rmtree(ckpt_root, ignore_errors=True)  # the finished model supersedes them
    trainer.accelerator.wait_for_everyone()
    rewarded = [h for h in history if "grpo/reward" in h]
    reward_keys = [k for k in (rewarded[-1] if rewarded else {}) if "reward" in k]
    return {
        "steps": trainer.state.global_step,
        "resumed_from_step": resumed_step,
        "num_processes": trainer.accelerator.num_processes,
        "per_device_batch_size": per_device,
        "generation_batch_size": int(args.generation_batch_size),
        "seconds": time.perf_counter() - t0,
        "model_dir": str(model_dir),
        "n_prompts": len(rows),
        "history": history,
        "first_rewards": {k: rewarded[0].get(k) for k in reward_keys} if rewarded else {},
        "last_rewards": {k: rewarded[-1].get(k) for k in reward_keys} if rewarded else {},
    }
