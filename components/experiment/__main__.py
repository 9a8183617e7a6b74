"""`python -m components.experiment [--steps N] [--quick]`: LREM vs baselines, one split, one budget.

Writes ``experiments/results/latest.json`` and ``latest.md`` (``--quick``: a 10-step smoke
run written under the state dir instead, so it never overwrites the real results) and logs
everything to the MLflow experiment ``lrem-baselines``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from components.config import HARD_SPLITS, PHRASINGS
from components.experiment.config import MODEL_IDS, ExperimentConfig
from components.experiment.run import run_experiment


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m components.experiment", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 10 steps, 200 eval queries, output under the state dir")
    p.add_argument("--steps", type=int, help="optimizer steps per trained model (default 600; quick 10)")
    p.add_argument("--batch-size", type=int, help="pairs per step (default 64)")
    p.add_argument("--lr-minilm", type=float, help="MiniLM fine-tuning learning rate (default 5e-5)")
    p.add_argument("--lr-llm", type=float, help="tiny LLM learning rate (default 1e-3)")
    p.add_argument("--grpo-steps", type=int, help="GRPO steps after the LREM cold start (default 100; quick 2)")
    p.add_argument("--backbone-steps", type=int, help="backbone pre-training steps (default 600; cached)")
    p.add_argument("--temperature", type=float, help="InfoNCE temperature (default 0.05)")
    p.add_argument("--wrong-cot-ratio", type=float, help="LREM cold start: InfoNCE examples after another query's CoT")
    p.add_argument("--lm-replay", type=float,
                   help="tiny-LLM rows: weight of the LM rehearsal of the backbone's pre-training text (default 1; 0: off)")
    p.add_argument("--rl-query-share", type=float, help="training queries set aside for GRPO only")
    p.add_argument("--grpo-lr", type=float, help="GRPO learning rate")
    p.add_argument("--grpo-reward-pool", type=int, help="items the GRPO rank reward ranks against (0: the whole catalog)")
    p.add_argument("--grpo-temperature", type=float, help="GRPO sampling temperature")
    p.add_argument("--grpo-lm-replay", type=float, help="weight of the LM rehearsal during GRPO (0: off)")
    p.add_argument("--lm-replay-batch", type=int, help="packed sequences rehearsed per step (default 16)")
    p.add_argument("--grpo-infonce-positive", choices=("first", "random"),
                   help="the GRPO InfoNCE term's positive: the query's first or a random teacher-kept item (default random)")
    p.add_argument("--grpo-scale-rewards", choices=("group", "batch", "none"),
                   help="GRPO advantages: rewards divided by the group's std (group, GRPO's), the batch's, or none (Dr. GRPO)")
    p.add_argument("--hard-negatives", type=int,
                   help="every trained row: attribute-contrast hard negatives per pair (default 0; probes.md)")
    p.add_argument("--hard-negative-scope", choices=("batch", "query"),
                   help="a hard negative is a negative of every query in the batch, or of its own query only")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1; 0: torch's default)")
    p.add_argument("--workers", type=int,
                   help="training processes at once (default 2: MiniLM and the direct embedders beside the LREM)")
    p.add_argument("--max-eval-queries", type=int, help="stratified subset of the eval queries (default all)")
    p.add_argument("--hard-split", choices=HARD_SPLITS,
                   help="demo world: split the hard queries by intent (default: use, fact, premium brand, so "
                        "that no training query names an eval query's intent) or by query (the committed data's "
                        "split, where the target is out of reach)")
    p.add_argument("--phrasing", choices=PHRASINGS,
                   help="demo world: how queries are worded (default varied, the committed data since issue 29; "
                        "fixed: the short templates of the world the README's headline table was measured on)")
    p.add_argument("--world-seed", type=int,
                   help="demo world: generator seed (default 20251016, the committed data); another seed is a "
                        "fresh world (catalog, knowledge, queries) to confirm a result on")
    p.add_argument("--data-dir", help="data folder (default: the demo world, generated into the state dir)")
    p.add_argument("--output-dir", help="where <name>.json/.md go (default experiments/results)")
    p.add_argument("--output-name", help="file stem (default latest)")
    p.add_argument("--models", nargs="+", choices=MODEL_IDS, help="only these models (default all)")
    p.add_argument("--mlflow-experiment", help="MLflow experiment name (default lrem-baselines)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--keep-models", action="store_true",
                   help="keep the trained tiny models under <state>/experiment/runs/<stamp>/ (default: deleted)")
    return p


def config_from_args(args: argparse.Namespace, argv: list[str]) -> ExperimentConfig:
    overrides = {}
    for arg, key in (("steps", "steps"), ("batch_size", "batch_size"), ("lr_minilm", "lr_minilm"),
                     ("lr_llm", "lr_llm"), ("temperature", "temperature"), ("seed", "seed"), ("threads", "threads"),
                     ("workers", "workers"),
                     ("max_eval_queries", "max_eval_queries"), ("data_dir", "data_dir"),
                     ("output_dir", "output_dir"), ("output_name", "output_name"), ("models", "models"),
                     ("mlflow_experiment", "mlflow_experiment"), ("wrong_cot_ratio", "wrong_cot_ratio"),
                     ("rl_query_share", "rl_query_share"), ("grpo_lr", "grpo_lr"), ("lm_replay", "lm_replay_weight"),
                     ("grpo_reward_pool", "grpo_reward_pool"), ("grpo_temperature", "grpo_temperature"),
                     ("grpo_lm_replay", "grpo_lm_replay_weight"), ("lm_replay_batch", "lm_replay_batch"),
                     ("grpo_infonce_positive", "grpo_infonce_positive"),
                     ("grpo_scale_rewards", "grpo_scale_rewards"), ("hard_negatives", "hard_negatives"),
                     ("hard_negative_scope", "hard_negative_scope")):
        value = getattr(args, arg)
        if value is not None:
            overrides[key] = value
    if args.grpo_steps is not None:
        overrides["grpo_steps"] = args.grpo_steps
    if args.backbone_steps is not None:
        from components.config import BackboneConfig

        overrides["backbone"] = BackboneConfig(steps=args.backbone_steps)
    if args.hard_split is not None or args.world_seed is not None or args.phrasing is not None:
        # on top of the experiment's default world (its hard split stays unless given)
        world = {"hard_split": args.hard_split, "seed": args.world_seed, "phrasing": args.phrasing}
        overrides["world"] = dataclasses.replace(ExperimentConfig().world,
                                                 **{k: v for k, v in world.items() if v is not None})
    if args.no_progress:
        overrides["show_progress"] = False
    if args.keep_models:
        overrides["keep_models"] = True
    overrides["command"] = " ".join(["python -m components.experiment", *map(shlex.quote, argv)]).strip()
    return ExperimentConfig.quick(**overrides) if args.quick else ExperimentConfig(**overrides)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    result = run_experiment(config_from_args(args, argv))
    print(f"\nwrote {result['paths']['md']} and {result['paths']['json']} "
          f"({result['wall_seconds'] / 60:.1f} min); MLflow experiment {result['mlflow']['experiment']}, "
          f"parent run {result['mlflow']['parent_run_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
