"""The long-running stack, as `make up` runs it: scheduled nightly runs, restarts, a scheduler crash.

One stack for the module (conftest.py: ``lrem stack up`` in a fresh state dir, free ports, the
smoke config). In order:

1. a second ``up`` changes nothing and every service is healthy;
2. the browser test (Playwright + the system's Chromium; skips, saying why, without them): log
   into the Airflow UI, trigger ``lrem_nightly`` on the smoke config from its trigger form, wait
   until every task is green, find the new version with its aliases in the MLflow UI, and check
   that the running service's ``/healthz`` serves it;
3. ``down`` then ``up`` keeps the registry, the aliases, the Airflow run history, the Milvus
   collections and the service's event rows (counted before and after);
4. three nightly runs triggered back to back through the REST API; while the second one runs,
   the scheduler is killed (SIGKILL, with its executor workers and task processes, as a crashed
   pod) and ``up`` starts a new one. Never two runs at once; every run ends (the killed one
   finishes or fails cleanly); each run that passed ``register_challenger`` registered exactly
   one version; retention (``index.keep_last_champions: 1``) applied; no orphan collection; the
   run lock released.
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

pytestmark = pytest.mark.stack

NIGHTLY = "lrem_nightly"
RUN_CONFIG = "tests/stack/nightly-smoke.yaml"
RUN_TIMEOUT_S = float(os.environ.get("LREM_STACK_RUN_TIMEOUT_S", 3600))


def api(st, method: str, path: str, **kwargs) -> httpx.Response:
    from components.stack.stack import airflow_api

    return airflow_api(st.settings, method, path, **kwargs)


def trigger(st, config: str) -> str:
    resp = api(st, "POST", f"/dags/{NIGHTLY}/dagRuns", json={"logical_date": None, "conf": {"config": config}})
    assert resp.status_code == 200, resp.text
    return resp.json()["dag_run_id"]


def dag_runs(st) -> list[dict]:
    resp = api(st, "GET", f"/dags/{NIGHTLY}/dagRuns", params={"limit": 100})
    assert resp.status_code == 200, resp.text
    return resp.json()["dag_runs"]


def task_states(st, run_id: str) -> dict[str, str | None]:
    resp = api(st, "GET", f"/dags/{NIGHTLY}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    assert resp.status_code == 200, resp.text
    return {t["task_id"] + (f"[{t['map_index']}]" if t.get("map_index", -1) >= 0 else ""): t["state"]
            for t in resp.json()["task_instances"]}


def xcom(st, run_id: str, task_id: str):
    resp = api(st, "GET", f"/dags/{NIGHTLY}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    assert resp.status_code == 200, resp.text
    value = resp.json()["value"]
    return json.loads(value) if isinstance(value, str) else value


def model_name() -> str:
    from components.config import load_config

    return load_config(RUN_CONFIG).tracking.model_name


def counts(st) -> dict:
    """What a restart must keep: registry versions and aliases, Airflow runs, Milvus, event rows."""
    import mlflow
    import sqlalchemy as sa
    from pymilvus import MilvusClient

    s = st.settings
    client = mlflow.MlflowClient(tracking_uri=s.mlflow_url, registry_uri=s.mlflow_url)
    name = model_name()
    versions = sorted(int(mv.version) for mv in client.search_model_versions(f"name = '{name}'"))
    aliases = dict(client.get_registered_model(name).aliases) if versions else {}
    milvus = MilvusClient(uri=s.milvus_uri, dedicated=True)
    try:
        collections = sorted(milvus.list_collections())
        milvus_aliases = {a: milvus.describe_alias(a)["collection_name"]
                          for a in milvus.list_aliases().get("aliases", [])}
    finally:
        milvus.close()
    engine = sa.create_engine(s.db_url("events"))
    try:
        with engine.connect() as con:
            tables = set(sa.inspect(con).get_table_names())
            events = {t: con.execute(sa.text(f"select count(*) from {t}")).scalar()
                      for t in ("search_events", "feedback_events") if t in tables}
    finally:
        engine.dispose()
    runs = sorted((r["dag_run_id"], r["state"]) for r in dag_runs(st))
    return {"versions": versions, "aliases": aliases, "dag_runs": runs, "collections": collections,
            "milvus_aliases": milvus_aliases, "events": events}


def test_up_again_changes_nothing_and_everything_is_healthy(stack, capsys):
    from components.stack import stack as stack_mod

    out = stack_mod.up(stack.settings, say=stack.say)
    assert out["started"] == [], f"a second up started {out['started']}"
    rows = stack_mod.status(stack.settings)
    assert [r["service"] for r in rows if not r["healthy"]] == [], rows
    assert out["schedules"][NIGHTLY].lower().startswith(("never", "none")), out["schedules"]  # LREM_SCHEDULE=none
    stack_mod.print_urls(stack.settings, say=stack.say)
    printed = "\n".join(stack.log)
    for url in (stack.settings.airflow_url, stack.settings.mlflow_url, stack.settings.service_url):
        assert url in printed
    secrets = stack.settings.home / "stack" / "secrets.json"
    assert oct(secrets.stat().st_mode & 0o777) == "0o600"
    # the admin login works, a wrong one does not
    assert api(stack, "GET", f"/dags/{NIGHTLY}").json()["is_paused"] is False
    bad = httpx.post(f"{stack.settings.airflow_url}/auth/token", json={"username": "admin", "password": "wrong"})
    assert bad.status_code in (401, 403)


def _chromium() -> str | None:
    import shutil

    for name in (os.environ.get("LREM_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def test_browser_trigger_in_airflow_ui_then_version_in_mlflow_ui_and_service(stack):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium on PATH (make browser-deps installs it with apt; or set LREM_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (requirements.lock has it)")
    import mlflow

    s = stack.settings
    name = model_name()
    client = mlflow.MlflowClient(tracking_uri=s.mlflow_url, registry_uri=s.mlflow_url)
    runs_before = {r["dag_run_id"] for r in dag_runs(stack)}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{s.airflow_url}/auth/login", wait_until="domcontentloaded", timeout=120_000)
            page.fill("input[name=username]", "admin")
            page.fill("input[name=password]", s.secrets["airflow_admin_password"])
            page.locator("button[type=submit]").click()
            page.wait_for_url(lambda url: "/auth/login" not in url, timeout=120_000)
            page.goto(f"{s.airflow_url}/dags/{NIGHTLY}", wait_until="domcontentloaded", timeout=120_000)
            page.get_by_role("button", name="Trigger").first.click(timeout=120_000)
            dialog = page.locator("[role=dialog][aria-modal=true]")
            dialog.wait_for(timeout=60_000)
            config = dialog.locator("#element_config")
            config.fill("configs/smoke.yaml")
            dialog.get_by_role("button", name="Trigger").click()
            dialog.wait_for(state="hidden", timeout=60_000)

            new = []
            deadline = time.monotonic() + 120
            while not new and time.monotonic() < deadline:
                new = [r for r in dag_runs(stack) if r["dag_run_id"] not in runs_before]
                time.sleep(1)
            assert len(new) == 1, f"the UI trigger made {len(new)} runs"
            run = new[0]
            assert run["conf"]["config"] == "configs/smoke.yaml" and run["triggered_by"] == "ui", run
            run_id = run["dag_run_id"]
            t0 = time.monotonic()
            while time.monotonic() - t0 < RUN_TIMEOUT_S:
                state = next(r["state"] for r in dag_runs(stack) if r["dag_run_id"] == run_id)
                if state in ("success", "failed"):
                    break
                time.sleep(5)
            print(f"UI-triggered run: {state} in {time.monotonic() - t0:.0f}s")
            tasks = task_states(stack, run_id)
            assert state == "success" and set(tasks.values()) == {"success"}, tasks
            # every task green in the UI too: the run's page lists them, none in another state
            page.goto(f"{s.airflow_url}/dags/{NIGHTLY}/runs/{run_id}", wait_until="domcontentloaded")
            page.get_by_text("clean_up").first.wait_for(timeout=120_000)
            page.get_by_text("success", exact=False).first.wait_for(timeout=60_000)

            version = str(client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"],
                                                       max_results=1)[0].version)
            aliases = sorted(a for a, v in client.get_registered_model(name).aliases.items() if str(v) == version)
            assert "challenger" in aliases, aliases
            page.goto(f"{s.mlflow_url}/#/models/{name}/versions/{version}", wait_until="domcontentloaded",
                      timeout=120_000)
            page.get_by_text(f"Version {version}").first.wait_for(timeout=120_000)
            for alias in aliases:
                page.get_by_text(alias).first.wait_for(timeout=60_000)  # shown as a tag, "@ alias"
        finally:
            browser.close()

    # the running service serves it (a first run is promoted; serving follows within its poll interval)
    assert client.get_model_version_by_alias(name, "champion").version == version
    deadline = time.monotonic() + 180
    health = {}
    while time.monotonic() < deadline:
        health = httpx.get(f"{s.service_url}/healthz", timeout=30).json()
        if str(((health.get("arms") or {}).get("champion") or {}).get("version")) == version:
            break
        time.sleep(2)
    assert str(health["arms"]["champion"]["version"]) == version, health
    assert health["serving_alias"]["collection"] == f"lrem_items_v{version}", health


def test_down_and_up_keep_everything(stack):
    from components.stack import procs
    from components.stack import stack as stack_mod

    s = stack.settings
    if not counts(stack)["versions"]:  # the browser test skipped: a finished run first
        run_id = trigger(stack, "configs/smoke.yaml")
        t0 = time.monotonic()
        while time.monotonic() - t0 < RUN_TIMEOUT_S:
            state = next(r["state"] for r in dag_runs(stack) if r["dag_run_id"] == run_id)
            if state in ("success", "failed"):
                break
            time.sleep(5)
        assert state == "success", task_states(stack, run_id)
    # the service serves the champion: some traffic, so that its event store has rows to keep
    deadline = time.monotonic() + 180
    while httpx.get(f"{s.service_url}/healthz", timeout=30).status_code != 200 and time.monotonic() < deadline:
        time.sleep(2)
    for i, query in enumerate(("waterproof hiking backpack", "black leather office chair", "steel travel mug")):
        resp = httpx.post(f"{s.service_url}/search", json={"query": query, "k": 5, "user_id": f"u{i}"}, timeout=120)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        item = body["items"][0]["item_id"]
        fb = httpx.post(f"{s.service_url}/feedback", json={"request_id": body["request_id"], "item_id": item,
                                                           "event": "click"}, timeout=30)
        assert fb.status_code == 200, fb.text
    before = counts(stack)
    assert before["versions"] and before["events"].get("search_events", 0) >= 3, before
    records = {name: procs.read(name) for name in ("service", "mlflow", *stack_mod.AIRFLOW_SERVICES)}
    t0 = time.monotonic()
    stopped = stack_mod.down(s, say=stack.say)
    down_s = time.monotonic() - t0
    assert set(stopped) == {"service", "mlflow", "milvus", "postgres", *stack_mod.AIRFLOW_SERVICES}, stopped
    assert [n for n, r in records.items() if r is not None and procs.group_alive(r)] == []
    assert [r["service"] for r in stack_mod.status(s) if r["healthy"]] == []
    t0 = time.monotonic()
    out = stack_mod.up(s, say=stack.say)
    up_s = time.monotonic() - t0
    print(f"down {down_s:.0f}s, up {up_s:.0f}s")
    assert sorted(out["started"]) == sorted(stopped)
    after = counts(stack)
    assert after == before
    # the service came back on the same champion
    health = httpx.get(f"{s.service_url}/healthz", timeout=30).json()
    deadline = time.monotonic() + 120
    while (health.get("arms") or {}).get("champion") is None and time.monotonic() < deadline:
        time.sleep(2)
        health = httpx.get(f"{s.service_url}/healthz", timeout=30).json()
    assert str(health["arms"]["champion"]["version"]) == str(after["aliases"]["champion"])


def _kill_group(name: str) -> int:
    from components.stack import procs

    rec = procs.read(name)
    assert rec is not None and procs.alive(rec), f"{name} is not running"
    # as a crashed scheduler pod: the scheduler, its executor workers and the task processes they run
    assert procs.kill_tree(rec, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while procs.group_alive(rec) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not procs.group_alive(rec), f"{name}'s group survived SIGKILL"
    return rec.pid


def test_three_runs_back_to_back_survive_a_scheduler_crash(stack):
    from pymilvus import MilvusClient

    from components.pipeline import run_key_from
    from components.runlock import RunLock
    from components.stack import stack as stack_mod

    t0 = time.monotonic()
    before = counts(stack)
    run_ids = [trigger(stack, RUN_CONFIG) for _ in range(3)]
    most_running, killed_during, restarted = 0, None, None
    states: dict[str, str] = {}
    while time.monotonic() - t0 < RUN_TIMEOUT_S:
        runs = {r["dag_run_id"]: r["state"] for r in dag_runs(stack)}
        states = {rid: runs.get(rid) for rid in run_ids}
        most_running = max(most_running, sum(1 for st in runs.values() if st == "running"))
        if killed_during is None and states[run_ids[1]] == "running":
            tasks = task_states(stack, run_ids[1])
            busy = [t for t, st in tasks.items() if st == "running" and t != "pull_data"]
            if busy:  # mid-run: a training or later task is running in the scheduler's group
                _kill_group("airflow-scheduler")
                killed_during = busy
                out = stack_mod.up(stack.settings, say=stack.say)
                restarted = out["started"]
        if all(st in ("success", "failed") for st in states.values()):
            break
        time.sleep(5)
    elapsed = time.monotonic() - t0
    print(f"three runs: {elapsed:.0f}s; states {states}; scheduler killed during {killed_during}")
    assert all(st in ("success", "failed") for st in states.values()), f"runs not finished: {states}"
    assert killed_during is not None, "the drill never found the second run mid-way"
    assert restarted == ["airflow-scheduler"], restarted
    assert most_running <= 1, "two runs were running at once"
    # the runs around the drill succeed; the killed one finishes or fails cleanly (nothing left running)
    assert states[run_ids[0]] == "success" and states[run_ids[2]] == "success", states
    for rid in run_ids:
        left = {t: st for t, st in task_states(stack, rid).items() if st in ("running", "queued", "scheduled")}
        assert left == {}, f"{rid} ended with tasks still {left}"

    after = counts(stack)
    new_versions = [v for v in after["versions"] if v not in before["versions"]]
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=stack.settings.mlflow_url, registry_uri=stack.settings.mlflow_url)
    run_keys = [client.get_model_version(model_name(), str(v)).tags.get("run_key") for v in new_versions]
    registered = [rid for rid in run_ids if task_states(stack, rid).get("register_challenger") == "success"]
    assert sorted(run_keys) == sorted(run_key_from(rid) for rid in registered), (run_keys, registered)
    assert len(new_versions) == len(registered) >= 2
    assert new_versions == list(range(new_versions[0], new_versions[0] + len(new_versions)))
    # retention: the last run's clean-up kept what its report says and dropped the rest; no orphan
    report = xcom(stack, run_ids[2], "clean_up")
    assert report["keep_last_champions"] == 1
    prefix = "lrem_items_v"
    ours = {c for c in after["collections"] if c.startswith(prefix)}
    assert ours == set(report["kept"]), (ours, report)
    assert not ours & set(report["dropped"])
    assert {int(c[len(prefix):]) for c in ours} <= set(after["versions"]), "a collection of no registered version"
    champion = after["aliases"].get("champion")
    assert champion is not None and f"{prefix}{champion}" in ours
    milvus = MilvusClient(uri=stack.settings.milvus_uri, dedicated=True)
    try:
        assert milvus.describe_alias("lrem_serving")["collection_name"] == f"{prefix}{champion}"
    finally:
        milvus.close()
    holder = RunLock().holder()
    assert holder is None, f"the run lock was left behind: {holder.describe()}"
