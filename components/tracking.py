"""MLflow set-up shared by the steps: one MLflow run per pipeline run, resumed by id."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from components.config import PipelineConfig
from components.paths import default_mlflow_artifacts

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")


def configure(cfg: PipelineConfig) -> str:
    """Point the MLflow client at the tracking/registry store; returns the experiment id."""
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking.mlflow_uri)
    mlflow.set_registry_uri(cfg.tracking.mlflow_uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    if cfg.tracking.mlflow_uri.startswith("sqlite:"):
        location = default_mlflow_artifacts().as_uri()
    try:
        return client.create_experiment(cfg.tracking.experiment, artifact_location=location)
    except Exception:  # created concurrently by another task
        return client.get_experiment_by_name(cfg.tracking.experiment).experiment_id


def start_pipeline_run(cfg: PipelineConfig, run_key: str) -> str:
    """The MLflow run of one pipeline run (reused when the same run key is retried)."""
    import mlflow

    exp_id = configure(cfg)
    client = mlflow.MlflowClient()
    found = client.search_runs([exp_id], filter_string=f"tags.lrem_run_key = '{run_key}'", max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(exp_id, run_name=f"{cfg.name}-{run_key}", tags={"lrem_run_key": run_key,
                                                                            "pipeline": cfg.name})
    return run.info.run_id


@contextlib.contextmanager
def resume(cfg: PipelineConfig, run_id: str) -> Iterator[object]:
    import mlflow

    configure(cfg)
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def log_metrics_fn(prefix_step: int = 0):
    """A ``(metrics, step)`` callback for trainers that logs into the active MLflow run."""
    import mlflow

    def _log(metrics: dict[str, float], step: int) -> None:
        mlflow.log_metrics(metrics, step=step + prefix_step)

    return _log


def download(uri: str, dst: Path | None = None) -> Path:
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst) if dst else None))
