"""Serving follows the registry: the Milvus serving alias tracks MLflow's `champion`.

This module answers "which collection serves model version V" (:func:`collection_of`)
and is the one place that moves the serving alias (:func:`serve_version`): the nightly
`promote` step calls it for the challenger it promotes, and `lrem serve-sync` for
whatever version holds `champion`. An engineer promotes or rolls back by moving the
`champion` alias in the MLflow UI, then runs `lrem serve-sync`. Collections are never
dropped here, so a rollback only moves an alias.
"""

from __future__ import annotations

import logging

from components import tracking
from components.config import PipelineConfig
from components.registry import models

log = logging.getLogger(__name__)

COLLECTION_TAG = "milvus_collection"  # model version tag naming the collection built for it


def collection_name(cfg: PipelineConfig, version: str | int) -> str:
    """The name `build_index` gives the collection of a new model version."""
    return f"{cfg.index.collection_prefix}{version}"


def collection_of(cfg: PipelineConfig, version: str | int, model_version=None) -> str:
    """The collection holding the item embeddings of model ``version`` (its tag, else the naming rule).

    ``model_version`` is the MLflow ModelVersion when the caller has it (saves a lookup).
    """
    if model_version is None:
        import mlflow
        from mlflow.exceptions import MlflowException

        tracking.configure(cfg)
        try:
            model_version = mlflow.MlflowClient().get_model_version(cfg.tracking.model_name, str(version))
        except MlflowException:
            model_version = None
    tagged = model_version.tags.get(COLLECTION_TAG) if model_version is not None else None
    return tagged or collection_name(cfg, version)


def serve_version(cfg: PipelineConfig, version: str | int, model_version=None) -> dict:
    """Point the serving alias at the collection of model ``version`` (which must hold rows).

    Returns ``{version, alias, collection, previous, rows}``.
    """
    from components.index.collections import alias_target, collection_row_count, point_alias
    from components.index.server import ensure_server

    target = collection_of(cfg, version, model_version)
    ensure_server(cfg.index.milvus_uri)
    rows = collection_row_count(cfg.index.milvus_uri, target)
    if rows <= 0:
        raise RuntimeError(f"collection {target} of v{version} is empty or missing")
    alias = cfg.index.serving_alias
    before = alias_target(cfg.index.milvus_uri, alias)
    if before != target:
        point_alias(cfg.index.milvus_uri, alias, target)
    log.info("serving alias %s -> %s (v%s, %d rows; was %s)", alias, target, version, rows, before)
    return {"version": str(version), "alias": alias, "collection": target, "previous": before, "rows": rows}


def sync_serving_alias(cfg: PipelineConfig) -> dict:
    """Point the serving alias at the collection of the MLflow champion (``lrem serve-sync``)."""
    tracking.configure(cfg)
    champ = models.alias_version(cfg.tracking.model_name, models.CHAMPION)
    if champ is None:
        raise RuntimeError(f"registered model {cfg.tracking.model_name!r} has no '{models.CHAMPION}' alias yet")
    served = serve_version(cfg, champ.version, champ)
    return {"champion_version": served.pop("version"), **served}
