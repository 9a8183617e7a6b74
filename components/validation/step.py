"""Steps `validate_raw` and `validate_triplets`: Great Expectations gates before training.

A failing suite raises :class:`~components.validation.errors.DataValidationError` with
the file, the rule and sample bad values; the Data Docs are logged to MLflow either way,
so the failure can be read in the UI.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from components import tracking
from components.artifacts import DataSnapshot, TripletSet, ValidationReport
from components.config import PipelineConfig
from components.paths import run_dir


def _run_suite(cfg: PipelineConfig, snapshot: DataSnapshot, name: str, validate) -> ValidationReport:
    """Run ``validate(docs_dir)``; Data Docs are logged and the outcome tagged, pass or fail."""
    docs = run_dir(snapshot.run_key) / f"data_docs_{name}"
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        try:
            summary = validate(docs)
            mlflow.set_tag(f"validate_{name}", "passed")
            return ValidationReport(suite=name, expectations=int(summary.get("expectations", 0)),
                                    failed=int(summary.get("failed", 0)),
                                    docs_uri=f"runs:/{snapshot.mlflow_run_id}/data_docs/{name}")
        except Exception:
            mlflow.set_tag(f"validate_{name}", "failed")
            raise
        finally:
            if docs.exists():
                mlflow.log_artifacts(str(docs), f"data_docs/{name}")


def run_validate_raw(cfg: PipelineConfig, snapshot: DataSnapshot) -> ValidationReport:
    from components.validation.suites import validate_raw

    return _run_suite(cfg, snapshot, "raw", lambda docs: validate_raw(Path(snapshot.data_uri), docs, cfg.validation))


def run_validate_triplets(cfg: PipelineConfig, snapshot: DataSnapshot, triplets: TripletSet) -> ValidationReport:
    from components.validation.suites import validate_triplets

    return _run_suite(cfg, snapshot, "triplets", lambda docs: validate_triplets(
        Path(triplets.triplets_uri), Path(snapshot.data_uri), cfg.teacher.max_cot_tokens, docs))
