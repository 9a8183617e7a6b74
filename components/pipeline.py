"""The nightly pipeline's steps, in order: one name per Airflow task and `lrem step` target.

Each step is ``fn(cfg, ctx) -> ctx``: it takes the URIs the previous steps produced
(DVC revision, snapshot path, MLflow run/model URIs, Milvus collection) and returns them
with its own added. Nothing in memory crosses a step boundary, so any task can be
retried alone.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Callable

from components.config import PipelineConfig

# task name -> "module:function"; imported lazily so DAG parsing stays fast
STEPS: dict[str, str] = {
    "pull_data": "components.data.step:run",
    "validate_raw": "components.validation.step:run_validate_raw",
    "generate_triplets": "components.teacher.step:run",
    "validate_triplets": "components.validation.step:run_validate_triplets",
    "train_cold_start": "components.training.step:run_cold_start",
    "train_grpo": "components.training.step:run_grpo",
    "register_challenger": "components.registry.step:run_register",
    "build_index": "components.index.step:run",
    "evaluate_offline": "components.evaluation.step:run_evaluate",
    "gate": "components.evaluation.step:run_gate",
    "promote": "components.registry.step:run_promote",
}


def step_function(name: str) -> Callable[..., dict[str, Any]]:
    if name not in STEPS:
        raise KeyError(f"unknown step {name!r}; steps: {', '.join(STEPS)}")
    module, func = STEPS[name].split(":")
    return getattr(importlib.import_module(module), func)


def run_key_from(run_id: str) -> str:
    """A file- and tag-safe key from an Airflow run id (``manual__2026-11-24T02:00:00+00:00``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", run_id).strip("-")


def run_step(name: str, cfg: PipelineConfig, ctx: dict[str, Any] | None = None, run_key: str | None = None) -> dict:
    fn = step_function(name)
    if name == "pull_data":
        if not run_key:
            raise RuntimeError("pull_data needs a run key")
        return fn(cfg, run_key_from(run_key))
    if ctx is None:
        raise RuntimeError(f"step {name} needs the context of the step before it")
    return fn(cfg, ctx)


def run_all(cfg: PipelineConfig, run_key: str) -> dict[str, Any]:
    """Every step in order, in this process (the same functions the DAG's tasks call)."""
    ctx: dict[str, Any] | None = None
    for name in STEPS:
        ctx = run_step(name, cfg, ctx, run_key=run_key)
    return ctx or {}
