"""Serving follows the registry: the Milvus serving alias tracks MLflow's `champion`.

An engineer promotes or rolls back by moving the `champion` alias in the MLflow UI;
`lrem serve-sync` (run by the DAG's promote step, and on demand) then points the Milvus
serving alias at that version's collection. Collections are never dropped here, so a
rollback only moves an alias.
"""

from __future__ import annotations

from components import tracking
from components.config import PipelineConfig
from components.registry import models


def sync_serving_alias(cfg: PipelineConfig) -> dict:
    from components.index.collections import alias_target, collection_row_count, point_alias
    from components.index.server import ensure_server
    from components.index.step import collection_name

    tracking.configure(cfg)
    champ = models.alias_version(cfg.tracking.model_name, models.CHAMPION)
    if champ is None:
        raise RuntimeError(f"registered model {cfg.tracking.model_name!r} has no '{models.CHAMPION}' alias yet")
    target = champ.tags.get("milvus_collection") or collection_name(cfg, champ.version)
    ensure_server(cfg.index.milvus_uri)
    rows = collection_row_count(cfg.index.milvus_uri, target)
    if rows <= 0:
        raise RuntimeError(f"collection {target} of champion v{champ.version} is empty or missing")
    before = alias_target(cfg.index.milvus_uri, cfg.index.serving_alias)
    if before != target:
        point_alias(cfg.index.milvus_uri, cfg.index.serving_alias, target)
    return {"champion_version": str(champ.version), "alias": cfg.index.serving_alias,
            "collection": target, "previous": before, "rows": rows}
