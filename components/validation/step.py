"""Steps `validate_raw` and `validate_triplets`: Great Expectations gates before training.

A failing suite raises with the file, the rule and sample bad values; the Data Docs are
logged to MLflow either way, so the failure can be read in the UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow

from components import tracking
from components.config import PipelineConfig
from components.paths import run_dir


def _log_docs(docs_dir: Path, artifact_path: str) -> None:
    if docs_dir.exists():
        mlflow.log_artifacts(str(docs_dir), artifact_path)


def run_validate_raw(cfg: PipelineConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    from components.validation.suites import validate_raw

    docs = run_dir(ctx["run_key"]) / "data_docs_raw"
    with tracking.resume(cfg, ctx["mlflow_run_id"]):
        try:
            summary = validate_raw(Path(ctx["data_uri"]), docs)
        except Exception:
            _log_docs(docs, "data_docs/raw")
            mlflow.set_tag("validate_raw", "failed")
            raise
        _log_docs(docs, "data_docs/raw")
        mlflow.set_tag("validate_raw", "passed")
    return {**ctx, "raw_validation": _scalar_summary(summary)}


def run_validate_triplets(cfg: PipelineConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    from components.validation.suites import validate_triplets

    docs = run_dir(ctx["run_key"]) / "data_docs_triplets"
    with tracking.resume(cfg, ctx["mlflow_run_id"]):
        try:
            summary = validate_triplets(Path(ctx["triplets_uri"]), Path(ctx["data_uri"]),
                                        cfg.teacher.max_cot_tokens, docs)
        except Exception:
            _log_docs(docs, "data_docs/triplets")
            mlflow.set_tag("validate_triplets", "failed")
            raise
        _log_docs(docs, "data_docs/triplets")
        mlflow.set_tag("validate_triplets", "passed")
    return {**ctx, "triplet_validation": _scalar_summary(summary)}


def _scalar_summary(summary: dict) -> dict:
    """What of a validation summary is worth passing downstream (JSON-safe scalars)."""
    return {k: v for k, v in summary.items() if isinstance(v, (bool, int, float, str))}
