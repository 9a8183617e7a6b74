"""Serving follows the registry, verified and audited: sync, observed UI moves, rollback, refusal."""

from __future__ import annotations

import pytest

from components.index.collections import alias_target, build_item_index
from components.service import audit


def test_sync_history_rollback_and_verification(stack):
    import mlflow

    cfg, world, home = stack
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri, registry_uri=cfg.tracking.mlflow_uri)
    name, alias, uri = cfg.tracking.model_name, cfg.index.serving_alias, cfg.index.milvus_uri

    first = audit.sync(cfg, actor="test")
    assert first["moved"] and first["collection"] == "svc_items_v1"
    assert first["verified"]["rows"] == first["verified"]["rows_expected"] == len(world.catalog)
    assert alias_target(uri, alias) == "svc_items_v1"
    assert audit.sync(cfg, actor="test")["moved"] is False  # idempotent, nothing recorded

    # an engineer promotes v2 in the MLflow UI; the next sync follows and records who/what/when
    client.set_registered_model_alias(name, "champion", "2")
    second = audit.sync(cfg, actor="lrem_serve_sync DAG (test)")
    assert second["collection"] == "svc_items_v2" and second["previous"] == "svc_items_v1"
    trail = audit.history(cfg)
    kinds = [(e["kind"], e["from_version"], e["to_version"]) for e in trail]
    # the first sync saw a champion it had not served yet: recorded as set outside lrem
    assert kinds == [("champion", None, "1"), ("serving_alias", None, "1"), ("champion", "1", "2"),
                     ("serving_alias", "1", "2")]
    assert "outside lrem" in trail[2]["actor"] and trail[3]["actor"] == "lrem_serve_sync DAG (test)"
    assert all(e["when"].endswith("Z") for e in trail)
    tags = client.get_model_version(name, "2").tags
    assert sum(k.startswith("audit.") for k in tags) == 2  # both moves to v2 are on v2
    runs = client.search_runs([client.get_experiment_by_name(f"{cfg.tracking.experiment}-serving-audit").experiment_id])
    assert len(runs) == 4

    # rollback: champion back to the previous champion (v1), serving follows at once
    back = audit.rollback(cfg, actor="test rollback")
    assert back["from_version"] == "2" and back["to_version"] == "1" and back["seconds"] < 60
    assert alias_target(uri, alias) == "svc_items_v1"
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert audit.history(cfg)[-2]["kind"] == "champion" and audit.history(cfg)[-2]["actor"] == "test rollback"

    # a half-built collection is never served: the alias stays, the champion move is refused by sync
    half = "svc_items_v3"
    build_item_index(uri, half, world.catalog["item_id"].tolist()[:50], world.catalog["title"].tolist()[:50],
                     lambda titles: __import__("numpy").random.default_rng(0).standard_normal((len(titles), 48)),
                     cfg.index)
    run_id = client.get_model_version(name, "1").tags["mlflow_run_id"]
    mv3 = client.create_model_version(name, source=client.get_model_version(name, "1").source, run_id=run_id,
                                      tags={"milvus_collection": half, "mlflow_run_id": run_id})
    client.set_registered_model_alias(name, "champion", str(mv3.version))
    with pytest.raises(audit.VerificationError, match="50 rows, the catalog 200"):
        audit.sync(cfg, actor="test")
    assert alias_target(uri, alias) == "svc_items_v1"
    client.set_registered_model_alias(name, "champion", "1")  # the engineer puts it back
    with pytest.raises(audit.VerificationError):
        audit.rollback(cfg, to=str(mv3.version))  # nor can a rollback land on it
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"

    # rollback --to an explicit version
    out = audit.rollback(cfg, to="2", actor="test")
    assert out["to_version"] == "2" and alias_target(uri, alias) == "svc_items_v2"
    client.set_registered_model_alias(name, "champion", "1")
    audit.sync(cfg, actor="test")


def test_nightly_promote_is_recorded_in_the_audit_trail(stack):
    import mlflow

    from components.artifacts import DataSnapshot, GateDecision, RegisteredModel
    from components.registry.step import run_promote

    cfg, world, home = stack
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri, registry_uri=cfg.tracking.mlflow_uri)
    name = cfg.tracking.model_name
    client.set_registered_model_alias(name, "champion", "1")
    audit.sync(cfg, actor="test")
    run_id = client.get_model_version(name, "2").tags["mlflow_run_id"]
    snapshot = DataSnapshot(run_key="nightly-1", mlflow_run_id=run_id, data_uri=str(home / "data"),
                            full_data_uri=str(home / "data"), dvc_rev="r", data_md5="m", git_commit="c")
    result = run_promote(cfg, snapshot, RegisteredModel(model_name=name, model_version="2", model_uri=f"models:/{name}/2"),
                         GateDecision(True, "no significant regression", "hit_rate@100", 0.5, 0.4))
    assert result.promoted and alias_target(cfg.index.milvus_uri, cfg.index.serving_alias) == "svc_items_v2"
    last = audit.history(cfg)[-2:]
    assert [(e["kind"], e["from_version"], e["to_version"]) for e in last] == [("champion", "1", "2"),
                                                                               ("serving_alias", "1", "2")]
    assert all(e["actor"] == "lrem_nightly promote (run nightly-1)" for e in last)


def test_history_and_rollback_from_the_command_line(stack, tmp_path, capsys):
    import yaml

    from components.cli import main

    cfg, _, _ = stack
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    champion_before = audit.models.alias_version(cfg.tracking.model_name, "champion").version
    assert main(["--config", str(config), "rollback", "--to", "1" if str(champion_before) == "2" else "2"]) == 0
    out = capsys.readouterr().out
    assert "champion v" in out and "serving alias" in out
    assert main(["--config", str(config), "history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("when (UTC)") and any("lrem rollback" in line for line in lines[1:])
