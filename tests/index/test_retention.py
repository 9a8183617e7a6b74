"""Retention: the clean-up drops collections of versions that are neither champion, challenger,
serving, aliased, nor among the last N champions; never the serving one."""

from __future__ import annotations

import json

import pytest

from components.config import IndexConfig, PipelineConfig, TrackingConfig
from components.index.collections import (
    ProtectedCollectionError, _guard_drop, alias_target, build_item_index, milvus_client, point_alias,
)
from components.index.retention import clean_up_collections, plan_retention

PREFIX = "ret_items_v"


def _collections(uri: str) -> list[str]:
    with milvus_client(uri) as mc:
        return sorted(c for c in mc.list_collections() if c.startswith(PREFIX))


@pytest.fixture
def world(milvus_uri, embed_titles, tmp_path):
    """Seven versions, each with a collection; v1, v3, v4, v5 were promoted in turn (v5 champion), v7 challenger;
    an orphan collection of a version MLflow never had; a collection outside the prefix."""
    import mlflow

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig(tracking=TrackingConfig(mlflow_uri=db, experiment="ret-test", model_name="lrem-ret"),
                         index=IndexConfig(milvus_uri=milvus_uri, serving_alias="ret_serving", index_type="FLAT",
                                           collection_prefix=PREFIX, keep_last_champions=2))
    client = mlflow.MlflowClient(tracking_uri=db, registry_uri=db)
    client.create_registered_model("lrem-ret")
    with milvus_client(milvus_uri) as mc:  # a module-scoped server: start from a clean slate
        for alias in mc.list_aliases().get("aliases", []):
            mc.drop_alias(alias)
        for c in mc.list_collections():
            mc.drop_collection(c)
    titles = ["oak desk", "steel mug"]
    for version in range(1, 8):
        name = f"{PREFIX}{version}"
        build_item_index(milvus_uri, name, [f"I{version}a", f"I{version}b"], titles, embed_titles, cfg.index)
        tags = {"milvus_collection": name}
        if version in (1, 3, 5):
            tags["gate"] = "promoted: better"
        elif version == 4:  # made champion by hand, recorded by the audit trail only
            tags["audit.e4"] = json.dumps({"event": "e4", "alias": "champion", "to_version": "4", "from_version": "3"})
        else:
            tags["gate"] = "rejected: worse"
        client.create_model_version("lrem-ret", source=str(tmp_path), tags=tags)
    build_item_index(milvus_uri, f"{PREFIX}99", ["x"], ["orphan"], embed_titles, cfg.index)  # no such version
    build_item_index(milvus_uri, "other_collection", ["x"], ["kept"], embed_titles, cfg.index)
    client.set_registered_model_alias("lrem-ret", "champion", "5")
    client.set_registered_model_alias("lrem-ret", "challenger", "7")
    point_alias(milvus_uri, "ret_serving", f"{PREFIX}5")
    return cfg


def test_plan_keeps_champion_challenger_serving_and_last_n_champions(world):
    plan = plan_retention(world)
    assert plan.former_champions == ["5", "4", "3", "1"]
    assert set(plan.keep) == {f"{PREFIX}5", f"{PREFIX}7", f"{PREFIX}4"}  # champion + serving, challenger, last 2
    assert "serving alias ret_serving" in plan.keep[f"{PREFIX}5"]
    assert plan.drop == [f"{PREFIX}1", f"{PREFIX}2", f"{PREFIX}3", f"{PREFIX}6", f"{PREFIX}99"]
    assert set(plan_retention(world, keep_last_champions=4).keep) >= {f"{PREFIX}1", f"{PREFIX}3"}


def test_clean_up_drops_only_the_plan_and_never_the_serving_collection(world, milvus_uri):
    dry = clean_up_collections(world, dry_run=True)
    assert dry["dropped"] == [] and len(_collections(milvus_uri)) == 8

    # an engineer rolls serving back to v2 by hand: v2 is aliased now, so it stays
    point_alias(milvus_uri, "ret_serving", f"{PREFIX}2")
    result = clean_up_collections(world)
    assert result["dropped"] == [f"{PREFIX}1", f"{PREFIX}3", f"{PREFIX}6", f"{PREFIX}99"]
    assert _collections(milvus_uri) == [f"{PREFIX}2", f"{PREFIX}4", f"{PREFIX}5", f"{PREFIX}7"]
    assert alias_target(milvus_uri, "ret_serving") == f"{PREFIX}2"
    with milvus_client(milvus_uri) as mc:
        assert "other_collection" in mc.list_collections()  # outside the prefix: never touched
        with pytest.raises(ProtectedCollectionError):  # and the guard refuses the serving one, whatever a plan says
            _guard_drop(mc, f"{PREFIX}2", world.index, set())
    # a second run finds nothing more to drop
    assert clean_up_collections(world)["dropped"] == []


def test_keep_last_champions_must_not_be_negative(world):
    with pytest.raises(ValueError, match="keep_last_champions"):
        plan_retention(world, keep_last_champions=-1)


def test_cli_clean_up_dry_run(world, tmp_path, capsys):
    import yaml

    from components.cli import main as lrem

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"tracking": {"mlflow_uri": world.tracking.mlflow_uri,
                                                 "model_name": world.tracking.model_name},
                                    "index": {"milvus_uri": world.index.milvus_uri, "serving_alias": "ret_serving",
                                              "collection_prefix": PREFIX, "keep_last_champions": 2}}))
    assert lrem(["--config", str(path), "clean-up", "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True and out["dropped"] == []
    assert out["drop"] == [f"{PREFIX}1", f"{PREFIX}2", f"{PREFIX}3", f"{PREFIX}6", f"{PREFIX}99"]


def test_clean_up_step_through_the_registry(world, milvus_uri, monkeypatch, tmp_path):
    """The nightly `clean_up` task: typed inputs from the context, outcome on the pipeline's MLflow run."""
    import mlflow

    from components import tracking
    from components.artifacts import DataSnapshot, PromotionResult, RetentionReport
    from components.pipeline import run_step

    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    run_id = tracking.start_pipeline_run(world, "nightly-1")
    snapshot = DataSnapshot(run_key="nightly-1", mlflow_run_id=run_id, data_uri="/d", full_data_uri="/d",
                            dvc_rev="workspace", data_md5="x", git_commit="x")
    promotion = PromotionResult(promoted=True, model_name="lrem-ret", model_version="5", champion_version="5",
                                serving_alias="ret_serving", collection=f"{PREFIX}5")
    report = run_step("clean_up", world, {"pull_data": snapshot.to_dict(), "promote": promotion.to_dict()})
    assert isinstance(report, RetentionReport)
    assert report.dropped == [f"{PREFIX}1", f"{PREFIX}2", f"{PREFIX}3", f"{PREFIX}6", f"{PREFIX}99"]
    assert report.kept == [f"{PREFIX}4", f"{PREFIX}5", f"{PREFIX}7"] and report.keep_last_champions == 2
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.data.metrics["retention/dropped"] == 5.0
    assert run.data.tags["retention.dropped"].startswith(f"{PREFIX}1, ")
