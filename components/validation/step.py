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


def _run_suite(cfg: PipelineConfig, ctx: dict[str, Any], name: str, validate) -> dict:
    """Run ``validate(docs_dir)``; Data Docs are logged and the outcome tagged, pass or fail."""
    docs = run_dir(ctx["run_key"]) / f"data_docs_{name}"
    with tracking.resume(cfg, ctx["mlflow_run_id"]):
        try:
            summary = validate(docs)
            mlflow.set_tag(f"validate_{name}", "passed")
            return _scalar_summary(summary)
        except Exception:
            mlflow.set_tag(f"validate_{name}", "failed")
            raise
        finally:
            if docs.exists():
                mlflow.log_artifacts(str(docs), f"data_docs/{name}")


def run_validate_raw(cfg: PipelineConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    from components.validation.suites import validate_raw

    summary = _run_suite(cfg, ctx, "raw", lambda docs: validate_raw(Path(ctx["data_uri"]), docs))
    return {**ctx, "raw_validation": summary}


def run_validate_triplets(cfg: PipelineConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    from components.validation.suites import validate_triplets

    summary = _run_suite(cfg, ctx, "triplets", lambda docs: validate_triplets(
        Path(ctx["triplets_uri"]), Path(ctx["data_uri"]), cfg.teacher.max_cot_tokens, docs))
    return {**ctx, "triplet_validation": summary}


def _scalar_summary(summary: dict) -> dict:
    """What of a validation summary is worth passing downstream (JSON-safe scalars)."""
    return {k: v for k, v in summary.items() if isinstance(v, (bool, int, float, str))}
