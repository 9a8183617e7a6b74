"""Steps `register_challenger` and `promote`."""

from __future__ import annotations

from typing import Any

import mlflow

from components import tracking
from components.config import PipelineConfig
from components.paths import run_dir
from components.registry import models

LINEAGE_TAGS = ("dvc_rev", "data_md5", "git_commit", "n_triplets", "mlflow_run_id", "run_key")


def run_register(cfg: PipelineConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    """Log the trained model as a pyfunc, register a version, alias it `challenger`.

    A retried task finds the version it registered before (tagged with the run key)
    instead of registering a second one.
    """
    name = cfg.tracking.model_name
    tracking.configure(cfg)
    existing = models.find_version_by_tag(name, "run_key", ctx["run_key"])
    if existing is None:
        with tracking.resume(cfg, ctx["mlflow_run_id"]):
            local = tracking.download(ctx["model_artifact_uri"], run_dir(ctx["run_key"]) / "register")
            info = models.log_lrem_model(local, registered_name=name)
        version = str(info.registered_model_version)
    else:
        version = str(existing.version)
    client = mlflow.MlflowClient()
    for key in LINEAGE_TAGS:
        if key in ctx:
            client.set_model_version_tag(name, version, key, str(ctx[key]))
    client.set_model_version_tag(name, version, "pipeline", cfg.name)
    models.set_alias(name, models.CHALLENGER, version)
    return {**ctx, "model_name": name, "model_version": version, "model_uri": f"models:/{name}/{version}"}


def run_promote(cfg: PipelineConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    """Move `champion` (MLflow) and the serving alias (Milvus) to the challenger, when the gate says so."""
    from components.index.collections import point_alias
    from components.index.server import ensure_server

    decision = ctx["gate"]
    name, version = ctx["model_name"], ctx["model_version"]
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri, registry_uri=cfg.tracking.mlflow_uri)
    tracking.configure(cfg)
    if not decision["promote"]:
        client.set_model_version_tag(name, version, "gate", f"rejected: {decision['reason']}")
        print(f"not promoted: {decision['reason']} (champion untouched)")
        return {**ctx, "promoted": False}
    ensure_server(cfg.index.milvus_uri)
    point_alias(cfg.index.milvus_uri, cfg.index.serving_alias, ctx["collection"])
    models.set_alias(name, models.CHAMPION, version)
    client.set_model_version_tag(name, version, "gate", f"promoted: {decision['reason']}")
    with tracking.resume(cfg, ctx["mlflow_run_id"]):
        mlflow.set_tag("promoted", "true")
    print(f"promoted {name} v{version} to champion; {cfg.index.serving_alias} -> {ctx['collection']}")
    return {**ctx, "promoted": True}
