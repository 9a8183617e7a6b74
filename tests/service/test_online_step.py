"""The pipeline step `evaluate_online` on the real stack: service in-process, replay, analysis, artefact."""

from __future__ import annotations

from components.artifacts import DataSnapshot, ItemIndex, OnlineReport, RegisteredModel


def test_evaluate_online_step_compares_challenger_with_champion(stack):
    import mlflow

    from components import tracking
    from components.pipeline import STEPS
    from components.service.step import run_evaluate_online

    cfg, world, home = stack
    cfg.online.max_requests = 40
    run_id = tracking.start_pipeline_run(cfg, "online-step")
    snapshot = DataSnapshot(run_key="online-step", mlflow_run_id=run_id, data_uri=str(home / "data"),
                            full_data_uri=str(home / "data"), dvc_rev="r", data_md5="m", git_commit="c")
    name = cfg.tracking.model_name
    model = RegisteredModel(model_name=name, model_version="2", model_uri=f"models:/{name}/2")
    index = ItemIndex(collection="svc_items_v2", rows=len(world.catalog), model_version="2")
    assert STEPS["evaluate_online"].function() is run_evaluate_online
    report = run_evaluate_online(cfg, snapshot, model, index)
    assert isinstance(report, OnlineReport) and report.compared and report.champion_version == "1"
    assert OnlineReport.from_json(report.to_json(), "evaluate_online") == report
    assert report.offline_ci["overall"]["n"] == len(world.split("eval"))
    assert report.headline["searches"] == 40 and report.report_uri.startswith(f"runs:/{run_id}/online/")
    run = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri).get_run(run_id)
    assert "online.regression" in run.data.tags
    # the champion as its own challenger: nothing to compare, the gate keeps the offline decision
    same = run_evaluate_online(cfg, snapshot, RegisteredModel(model_name=name, model_version="1",
                                                              model_uri=f"models:/{name}/1"),
                               ItemIndex(collection="svc_items_v1", rows=len(world.catalog), model_version="1"))
    assert not same.compared and "already the champion" in same.reason
