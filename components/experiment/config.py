"""The experiment's settings (:class:`ExperimentConfig`), its model rows and their labels."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from components.config import BackboneConfig, ModelConfig, TeacherConfig, WorldConfig
from components.paths import state_path

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
    (the reference benchmark; docs/experiments.md), 600 steps x 64 pairs per trained model
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
    # (docs/experiments.md "Across worlds"; probes.md 2026-12-03)
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
    # perfect type oracle is only +4.55% over the direct embedder (docs/experiments.md)
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
