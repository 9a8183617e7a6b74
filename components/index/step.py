"""Step `build_index`: embed the whole catalog into a new Milvus collection for this version."""

from __future__ import annotations

import mlflow

from components import tracking
from components.artifacts import DataSnapshot, ItemIndex, RegisteredModel
from components.config import PipelineConfig
from components.data.io import load_world
from components.registry import models
from components.serving import COLLECTION_TAG, collection_name, collection_of


def run(cfg: PipelineConfig, snapshot: DataSnapshot, model: RegisteredModel) -> ItemIndex:
    from components.index.collections import build_item_index
    from components.index.server import ensure_server

    ensure_server(cfg.index.milvus_uri)
    tracking.configure(cfg)
    lrem = models.load_lrem(model.model_uri)
    world = load_world(snapshot.data_uri)
    name = collection_name(cfg, model.model_version)
    champion = models.alias_version(model.model_name, models.CHAMPION)
    protected = {collection_of(cfg, champion.version, champion)} if champion is not None else set()
    result = build_item_index(
        cfg.index.milvus_uri, name, world.catalog["item_id"].tolist(), world.catalog["title"].tolist(),
        lambda titles: lrem.embed_items(titles, batch_size=cfg.index.batch_size), cfg.index, protected=protected,
    )
    mlflow.MlflowClient().set_model_version_tag(model.model_name, model.model_version, COLLECTION_TAG, name)
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        mlflow.log_metrics({"index/rows": float(result["rows"]), "index/seconds": float(result["seconds"])})
        mlflow.set_tag(COLLECTION_TAG, name)
    return ItemIndex(collection=name, rows=int(result["rows"]), model_version=model.model_version)
