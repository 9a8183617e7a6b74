"""Steps `validate_raw` and `validate_triplets`: Great Expectations gates before training.

A failing suite raises :class:`~components.validation.errors.DataValidationError` with
the file, the rule and sample bad values; the Data Docs are logged to MLflow either way,
so the failure can be read in the UI.
"""

from __future__ import annotations

import time
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


def baseline_path(cfg: PipelineConfig) -> Path:
    """Where the last good snapshot's drift figures live (``validation.drift_baseline``)."""
    from components.validation.drift import default_baseline_path

    return Path(cfg.validation.drift_baseline) if cfg.validation.drift_baseline else default_baseline_path(cfg.name)


def _drift_tags(cfg: PipelineConfig, drift: dict | None) -> None:
    """Lineage of the drift check: what it compared with, what was exceeded, what the run conf allowed."""
    last_good = (drift or {}).get("last_good_snapshot") or {}
    mlflow.set_tags({
        "drift_baseline": f"{last_good.get('data_md5', '?')} (run {last_good.get('run_key', '?')})" if drift
                          else "none (no snapshot passed before: nothing compared)",
        "drift_exceeded": ",".join((drift or {}).get("exceeded", [])) or "none",
        "drift_allowed": ",".join(cfg.validation.allow_drift) or "none",
    })


def run_validate_raw(cfg: PipelineConfig, snapshot: DataSnapshot) -> ValidationReport:
    """The raw-data gate; once it passes, this snapshot becomes the last good one for drift."""
    from components.validation.drift import save_baseline
    from components.validation.errors import DataValidationError
    from components.validation.suites import validate_raw

    baseline = baseline_path(cfg)

    def validate(docs: Path) -> dict:
        try:
            summary = validate_raw(Path(snapshot.data_uri), docs, cfg.validation, baseline)
        except DataValidationError as exc:
            _drift_tags(cfg, exc.summary.get("drift"))
            raise
        _drift_tags(cfg, summary.get("drift"))
        save_baseline(baseline, summary["figures"], {
            "data_md5": snapshot.data_md5, "dvc_rev": snapshot.dvc_rev, "run_key": snapshot.run_key,
            "mlflow_run_id": snapshot.mlflow_run_id, "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return summary

    return _run_suite(cfg, snapshot, "raw", validate)


def run_validate_triplets(cfg: PipelineConfig, snapshot: DataSnapshot, triplets: TripletSet) -> ValidationReport:
    from components.validation.suites import validate_triplets

    return _run_suite(cfg, snapshot, "triplets", lambda docs: validate_triplets(
        Path(triplets.triplets_uri), Path(snapshot.data_uri), cfg.teacher.max_cot_tokens, docs))
