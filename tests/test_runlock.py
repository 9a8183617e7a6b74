"""The pipeline's run lock: one run at a time on one state dir, also where the scheduler is not
asked (`airflow dags test`, `lrem pipeline`); a retry of the same run is never blocked by its
own lock; a dead run's lock is detected and taken over; the error names the holder."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from components.runlock import RunLock, RunLockError, holding_run_lock

DAG_FILE = Path(__file__).resolve().parent.parent / "dags" / "lrem_nightly.py"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LREM_FAULT", raising=False)
    return tmp_path / "home"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_second_run_fails_naming_the_active_run_and_how_to_clear_it():
    lock = RunLock()
    lock.acquire("manual__run-A", "train_grpo", pid=os.getpid())
    with pytest.raises(RunLockError) as err:
        lock.acquire("manual__run-B", "pull_data", pid=os.getpid())
    msg = str(err.value)
    assert "'manual__run-A'" in msg and "train_grpo" in msg and "'manual__run-B'" in msg
    assert "lrem run-lock --clear" in msg and str(lock.path) in msg
    assert lock.holder().run_id == "manual__run-A"
    assert lock.release("manual__run-B") is False  # a refused run never frees the holder's lock
    assert lock.holder().run_id == "manual__run-A"


def test_a_retry_or_the_next_task_of_the_same_run_goes_on():
    lock = RunLock()
    first = lock.acquire("run-A", "pull_data", pid=os.getpid())
    time.sleep(0.01)
    again = lock.acquire("run-A", "pull_data", pid=os.getpid())
    assert again.run_id == "run-A" and again.acquired_at == first.acquired_at
    assert again.heartbeat_at > first.heartbeat_at


def test_task_lock_kept_between_tasks_and_retries_released_by_the_last_task():
    lock = RunLock()
    with holding_run_lock("run-A", "pull_data", last=False, final_try=False):
        assert lock.holder().pid == os.getpid() and lock.holder().task == "pull_data"
    between = lock.holder()
    assert between.run_id == "run-A" and between.pid is None  # kept for the next task, no process in it

    with pytest.raises(ConnectionError):  # a transient failure with retries left: the retry needs the lock
        with holding_run_lock("run-A", "build_index", last=False, final_try=False):
            raise ConnectionError("milvus blinked")
    assert lock.holder().run_id == "run-A"
    with pytest.raises(RunLockError):  # meanwhile another run is refused
        with holding_run_lock("run-B", "pull_data", last=False, final_try=False):
            pytest.fail("the body of a refused run ran")
    with holding_run_lock("run-A", "build_index", last=False, final_try=False):  # the retry is not blocked
        pass
    with holding_run_lock("run-A", "clean_up", last=True, final_try=False):
        pass
    assert lock.holder() is None
    with holding_run_lock("run-B", "pull_data", last=False, final_try=False):  # the next run starts
        assert lock.holder().run_id == "run-B"


@pytest.mark.parametrize("final_try, exc, released", [
    (True, ConnectionError, True),  # no retry left: the run ends here
    (False, RuntimeError, False),  # retried: keep it
    (False, ValueError, True),  # a non-transient error (ends_run): no retry comes
])
def test_a_task_that_ends_its_run_by_failing_releases_the_lock(final_try, exc, released):
    with pytest.raises(exc):
        with holding_run_lock("run-A", "validate_raw", last=False, final_try=final_try, ends_run=(ValueError,)):
            raise exc("boom")
    assert (RunLock().holder() is None) is released


def test_stale_locks_are_detected_and_taken_over():
    lock = RunLock(stale_after=600)
    holder = lock.acquire("run-dead", "train_cold_start", pid=_dead_pid())  # its worker was SIGKILLed
    assert "is gone" in lock.stale_reason(holder)
    assert lock.acquire("run-B", "pull_data", pid=os.getpid()).run_id == "run-B"

    data = json.loads(lock.path.read_text())  # an old heartbeat (a host that went away)
    data.update(run_id="run-old", pid=None, heartbeat_at=time.time() - 601)
    lock.path.write_text(json.dumps(data))
    assert "no heartbeat for" in lock.stale_reason(lock.holder())
    lock.acquire("run-C", "pull_data")

    # between two tasks: Airflow's view of the holder run decides
    states = {"run-C": "running"}
    lock = RunLock(run_state=states.get)
    lock.beat("run-C", pid=None)
    with pytest.raises(RunLockError):
        lock.acquire("run-D", "pull_data")
    states["run-C"] = "failed"  # e.g. marked failed in the UI
    assert "as failed" in lock.stale_reason(lock.holder())
    assert lock.acquire("run-D", "pull_data").run_id == "run-D"
    lock = RunLock(run_state=lambda run_id: 1 / 0)  # run unknown to this Airflow: not stale by itself
    with pytest.raises(RunLockError):
        lock.acquire("run-E", "pull_data")


def test_lrem_pipeline_fails_before_any_step_while_a_run_is_active(monkeypatch):
    import components.pipeline as pipeline
    from components.config import load_config

    called = []
    monkeypatch.setattr(pipeline, "run_step", lambda name, *a, **k: called.append(name))
    RunLock().acquire("scheduled__2026-11-25T02:00:00+00:00", "train_grpo", pid=os.getpid())
    with pytest.raises(RunLockError, match="scheduled__2026-11-25T02:00:00"):
        pipeline.run_all(load_config("configs/smoke.yaml"), "manual-1")
    assert called == []  # no step ran: registry, champion and index untouched
    assert RunLock().holder().run_id.startswith("scheduled__")


def _dag_module(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    spec = importlib.util.spec_from_file_location("lrem_nightly_lock", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_task(module, monkeypatch, task_id: str, run_id: str, try_number: int = 1, inputs=None):
    ti = types.SimpleNamespace(dag_id="lrem_nightly", task_id=task_id, try_number=try_number, max_tries=2,
                               get_dagrun_state=lambda dag_id, rid: "running")
    context = {"ti": ti, "run_id": run_id, "params": {"config": "configs/smoke.yaml", "dvc_rev": None}}
    monkeypatch.setattr(module, "get_current_context", lambda: context)
    callable_ = module.lrem_nightly().get_task(task_id).python_callable
    return callable_(inputs) if inputs is not None else callable_()


def test_the_dag_task_of_a_second_run_fails_at_once_without_running_its_step(monkeypatch, tmp_path):
    """What `airflow dags test` (make demo) beside an active run does: the real task wrapper of the DAG."""
    from airflow.sdk.exceptions import AirflowFailException

    import components.pipeline as pipeline

    module = _dag_module(monkeypatch, tmp_path)
    ran = []

    def fake_step(name, cfg, ctx, run_key=None):
        ran.append((name, run_key))
        if name == "train_grpo" and len([r for r in ran if r[0] == name]) == 1:
            raise ConnectionError("transient")
        return types.SimpleNamespace(to_dict=lambda: {"step": name})

    monkeypatch.setattr(pipeline, "run_step", fake_step)
    _run_task(module, monkeypatch, "pull_data", "scheduled__night-1")
    with pytest.raises(ConnectionError):  # try 1 of 3 fails: retried
        _run_task(module, monkeypatch, "train_grpo", "scheduled__night-1", inputs={})
    assert RunLock().holder().run_id == "scheduled__night-1"

    with pytest.raises(AirflowFailException, match="'scheduled__night-1'.*lrem run-lock --clear"):
        _run_task(module, monkeypatch, "pull_data", "manual__demo-2")  # e.g. make demo beside it
    assert [r for r in ran if r[1] == "manual__demo-2"] == []  # its step never ran
    assert RunLock().holder().run_id == "scheduled__night-1"

    assert _run_task(module, monkeypatch, "train_grpo", "scheduled__night-1", try_number=2, inputs={}) \
        == {"step": "train_grpo"}  # the retry of the same run is not blocked by its own lock
    _run_task(module, monkeypatch, "clean_up", "scheduled__night-1", inputs={})
    assert RunLock().holder() is None  # the last task released it


def test_the_fault_hook_is_off_by_default_and_parsed_strictly(monkeypatch):
    from components import faults

    faults.inject("pull_data")  # unset: nothing
    monkeypatch.setenv("LREM_FAULT", "pull_data:0:fail")
    faults.inject("train_grpo")  # another task: nothing
    with pytest.raises(faults.InjectedFault, match="pull_data"):
        faults.inject("pull_data")
    monkeypatch.setenv("LREM_FAULT", "pull_data:600:fail")  # held until its release file exists
    (faults.state_path("faults") / "pull_data.release").touch()
    started = time.monotonic()
    with pytest.raises(faults.InjectedFault):
        faults.inject("pull_data")
    assert time.monotonic() - started < 5
    monkeypatch.setenv("LREM_FAULT", "pull_data:soon")
    with pytest.raises(ValueError, match="LREM_FAULT"):
        faults.inject("pull_data")
