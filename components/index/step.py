"""Step `build_index`: embed the whole catalog into a new Milvus collection for this version."""

from __future__ import annotations

from typing import Any

import mlflow

from components import tracking
from components.config import PipelineConfig
from components.data.io import load_world
from components.registry import models


def collection_name(cfg: PipelineConfig, version: str | int) -> str:
    return f"{cfg.index.collection_prefix}{version}"


def run(cfg: PipelineConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    from components.index.collections import build_item_index
    from components.index.server import ensure_server

    ensure_server(cfg.index.milvus_uri)
    tracking.configure(cfg)
    model = models.load_lrem(ctx["model_uri"])
    world = load_world(ctx["data_uri"])
    name = collection_name(cfg, ctx["model_version"])
    champion = models.alias_version(ctx["model_name"], models.CHAMPION)
    protected = {collection_name(cfg, champion.version)} if champion is not None else set()
    result = build_item_index(
        cfg.index.milvus_uri, name, world.catalog["item_id"].tolist(), world.catalog["title"].tolist(),
        lambda titles: model.embed_items(titles, batch_size=cfg.index.batch_size), cfg.index, protected=protected,
    )
    mlflow.MlflowClient().set_model_version_tag(ctx["model_name"], ctx["model_version"], "milvus_collection", name)
    with tracking.resume(cfg, ctx["mlflow_run_id"]):
        mlflow.log_metrics({"index/rows": float(result["rows"]), "index/seconds": float(result["seconds"])})
        mlflow.set_tag("milvus_collection", name)
    return {**ctx, "collection": name, "index_rows": int(result["rows"])}
