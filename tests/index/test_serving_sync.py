"""Serving follows the registry: moving MLflow's `champion` alias moves the Milvus serving alias."""

from __future__ import annotations

from components.config import IndexConfig, PipelineConfig, TrackingConfig
from components.index.collections import alias_target, build_item_index
from components.serving import sync_serving_alias


def test_rollback_in_the_registry_moves_the_serving_alias(milvus_uri, embed_titles, tmp_path):
    import mlflow

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig(tracking=TrackingConfig(mlflow_uri=db, experiment="sync-test", model_name="lrem-sync"),
                         index=IndexConfig(milvus_uri=milvus_uri, serving_alias="sync_serving", index_type="FLAT"))
    client = mlflow.MlflowClient(tracking_uri=db, registry_uri=db)
    client.create_registered_model("lrem-sync")
    titles = ["oak desk", "steel mug", "wool socks"]
    for version in (1, 2):
        name = f"sync_items_v{version}"
        build_item_index(milvus_uri, name, [f"I{version}{i}" for i in range(3)], titles, embed_titles, cfg.index)
        mv = client.create_model_version("lrem-sync", source=str(tmp_path), tags={"milvus_collection": name})
        assert str(mv.version) == str(version)

    client.set_registered_model_alias("lrem-sync", "champion", "2")
    first = sync_serving_alias(cfg)
    assert first["collection"] == "sync_items_v2" and first["rows"] == 3
    assert alias_target(milvus_uri, "sync_serving") == "sync_items_v2"

    # an engineer rolls back in the MLflow UI: champion -> v1; serving follows on the next sync
    client.set_registered_model_alias("lrem-sync", "champion", "1")
    second = sync_serving_alias(cfg)
    assert second == {"champion_version": "1", "alias": "sync_serving", "collection": "sync_items_v1",
                      "previous": "sync_items_v2", "rows": 3}
    assert alias_target(milvus_uri, "sync_serving") == "sync_items_v1"
