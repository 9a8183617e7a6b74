"""Step `pull_data`: the DVC-versioned data at a revision, snapshotted, with lineage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
import mlflow

from components import tracking
from components.artifacts import DataSnapshot
from components.config import PipelineConfig
from components.data import schema, versioning
from components.data.io import load_world, write_jsonl
from components.paths import REPO_ROOT, state_path


def _subset(snapshot: str, md5: str, cfg: PipelineConfig) -> str:
    """A smaller copy of the snapshot for tiny runs (first N items/queries, judged items kept)."""
    items, queries = cfg.data.max_items, cfg.data.max_queries
    target = state_path("snapshots") / f"{md5.removesuffix('.dir')}-items{items}-queries{queries}"
    if (target / ".complete").exists():
        return str(target)
    world = load_world(snapshot, max_items=items, max_queries=queries)
    target.mkdir(parents=True, exist_ok=True)
    for frame, name in ((world.catalog, schema.CATALOG_FILE), (world.queries, schema.QUERIES_FILE),
                        (world.judgments, schema.JUDGMENTS_FILE)):
        write_jsonl(target / name, frame.to_dict(orient="records"))
    shutil.copy(f"{snapshot}/{schema.KNOWLEDGE_FILE}", target / schema.KNOWLEDGE_FILE)
    (target / ".complete").write_text(md5)
    return str(target)


def run(cfg: PipelineConfig, run_key: str) -> DataSnapshot:
    repo = Path(cfg.data.repo).resolve() if cfg.data.repo else REPO_ROOT
    pulled = versioning.pull(cfg.data.dvc_rev, repo=repo)
    data_uri = pulled["data_uri"]
    if cfg.data.max_items is not None or cfg.data.max_queries is not None:
        data_uri = _subset(pulled["data_uri"], pulled["data_md5"], cfg)
    run_id = tracking.start_pipeline_run(cfg, run_key)
    with tracking.resume(cfg, run_id):
        mlflow.set_tags({
            "dvc_rev": pulled["dvc_rev"], "data_md5": pulled["data_md5"], "git_commit": pulled["git_commit"],
            "data_content_sha256": pulled["content_sha256"], "data_uri": data_uri,
        })
        mlflow.log_params(cfg.flat())
        mlflow.log_text(json.dumps(cfg.to_dict(), indent=2), "config.json")
    return DataSnapshot(run_key=run_key, mlflow_run_id=run_id, data_uri=data_uri, full_data_uri=pulled["data_uri"],
                        dvc_rev=pulled["dvc_rev"], data_md5=pulled["data_md5"], git_commit=pulled["git_commit"])
