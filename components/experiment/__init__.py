"""Baseline experiment: LREM cold start against direct-embedding baselines on one split.

``run_experiment(ExperimentConfig()) -> dict`` trains and evaluates every model on the
same train/eval split of the demo world with the same training budget; ``python -m
components.experiment`` is its command line.
"""

from components.experiment.baselines import MODEL_IDS, ExperimentConfig, run_experiment

__all__ = ["ExperimentConfig", "MODEL_IDS", "run_experiment"]
