"""gate.sequential: a kept challenger is re-tested the next night instead of training a new one.

Unit level (no DAG run, no training): the gate step's record of the kept pair, when a pending
pair is re-tested and when it is not, `lrem pipeline`'s branch (run_all with the steps faked)
and the DAG's branch (its wiring, and the real task callables with a fake task context, as
tests/test_runlock.py calls them).
"""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

import pytest

from components.artifacts import DataSnapshot, EvalReport, GateDecision, ItemIndex, OnlineReport, RegisteredModel
from components.config import load_config
from components.evaluation import retest

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "lrem_nightly.py"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LREM_FAULT", raising=False)
    return tmp_path / "home"


def _cfg(sequential=True, max_nights=3):
    return load_config("configs/smoke.yaml", {"gate": {"sequential": sequential,
                                                       "sequential_max_nights": max_nights}})


def _snapshot(run_key):
    return DataSnapshot(run_key=run_key, mlflow_run_id="r", data_uri="d", full_data_uri="d", dvc_rev="v",
                        data_md5="m", git_commit="c")


REPORT = EvalReport(model_version="3", champion_version="2", metrics_uri="runs:/kept/evaluation/metrics.json",
                    report_uri="runs:/kept/evaluation/index.html", headline={"hit_rate@100": 0.5})
ONLINE = OnlineReport(model_version="3", champion_version="2", compared=True, regression=False, reason="",
                      report_uri="")


def _decision(kept=True, promote=False):
    return GateDecision(promote=promote, reason="inconclusive, kept as challenger" if kept else "no regression",
                        metric="hit_rate@100", challenger_value=0.5, champion_value=0.5, evidence={"kept": kept})


def _aliases(monkeypatch, champion="2", challenger="3"):
    from components import tracking
    from components.registry import models

    monkeypatch.setattr(tracking, "configure", lambda cfg: "0")
    versions = {models.CHAMPION: champion, models.CHALLENGER: challenger}
    monkeypatch.setattr(models, "alias_version", lambda name, alias: types.SimpleNamespace(version=versions[alias])
                        if versions[alias] is not None else None)


def test_a_kept_decision_makes_the_pair_pending_and_counts_its_nights():
    cfg = _cfg(max_nights=3)
    assert retest.read_pending() is None
    out = retest.record_decision(cfg, _snapshot("night-1"), REPORT, ONLINE, _decision())
    assert out == _decision()  # kept, not at the limit: the decision as the gate made it
    pending = retest.read_pending()
    assert (pending["champion_version"], pending["challenger_version"]) == ("2", "3")
    assert pending["runs"] == ["night-1"] and pending["report"] == REPORT.to_dict()
    retest.record_decision(cfg, _snapshot("night-1"), REPORT, ONLINE, _decision())  # a retried gate task
    assert retest.read_pending()["runs"] == ["night-1"]
    retest.record_decision(cfg, _snapshot("night-2"), REPORT, ONLINE, _decision())
    pending = retest.read_pending()
    assert pending["runs"] == ["night-1", "night-2"] and pending["kept_by_run"] == "night-1"
    # the third night is the last one: still inconclusive, the pair is dropped and the reason says so
    last = retest.record_decision(cfg, _snapshot("night-3"), REPORT, ONLINE, _decision())
    assert retest.read_pending() is None
    assert not last.promote and last.evidence["kept"] is False and last.evidence["dropped_after_nights"] == 3
    assert "dropped, not re-tested" in last.reason and "trains a new challenger" in last.reason


@pytest.mark.parametrize("decision", [_decision(kept=False, promote=True), _decision(kept=False, promote=False)])
def test_any_other_decision_clears_the_pending_pair(decision):
    cfg = _cfg()
    retest.record_decision(cfg, _snapshot("night-1"), REPORT, ONLINE, _decision())
    assert retest.read_pending() is not None
    assert retest.record_decision(cfg, _snapshot("night-2"), REPORT, ONLINE, decision) == decision
    assert retest.read_pending() is None


def test_sequential_off_never_keeps_a_pending_pair():
    retest.record_decision(_cfg(sequential=False), _snapshot("night-1"), REPORT, ONLINE, _decision())
    assert retest.read_pending() is None


def test_the_pending_pair_is_retested_only_while_the_registry_holds_it(monkeypatch):
    cfg = _cfg()
    retest.record_decision(cfg, _snapshot("night-1"), REPORT, ONLINE, _decision())
    _aliases(monkeypatch)
    assert retest.kept_pair(_cfg(sequential=False)) is None  # sequential off: train
    assert retest.kept_pair(cfg)["challenger_version"] == "3"
    _aliases(monkeypatch, champion="1")  # rolled back: the comparison is stale
    assert retest.kept_pair(cfg) is None and retest.read_pending() is None


def test_a_pair_whose_nights_are_used_up_is_not_retested(monkeypatch):
    cfg = _cfg(max_nights=5)
    for night in range(2):
        retest.record_decision(cfg, _snapshot(f"night-{night}"), REPORT, ONLINE, _decision())
    _aliases(monkeypatch)
    assert retest.kept_pair(cfg) is not None
    assert retest.kept_pair(_cfg(max_nights=2)) is None and retest.read_pending() is None


def test_the_kept_context_is_the_kept_nights_artefacts(monkeypatch):
    import components.serving as serving

    monkeypatch.setattr(serving, "collection_of", lambda cfg, version, mv=None: f"lrem_items_v{version}")
    cfg = _cfg()
    retest.record_decision(cfg, _snapshot("night-1"), REPORT, ONLINE, _decision())
    ctx = retest.kept_context(cfg, retest.read_pending())
    assert set(ctx) == set(retest.KEPT_ARTEFACTS)
    model = RegisteredModel.from_dict(ctx["register_challenger"], "register_challenger")
    assert model.model_uri == f"models:/{cfg.tracking.model_name}/3"
    assert ItemIndex.from_dict(ctx["build_index"], "build_index").collection == "lrem_items_v3"
    assert EvalReport.from_dict(ctx["evaluate_offline"], "evaluate_offline") == REPORT
    from components.pipeline import step_inputs

    # with tonight's snapshot and the re-tested steps' artefacts, every re-test step has its inputs
    full = {"pull_data": _snapshot("night-2").to_dict(), **ctx, "evaluate_online": ONLINE.to_dict(),
            "gate": _decision().to_dict()}
    for step in retest.RETEST_STEPS:
        step_inputs(step, full)


def _fake_steps(monkeypatch):
    import components.pipeline as pipeline

    ran = []

    def fake_step(name, cfg, ctx, run_key=None):
        ran.append((name, dict(ctx)))
        return types.SimpleNamespace(to_dict=lambda: {"step": name, "run_key": run_key})

    monkeypatch.setattr(pipeline, "run_step", fake_step)
    monkeypatch.setattr(pipeline, "run_shard", lambda *a, **k: {})
    return pipeline, ran


def test_lrem_pipeline_retests_the_kept_pair_instead_of_training(monkeypatch):
    pipeline, ran = _fake_steps(monkeypatch)
    kept = {"register_challenger": {"kept": "model"}, "build_index": {"kept": "index"},
            "evaluate_offline": {"kept": "report"}}
    monkeypatch.setattr(retest, "kept_pair", lambda cfg: {"champion_version": "2", "challenger_version": "3"})
    monkeypatch.setattr(retest, "kept_context", lambda cfg, record: dict(kept))
    ctx = pipeline.run_all(_cfg(), "night-2")
    assert [name for name, _ in ran] == ["pull_data", "validate_raw", *retest.RETEST_STEPS]
    seen = dict(ran)["evaluate_online"]
    assert seen["register_challenger"] == {"kept": "model"} and seen["pull_data"]["step"] == "pull_data"
    assert dict(ran)["promote"]["gate"] == {"step": "gate", "run_key": "night-2"}
    assert "generate_triplets" not in ctx and ctx["promote"]["step"] == "promote"
    from components.runlock import RunLock

    assert RunLock().holder() is None  # released as after a training night


def test_lrem_pipeline_trains_when_nothing_is_pending(monkeypatch):
    pipeline, ran = _fake_steps(monkeypatch)
    monkeypatch.setattr(retest, "kept_pair", lambda cfg: None)
    pipeline.run_all(_cfg(), "night-1")
    assert [name for name, _ in ran] == list(pipeline.STEPS)


# ----------------------------------------------------------------------------- the DAG
def _dag(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.delenv("LREM_EXECUTION", raising=False)
    spec = importlib.util.spec_from_file_location("lrem_nightly_retest", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.lrem_nightly()


def _call(module, monkeypatch, dag, task_id, run_id, *args):
    ti = types.SimpleNamespace(dag_id="lrem_nightly", task_id=task_id, try_number=1, max_tries=2,
                               get_dagrun_state=lambda dag_id, rid: "running")
    context = {"ti": ti, "run_id": run_id, "params": {"config": "configs/smoke.yaml", "dvc_rev": None}}
    monkeypatch.setattr(module, "get_current_context", lambda: context)
    return dag.get_task(task_id).python_callable(*args)


def test_the_dag_branches_after_validate_raw(monkeypatch, tmp_path):
    from components.pipeline import STEPS

    module, dag = _dag(monkeypatch, tmp_path)
    branch = dag.get_task(retest.BRANCH_TASK)
    assert "BranchPython" in type(branch).__name__  # @task.branch: skips the path it does not follow
    assert retest.BRANCH_AFTER in branch.upstream_task_ids
    after = list(STEPS)[list(STEPS).index(retest.BRANCH_AFTER) + 1]
    assert branch.downstream_task_ids == {after, retest.KEPT_TASK}
    chain = [retest.KEPT_TASK, *(retest.retest_task_id(s) for s in retest.RETEST_STEPS)]
    for up, down in zip(chain, chain[1:]):
        assert down in dag.get_task(up).downstream_task_ids
    for name in retest.RETEST_STEPS:  # tonight's snapshot and the earlier re-test steps' XComs
        task = dag.get_task(retest.retest_task_id(name))
        assert "pull_data" in task.upstream_task_ids and retest.KEPT_TASK in task.upstream_task_ids
        assert task.retries >= 1
    # nothing of the training path runs on the re-test path: no training task is downstream of it
    downstream = dag.get_task(retest.KEPT_TASK).get_flat_relative_ids(upstream=False)
    assert not downstream & set(STEPS)


def test_the_branch_task_follows_the_pending_pair(monkeypatch, tmp_path):
    module, dag = _dag(monkeypatch, tmp_path)
    monkeypatch.setattr(retest, "kept_pair", lambda cfg: None)
    assert _call(module, monkeypatch, dag, retest.BRANCH_TASK, "scheduled__n1") == "generate_triplets"
    monkeypatch.setattr(retest, "kept_pair", lambda cfg: {"challenger_version": "3"})
    assert _call(module, monkeypatch, dag, retest.BRANCH_TASK, "scheduled__n1") == retest.KEPT_TASK


def test_the_retest_tasks_run_the_steps_on_the_kept_pair_and_release_the_lock(monkeypatch, tmp_path):
    import components.pipeline as pipeline
    from components.runlock import RunLock

    module, dag = _dag(monkeypatch, tmp_path)
    kept = {"register_challenger": {"kept": "model"}, "build_index": {"kept": "index"},
            "evaluate_offline": {"kept": "report"}}
    monkeypatch.setattr(retest, "kept_pair", lambda cfg: {"challenger_version": "3"})
    monkeypatch.setattr(retest, "kept_context", lambda cfg, record: dict(kept))
    ran = []
    monkeypatch.setattr(pipeline, "run_step", lambda name, cfg, ctx, run_key=None: (
        ran.append((name, dict(ctx), run_key)), types.SimpleNamespace(to_dict=lambda: {"step": name}))[1])
    run = "scheduled__n2"
    assert _call(module, monkeypatch, dag, retest.KEPT_TASK, run) == kept
    done = {"pull_data": {"step": "pull_data"}}
    for name in retest.RETEST_STEPS:
        out = _call(module, monkeypatch, dag, retest.retest_task_id(name), run, kept, dict(done))
        done[name] = out
        if name != retest.RETEST_STEPS[-1]:
            assert RunLock().holder().run_id == run  # held between the run's tasks
    assert [r[0] for r in ran] == list(retest.RETEST_STEPS)
    assert all(r[2] == run for r in ran)
    assert ran[1][1]["evaluate_offline"] == {"kept": "report"} and ran[1][1]["evaluate_online"] == {"step":
                                                                                                     "evaluate_online"}
    assert ran[2][1]["register_challenger"] == {"kept": "model"} and ran[2][1]["gate"] == {"step": "gate"}
    assert RunLock().holder() is None  # retest_promote, the path's last task, released the run lock


def test_kept_challenger_fails_for_good_when_nothing_is_pending(monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    module, dag = _dag(monkeypatch, tmp_path)
    monkeypatch.setattr(retest, "kept_pair", lambda cfg: None)
    with pytest.raises(AirflowFailException, match="nothing to re-test"):
        _call(module, monkeypatch, dag, retest.KEPT_TASK, "scheduled__n3")
