"""`lrem step NAME --ctx FILE`: a step runs on the artefacts of a context file, as the DAG's tasks do."""

from __future__ import annotations

import json

import pytest
import yaml

from components.artifacts import ArtifactError, DataSnapshot, EvalReport, GateDecision, OnlineReport


def test_gate_step_from_a_context_file(tmp_path, monkeypatch, capsys):
    import mlflow

    from components.cli import main

    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"name": "cli-test", "tracking": {"mlflow_uri": db, "experiment": "cli-test"}}))
    from components import tracking
    from components.config import load_config

    cfg = load_config(config)
    run_id = tracking.start_pipeline_run(cfg, "k1")
    metrics = {"overall": {"hit_rate@10": 0.2, "hit_rate@50": 0.4, "hit_rate@100": 0.6, "precision@10": 0.1}}
    with tracking.resume(cfg, run_id):
        mlflow.log_dict({"challenger v2": metrics, "champion v1": {"overall": {**metrics["overall"],
                                                                               "hit_rate@100": 0.5}}},
                        "evaluation/metrics.json")
    snapshot = DataSnapshot(run_key="k1", mlflow_run_id=run_id, data_uri="/d", full_data_uri="/d", dvc_rev="r",
                            data_md5="m", git_commit="c")
    report = EvalReport(model_version="2", champion_version="1",
                        metrics_uri=f"runs:/{run_id}/evaluation/metrics.json",
                        report_uri=f"runs:/{run_id}/evaluation/index.html")
    ctx_file = tmp_path / "ctx.json"
    online = OnlineReport(model_version="2", champion_version="1", compared=True, regression=False,
                          reason="no significant online regression", report_uri="",
                          offline_ci={"overall": {"diff": 0.1, "ci_low": 0.02, "ci_high": 0.18, "challenger": 0.6,
                                                  "champion": 0.5, "n": 50}})
    ctx_file.write_text(json.dumps({"pull_data": snapshot.to_dict(), "evaluate_offline": report.to_dict(),
                                    "evaluate_online": online.to_dict()}))

    assert main(["--config", str(config), "step", "gate", "--ctx", str(ctx_file), "--save",
                 "--out", str(tmp_path / "out.json")]) == 0
    decision = GateDecision.from_json((tmp_path / "out.json").read_text(), "gate")
    assert decision.promote and decision.champion_value == 0.5 and decision.challenger_value == 0.6
    assert GateDecision.from_json(capsys.readouterr().out, "gate") == decision
    assert json.loads(ctx_file.read_text())["gate"] == decision.to_dict()
    assert mlflow.MlflowClient(db).get_run(run_id).data.tags["gate.promote"] == "True"

    # an input with a renamed field fails before the step runs, naming the producing step and the field
    bad = {"pull_data": snapshot.to_dict(), "evaluate_offline": {**report.to_dict(), "metrics": "x"}}
    with pytest.raises(ArtifactError, match=r"step evaluate_offline: EvalReport: unknown field\(s\) \['metrics'\]"):
        main(["--config", str(config), "step", "gate", "--ctx-json", json.dumps(bad)])


def _first(cfg, run_key: str) -> DataSnapshot:
    return DataSnapshot(run_key=run_key, mlflow_run_id="r1", data_uri="/d", full_data_uri="/d", dvc_rev="HEAD",
                        data_md5="m", git_commit="c")


def _second(cfg, snapshot: DataSnapshot):
    from components.artifacts import TripletSet

    assert isinstance(snapshot, DataSnapshot)
    return TripletSet(triplets_uri=f"/runs/{snapshot.run_key}/triplets.jsonl", n_triplets=3)


def test_pipeline_runs_the_registry_in_order_and_leaves_its_context(tmp_path, monkeypatch, capsys):
    from components import pipeline
    from components.artifacts import TripletSet
    from components.cli import main

    fake = {"first": pipeline.Step("first", f"{__name__}:_first", DataSnapshot),
            "second": pipeline.Step("second", f"{__name__}:_second", TripletSet, {"snapshot": "first"})}
    monkeypatch.setattr(pipeline, "STEPS", fake)
    monkeypatch.setenv("LREM_HOME", str(tmp_path))
    assert main(["pipeline", "--run-key", "manual__2026-01-01T02:00:00+00:00"]) == 0
    ctx_file = tmp_path / "runs" / "manual__2026-01-01T02-00-00-00-00" / "ctx.json"
    ctx = json.loads(ctx_file.read_text())
    assert list(ctx) == ["first", "second"]
    assert TripletSet.from_dict(ctx["second"], "second").triplets_uri.endswith("02-00-00-00-00/triplets.jsonl")
    assert main(["steps"]) == 0
    assert "second               (snapshot=first) -> TripletSet" in capsys.readouterr().out
