"""Fault drill: a second `lrem_nightly` run while one is active does not run beside it.

A real Airflow 3 stack (api-server, scheduler with the LocalExecutor, dag-processor; SQLite
metadata DB, its own AIRFLOW_HOME and port, the repository's dags folder, examples off,
every DAG paused but `lrem_nightly`, which runs on triggers only: `LREM_SCHEDULE=none`) and
the real DAG. The fault hook `LREM_FAULT=pull_data:<s>:fail` (components/faults.py) holds
each run in its first task, after it took the run lock, until the drill lets it go; then that
task fails without retries, so no step runs and nothing heavier than the scheduler is needed.

1. Two runs are triggered back to back through the REST API.
2. While run 1 holds its first task: run 2 stays `queued` with no task instance started (the
   scheduler's `max_active_runs=1`), and `airflow dags test` of the same DAG beside it (what
   `make demo` runs: it ignores max_active_runs) on the same LREM_HOME fails at once, naming
   run 1, without running a step (the run lock, components/runlock.py).
3. Run 1 is let go and fails; only then does run 2 start: from the metadata, run 2 and every
   task instance of it started after run 1 ended; run 2's first task took the lock (it failed
   by the injected fault, not by the lock) and released it when it failed for good.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from e2e_helpers import BIN, REPO  # noqa: E402  (tests/e2e is on sys.path: no package)
from e2e_helpers import free_port as _free_port  # noqa: E402
from e2e_helpers import run as _run  # noqa: E402

pytestmark = pytest.mark.e2e

DAG = "lrem_nightly"
CONF = {"config": "configs/smoke.yaml"}
HOLD_S = 300  # the longest run 1 may be held; the drill lets it go much sooner


def _airflow_env(home: Path, lrem_home: Path, port: int | None = None) -> dict:
    # nothing of the caller's Airflow/MLflow settings (`make test` exports a log folder and a
    # tracking URI under the repository's .lrem): this stack is wholly its own
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith("AIRFLOW__") and k not in ("AIRFLOW_HOME", "MLFLOW_TRACKING_URI")}
    env = {
        **inherited,
        "LREM_HOME": str(lrem_home),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "LREM_SCHEDULE": "none",  # triggered runs only: no scheduled run of its own joins the drill
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.pop("LREM_FAULT", None)
    if port is not None:
        env.update({
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "LREM_FAULT": f"pull_data:{HOLD_S}:fail",
        })
    return env


def _wait(what: str, check, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@pytest.fixture
def airflow_stack(tmp_path):
    """api-server + scheduler + dag-processor on a fresh SQLite DB; yields (env, REST base URL)."""
    import httpx

    port = _free_port()
    env = _airflow_env(tmp_path / "airflow", tmp_path / "lrem_home", port)
    mig = _run([str(BIN / "airflow"), "db", "migrate"], env)
    assert mig.returncode == 0, mig.stdout[-3000:] + mig.stderr[-3000:]
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name in ("api-server", "scheduler", "dag-processor"):
            with open(logs / f"{name}.log", "w") as out:
                procs[name] = subprocess.Popen([str(BIN / "airflow"), name], cwd=REPO, env=env, stdout=out,
                                               stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}/api/v2"

        def dag_ready():
            for name, proc in procs.items():
                assert proc.poll() is None, f"airflow {name} exited: " + (logs / f"{name}.log").read_text()[-3000:]
            try:
                return httpx.get(f"{base}/dags/{DAG}", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        _wait("the api-server and the parsed DAG", dag_ready, timeout=180)
        yield env, base, tmp_path
    finally:
        for proc in procs.values():  # the process groups this fixture started (workers included)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_a_second_run_waits_queued_and_starts_only_after_the_first_ended(airflow_stack):
    import httpx

    env, base, tmp_path = airflow_stack
    lrem_home = Path(env["LREM_HOME"])
    lock_file = lrem_home / "locks" / f"{DAG}.json"
    api = httpx.Client(base_url=base, timeout=30)

    def get(path: str) -> dict:
        resp = api.get(path)
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        return resp.json()

    def run(run_id: str) -> dict:
        return get(f"/dags/{DAG}/dagRuns/{run_id}")

    def task_instances(run_id: str) -> list[dict]:
        return get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]

    def pull_data(run_id: str) -> dict:
        return get(f"/dags/{DAG}/dagRuns/{run_id}/taskInstances/pull_data")

    resp = api.patch(f"/dags/{DAG}", json={"is_paused": False})
    assert resp.status_code == 200, resp.text
    for run_id in ("drill-1", "drill-2"):  # back to back
        resp = api.post(f"/dags/{DAG}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": CONF})
        assert resp.status_code == 200, resp.text

    # one run starts (the scheduler takes the earlier: drill-1), its first task takes the run lock and is held
    running = _wait("a run's pull_data to run",
                    lambda: [r for r in ("drill-1", "drill-2") if pull_data(r)["state"] == "running"], timeout=180)
    assert running == ["drill-1"], f"started: {running}"
    holder = _wait("run 1 holding the run lock", lambda: lock_file.exists() and json.loads(lock_file.read_text()),
                   timeout=60, every=0.5)
    assert holder["run_id"] == "drill-1" and holder["task"] == "pull_data" and holder["pid"]

    # while it runs, run 2 is queued with no task started (observed several times, a second apart)
    for _ in range(5):
        assert run("drill-1")["state"] == "running"
        second = run("drill-2")
        assert second["state"] == "queued" and second["start_date"] is None, second
        started = [ti for ti in task_instances("drill-2") if ti["start_date"] or ti["state"] not in (None, "scheduled")]
        assert started == [], f"run 2 has tasks going while run 1 runs: {started}"
        time.sleep(1)

    # `airflow dags test` (make demo) beside it, on the same state dir, with its own Airflow DB
    side_env = _airflow_env(tmp_path / "airflow-demo", lrem_home)
    mig = _run([str(BIN / "airflow"), "db", "migrate"], side_env)
    assert mig.returncode == 0, mig.stdout[-3000:] + mig.stderr[-3000:]
    started_at = time.monotonic()
    demo = _run([str(BIN / "airflow"), "dags", "test", DAG, "--conf", json.dumps(CONF)], side_env, timeout=300)
    demo_log = demo.stdout + demo.stderr
    assert demo.returncode != 0, demo_log[-3000:]
    assert "RunLockError" in demo_log and "run 'drill-1'" in demo_log, demo_log[-5000:]
    assert "lrem run-lock --clear" in demo_log, demo_log[-5000:]
    assert "[DAG TEST] starting task_id=validate_raw" not in demo_log  # failed in its first task, no retry
    assert time.monotonic() - started_at < 120
    assert json.loads(lock_file.read_text())["run_id"] == "drill-1"  # the holder keeps its lock
    assert pull_data("drill-1")["state"] == "running" and run("drill-2")["state"] == "queued"
    assert not (lrem_home / "runs").exists() or not any((lrem_home / "runs").iterdir()), "a step ran"

    # let run 1 go: its first task fails (no retry), the run ends, and only then does run 2 start
    (lrem_home / "faults").mkdir(parents=True, exist_ok=True)
    (lrem_home / "faults" / "pull_data.release").touch()
    _wait("run 1 to fail", lambda: run("drill-1")["state"] == "failed", timeout=120)
    _wait("run 2 to end", lambda: run("drill-2")["state"] in ("failed", "success"), timeout=180)

    first, second = run("drill-1"), run("drill-2")
    assert second["state"] == "failed", second
    first_end = _ts(first["end_date"])
    assert _ts(second["start_date"]) >= first_end, (first, second)
    run2_tis = task_instances("drill-2")
    for ti in run2_tis:  # every one with a start date: the one that ran and those marked upstream_failed
        assert ti["start_date"] is None or _ts(ti["start_date"]) >= first_end, \
            f"{ti['task_id']} of run 2 started before run 1 ended"
    ran = [ti for ti in run2_tis if ti["try_number"] >= 1]
    assert [(ti["task_id"], ti["state"]) for ti in ran] == [("pull_data", "failed")]
    assert {ti["state"] for ti in run2_tis if ti["try_number"] == 0} == {"upstream_failed"}
    run1_pull = pull_data("drill-1")
    assert run1_pull["state"] == "failed" and run1_pull["try_number"] == 1  # not retried
    assert _ts(run1_pull["end_date"]) <= _ts(ran[0]["start_date"])

    # run 2's first task held the lock itself (failed by the injected fault, not refused by the lock)
    log_files = list((tmp_path / "airflow" / "logs").glob(f"dag_id={DAG}/run_id=drill-2/task_id=pull_data/*"))
    assert log_files, "no task log of run 2's pull_data"
    run2_log = "\n".join(p.read_text() for p in log_files)
    assert "injected failure of task pull_data" in run2_log and "RunLockError" not in run2_log, run2_log[-3000:]
    assert not lock_file.exists(), "a run that failed for good kept the run lock"
