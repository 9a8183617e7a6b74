"""The tiny-LLM rows: the shared pre-trained backbone, its fine-tuning (direct embedder or LREM cold
start) and GRPO on the cold start."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from components.config import ColdStartConfig, GRPOStageConfig
from components.experiment.config import ExperimentConfig
from components.experiment.data import ExperimentData
from components.paths import state_path


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
