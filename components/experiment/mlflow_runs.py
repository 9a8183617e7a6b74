"""MLflow bookkeeping of the experiment: one child run per model row."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

from components.experiment.config import LABELS


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


def _log_history(history: Sequence[dict]) -> None:
    import mlflow

    for row in history:
        metrics = {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        if metrics:
            mlflow.log_metrics(metrics, step=int(row["step"]))
