"""Stage 2: GRPO with TRL's GRPOTrainer on the cold-start model, with a retrieval reward.

The policy samples G CoTs per query after ``<think>``; generation stops at ``</think>``.
Rewards (selected by name from :data:`REWARDS`, weighted as the paper does by default,
0.5 format + 0.2 length + 1.0 accuracy):
- ``format``: the CoT closed itself with ``</think>`` and holds no special token;
- ``length``: at most ``max_cot_tokens`` CoT tokens;
- ``accuracy``: 1 - log(rank) / log(N), the rank of the query's ground-truth item among a
  pool of N items, scored with the query embedding taken after this CoT.
The paper's objective has no KL term, so ``beta`` is 0.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from components.config import GRPOStageConfig
from components.model import prompts
from components.model.lrem import LREMModel


class RetrievalRewards:
    """The reward functions, bound to the live policy so accuracy uses its current weights."""

    def __init__(self, model: LREMModel, catalog_titles: dict[str, str], pool_size: int, seed: int = 0):
        self.model = model
        self.titles = catalog_titles
        self.pool_size = pool_size
        ids = sorted(catalog_titles)
        self.fillers = random.Random(seed).sample(ids, min(len(ids), pool_size * 4))

    def _cot_tokens(self, completion_ids: Sequence[int]) -> tuple[list[int], bool]:
        ids = list(completion_ids)
        closed = self.model.close_id in ids
        return (ids[: ids.index(self.model.close_id)] if closed else ids), closed

    def format(self, completion_ids, **_: Any) -> list[float]:
        out = []
        banned = set(self.model._banned_in_cot)
        for ids in completion_ids:
            cot, closed = self._cot_tokens(ids)
            out.append(1.0 if closed and cot and not banned.intersection(cot) else 0.0)
        return out

    def length(self, completion_ids, **_: Any) -> list[float]:
        budget = self.model.spec.max_cot_tokens
        return [1.0 if len(self._cot_tokens(ids)[0]) <= budget else 0.0 for ids in completion_ids]

    @torch.no_grad()
    def accuracy(self, completion_ids, query, item_id, **_: Any) -> list[float]:
        cots = [self.model.tokenizer.decode(self._cot_tokens(ids)[0], skip_special_tokens=True)
                for ids in completion_ids]
        pool = list(dict.fromkeys(item_id))
        for filler in self.fillers:
            if len(pool) >= self.pool_size:
                break
            if filler not in pool:
                pool.append(filler)
        q = torch.from_numpy(self.model.embed_queries_with_cot(list(query), cots))
        items = torch.from_numpy(self.model.embed_items([self.titles[i] for i in pool]))
        scores = q @ items.T
        n = len(pool)
        rewards = []
        for row, target in enumerate(item_id):
            own = scores[row, pool.index(target)]
            rank = int((scores[row] > own).sum()) + 1
            rewards.append(1.0 - math.log(rank) / math.log(n) if n > 1 else 1.0)
        return rewards


def reward_functions(rewards: RetrievalRewards, names: Sequence[str]) -> list[Callable]:
    registry = {"format": rewards.format, "length": rewards.length, "accuracy": rewards.accuracy}
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown reward functions {unknown}; known: {sorted(registry)}")
    funcs = []
    for name in names:
        fn = registry[name]
        # TRL names each reward after __name__ in its logs
        wrapper = (lambda f: lambda **kw: f(**kw))(fn)
        wrapper.__name__ = f"reward_{name}"
        funcs.append(wrapper)
    return funcs


def train_grpo(model: LREMModel, triplets: Sequence[dict], catalog_titles: dict[str, str], cfg: GRPOStageConfig,
               out_dir: str | Path, log_metrics: Callable[[dict[str, float], int], None] | None = None) -> dict:
    """A few GRPO steps on ``model`` in place; saves it to ``out_dir/model``."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    if cfg.per_device_batch_size % cfg.num_generations:
        raise ValueError(f"grpo.per_device_batch_size ({cfg.per_device_batch_size}) must be divisible by "
                         f"grpo.num_generations ({cfg.num_generations})")
    if len(cfg.reward_weights) != len(cfg.reward_funcs):
        raise ValueError("grpo.reward_weights must give one weight per reward function")
    out_dir = Path(out_dir)
    seen: set[str] = set()
    rows = []
    for t in triplets:  # one prompt per query: the reward ranks its first teacher-kept item
        if t["query_id"] in seen:
            continue
        seen.add(t["query_id"])
        rows.append({
            "prompt": prompts.query_prompt(model.tokenizer, model.spec.prompts, t["query"]),
            "query": t["query"], "query_id": t["query_id"], "item_id": t["item_id"],
        })
    random.Random(cfg.seed).shuffle(rows)
    dataset = Dataset.from_list(rows)

    lm = model.lm
    lm.generation_config.eos_token_id = [model.close_id, model.tokenizer.eos_token_id]
    lm.generation_config.pad_token_id = model.pad_id
    rewards = RetrievalRewards(model, catalog_titles, cfg.reward_pool_size, cfg.seed)
    args = GRPOConfig(
        output_dir=str(out_dir / "trainer"),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        num_generations=cfg.num_generations,
        max_completion_length=model.spec.max_cot_tokens + 1,  # the CoT and its closing tag
        learning_rate=cfg.learning_rate,
        temperature=cfg.temperature,
        beta=0.0,
        reward_weights=list(cfg.reward_weights),
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=cfg.seed,
        bf16=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
    )
    history: list[dict] = []

    class _Relay(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_kw):
            if not logs:
                return
            numeric = {f"grpo/{k.replace('/', '_')}": float(v) for k, v in logs.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            history.append({"step": state.global_step, **numeric})
            if log_metrics is not None and numeric:
                log_metrics(numeric, state.global_step)

    trainer = GRPOTrainer(
        model=lm,
        reward_funcs=reward_functions(rewards, cfg.reward_funcs),
        args=args,
        train_dataset=dataset,
        processing_class=model.tokenizer,
        callbacks=[_Relay()],
    )
    t0 = time.perf_counter()
    trainer.train()
    model.lm = trainer.model if not hasattr(trainer.model, "module") else trainer.model.module
    model.eval()
    model_dir = model.save(out_dir / "model")
    rewarded = [h for h in history if "grpo/reward" in h]
    reward_keys = [k for k in (rewarded[-1] if rewarded else {}) if "reward" in k]
    return {
        "steps": trainer.state.global_step,
        "seconds": time.perf_counter() - t0,
        "model_dir": str(model_dir),
        "n_prompts": len(rows),
        "history": history,
        "first_rewards": {k: rewarded[0].get(k) for k in reward_keys} if rewarded else {},
        "last_rewards": {k: rewarded[-1].get(k) for k in reward_keys} if rewarded else {},
    }
