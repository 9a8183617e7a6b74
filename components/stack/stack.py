"""``lrem stack up|down|status``: start, stop and check the long-running stack (see the package docstring)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

from components.paths import REPO_ROOT
from components.stack import postgres, procs
from components.stack.settings import ADMIN_USER, StackError, StackSettings

log = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
DAGS = ("lrem_serve_sync", "lrem_nightly")
AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor")
START_TIMEOUT_S = 240.0


def _get(url: str, timeout: float = 3.0, **kwargs) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=timeout, **kwargs)
    except httpx.HTTPError:
        return None


# --- health checks: (healthy, detail)
def mlflow_health(s: StackSettings) -> tuple[bool, str]:
    resp = _get(f"{s.mlflow_url}/health")
    return (resp is not None and resp.status_code == 200), (resp.text.strip() if resp is not None else "no answer")


def airflow_monitor(s: StackSettings) -> dict | None:
    resp = _get(f"{s.airflow_url}/api/v2/monitor/health")
    if resp is None or resp.status_code != 200:
        return None
    return resp.json()


def _airflow_part(part: str) -> Callable[[StackSettings], tuple[bool, str]]:
    def check(s: StackSettings) -> tuple[bool, str]:
        health = airflow_monitor(s)
        if health is None:
            return False, "api-server does not answer"
        if part == "api":
            db = health.get("metadatabase", {}).get("status")
            return db == "healthy", f"metadatabase {db}"
        info = health.get(part) or {}
        beat = info.get(f"latest_{part}_heartbeat")
        return info.get("status") == "healthy", f"{info.get('status')} (last heartbeat {beat})"

    return check


def milvus_health(s: StackSettings) -> tuple[bool, str]:
    from components.index.server import server_status

    st = server_status(s.milvus_uri)
    if not st["reachable"]:
        return False, st.get("error", "unreachable")
    return True, f"{len(st['collections'])} collections, aliases {st['aliases']}"


def service_health(s: StackSettings) -> tuple[bool, str]:
    resp = _get(f"{s.service_url}/healthz")
    if resp is None:
        return False, "no answer"
    try:
        body = resp.json()
    except ValueError:
        return False, f"http {resp.status_code}"
    arms = ", ".join(f"{a} v{d.get('version')}" for a, d in (body.get("arms") or {}).items())
    # 503 "no champion loaded yet" is a healthy process waiting for the first promotion
    return resp.status_code in (200, 503), f"{body.get('status')}; arms: {arms or 'none'}"


@dataclass
class Service:
    name: str
    url: str | None
    health: Callable[[StackSettings], tuple[bool, str]]


def services(s: StackSettings) -> list[Service]:
    return [
        Service("postgres", None, postgres.healthy),
        Service("milvus", s.milvus_uri, milvus_health),
        Service("mlflow", s.mlflow_url, mlflow_health),
        Service("airflow-api-server", s.airflow_url, _airflow_part("api")),
        Service("airflow-scheduler", None, _airflow_part("scheduler")),
        Service("airflow-dag-processor", None, _airflow_part("dag_processor")),
        Service("service", s.service_url, service_health),
    ]


def _wait(name: str, check: Callable[[], tuple[bool, str]], rec: procs.Record | None,
          timeout: float = START_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = check()
        if ok:
            return detail
        if rec is not None and not procs.alive(rec):
            raise StackError(f"{name} exited while starting; {rec.log}:\n{procs.tail(rec.log)}")
        if time.monotonic() > deadline:
            where = f"; {rec.log}:\n{procs.tail(rec.log)}" if rec else ""
            raise StackError(f"{name} not healthy within {timeout:.0f}s ({detail}){where}")
        time.sleep(1.0)


def _ensure_process(name: str, cmd: list[str], env: dict[str, str], check: Callable[[], tuple[bool, str]],
                    say: Callable[[str], None]) -> bool:
    """Start ``name`` unless its recorded group runs; wait until healthy. True when started now."""
    rec = procs.read(name)
    if rec is not None and procs.alive(rec):
        _wait(name, check, rec)
        return False
    if rec is not None:  # the leader died: stop what is left of its group before starting anew
        procs.stop(name, timeout=10)
    rec = procs.start(name, cmd, env)
    say(f"  started {name} (pid {rec.pid}, log {rec.log})")
    _wait(name, check, rec)
    return True


def write_env_file(s: StackSettings, env: dict[str, str]) -> Path:
    """``$LREM_HOME/stack/env``: ``set -a; . $LREM_HOME/stack/env`` points a shell's CLIs at the stack."""
    path = s.stack_dir / "env"
    lines = [f"{k}='{v}'" for k, v in sorted(env.items()) if k.startswith(("LREM_", "AIRFLOW", "MLFLOW_"))]
    path.write_text("# written by lrem stack up; holds the database password: keep it private\n" + "\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def airflow_token(s: StackSettings) -> str:
    password = s.secrets["airflow_admin_password"]
    resp = httpx.post(f"{s.airflow_url}/auth/token", json={"username": ADMIN_USER, "password": password}, timeout=10)
    if resp.status_code not in (200, 201):
        raise StackError(f"Airflow login as {ADMIN_USER} failed: http {resp.status_code} {resp.text[:200]}")
    return resp.json()["access_token"]


def airflow_api(s: StackSettings, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
    token = token or airflow_token(s)
    return httpx.request(method, f"{s.airflow_url}/api/v2{path}", headers={"Authorization": f"Bearer {token}"},
                         timeout=30, **kwargs)


def unpause_dags(s: StackSettings, timeout: float = START_TIMEOUT_S) -> dict[str, str]:
    """Wait until the dag-processor has parsed both DAGs, then unpause them; dag id -> its schedule."""
    token = airflow_token(s)
    out = {}
    deadline = time.monotonic() + timeout
    for dag_id in DAGS:
        while True:
            resp = airflow_api(s, "GET", f"/dags/{dag_id}", token)
            if resp.status_code == 200:
                break
            if time.monotonic() > deadline:
                raise StackError(f"DAG {dag_id} not parsed within {timeout:.0f}s (http {resp.status_code}); see "
                                 f"{procs.log_path('airflow-dag-processor')} and {s.logs / 'airflow'}")
            time.sleep(2)
        if resp.json().get("is_paused"):
            resp = airflow_api(s, "PATCH", f"/dags/{dag_id}", token, json={"is_paused": False})
            if resp.status_code != 200:
                raise StackError(f"unpausing {dag_id} failed: http {resp.status_code} {resp.text[:200]}")
        body = resp.json()
        out[dag_id] = str(body.get("timetable_summary") or body.get("timetable_description") or "")
    return out


def _airflow_migrate(env: dict[str, str], s: StackSettings) -> None:
    log_file = s.logs / "airflow-db-migrate.log"
    with open(log_file, "ab") as fh:
        done = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, stdout=fh, stderr=subprocess.STDOUT,
                              cwd=REPO_ROOT)
    if done.returncode != 0:
        raise StackError(f"airflow db migrate failed; {log_file}:\n{procs.tail(log_file)}")


def _bootstrap_data(env: dict[str, str], s: StackSettings) -> str:
    log_file = s.logs / "data-bootstrap.log"
    with open(log_file, "ab") as fh:
        done = subprocess.run([str(BIN / "lrem"), "--config", s.config, "data", "bootstrap"], env=env, stdout=fh,
                              stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise StackError(f"lrem data bootstrap failed; {log_file}:\n{procs.tail(log_file)}")
    return procs.tail(log_file, 1)


def up(s: StackSettings | None = None, say: Callable[[str], None] = print) -> dict:
    """Start what is not running, wait until every service is healthy; returns the URLs and what started."""
    import os

    s = s or StackSettings.from_env()
    t0 = time.monotonic()
    env = {**os.environ, **s.environment()}
    started: list[str] = []
    s.logs.mkdir(parents=True, exist_ok=True)
    secrets = s.secrets
    s.airflow_passwords_file.write_text(json.dumps({ADMIN_USER: secrets["airflow_admin_password"]}) + "\n")
    s.airflow_passwords_file.chmod(0o600)
    write_env_file(s, env)

    # Postgres: the local cluster (or LREM_PG_URL's server) and the stack's databases
    if not s.pg_url:
        if postgres.init_cluster(s):
            say(f"  created the Postgres cluster {postgres.data_dir(s)}")
        if postgres.start(s):
            started.append("postgres")
            say(f"  started postgres ({s.pg_display()}, log {s.logs / 'postgres.log'})")
    postgres.wait_healthy(s)
    created = postgres.ensure_databases(s)
    if created:
        say(f"  created databases {', '.join(created)}")

    # Milvus Lite server (its own pid file: `lrem milvus status` sees it too)
    from components.index import server as milvus

    if not milvus.can_connect(s.milvus_uri):
        recorded = milvus._recorded_server()
        pid = milvus.start_server(s.milvus_uri)
        if pid != recorded:  # start_server returns a recorded server that answers again as is
            (s.stack_dir / "milvus.started").write_text(f"{pid}\n")
            started.append("milvus")
            say(f"  started milvus (pid {pid}, log {milvus.log_file()})")

    # MLflow tracking server: Postgres backend store, artifacts served by the server
    artifacts = s.home / "mlflow-server" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    if _ensure_process("mlflow", [str(BIN / "mlflow"), "server", "--backend-store-uri", s.db_url("mlflow"),
                                  "--artifacts-destination", str(artifacts), "--serve-artifacts",
                                  "--host", s.host, "--port", str(s.mlflow_port), "--workers", "1"],
                       env, lambda: mlflow_health(s), say):
        started.append("mlflow")

    # Airflow: metadata DB on Postgres, then api-server, scheduler, dag-processor
    need_airflow = [n for n in AIRFLOW_SERVICES if (r := procs.read(n)) is None or not procs.alive(r)]
    if need_airflow:
        _airflow_migrate(env, s)
    airflow = str(BIN / "airflow")
    cmds = {
        "airflow-api-server": [airflow, "api-server", "--host", s.host, "--port", str(s.airflow_port), "--workers", "1"],
        "airflow-scheduler": [airflow, "scheduler"],
        "airflow-dag-processor": [airflow, "dag-processor"],
    }
    checks = {"airflow-api-server": _airflow_part("api"), "airflow-scheduler": _airflow_part("scheduler"),
              "airflow-dag-processor": _airflow_part("dag_processor")}
    for name in AIRFLOW_SERVICES:
        if _ensure_process(name, cmds[name], env, lambda c=checks[name]: c(s), say):
            started.append(name)

    # the data the nightly run pulls (the DVC remote under the state dir), then the DAGs
    _bootstrap_data(env, s)
    schedules = unpause_dags(s)

    # the search service: models from the registry by alias, events in Postgres
    if _ensure_process("service", [str(BIN / "python"), "-m", "components.cli", "--config", s.config, "serve",
                                   "--host", s.host, "--port", str(s.serve_port)],
                       env, lambda: service_health(s), say):
        started.append("service")
    seconds = time.monotonic() - t0
    (s.stack_dir / "last-up.json").write_text(json.dumps({"started": started, "seconds": round(seconds, 1),
                                                         "at": time.time()}, indent=2))
    return {"started": started, "seconds": seconds, "schedules": schedules}


def down(s: StackSettings | None = None, say: Callable[[str], None] = print) -> list[str]:
    """Stop what ``up`` started (recorded process groups, the local cluster); returns what was stopped."""
    s = s or StackSettings.from_env()
    stopped = []
    for name in ("service", *reversed(AIRFLOW_SERVICES), "mlflow"):
        if procs.stop(name):
            stopped.append(name)
            say(f"  stopped {name}")
    marker = s.stack_dir / "milvus.started"
    if marker.exists():
        from components.index import server as milvus

        recorded = milvus._read_pid()
        if recorded is not None and str(recorded) == marker.read_text().strip() and milvus.stop_server():
            stopped.append("milvus")
            say("  stopped milvus")
        marker.unlink(missing_ok=True)
    if not s.pg_url and postgres.is_running(s):
        postgres.stop(s)
        stopped.append("postgres")
        say("  stopped postgres")
    return stopped


def status(s: StackSettings | None = None) -> list[dict]:
    s = s or StackSettings.from_env()
    rows = []
    for svc in services(s):
        rec = procs.read(svc.name)
        if svc.name == "postgres":
            pid = "external" if s.pg_url else ("running" if postgres.is_running(s) else "-")
        elif svc.name == "milvus":
            from components.index import server as milvus

            pid = milvus._read_pid() or "-"
        else:
            pid = rec.pid if rec is not None and procs.alive(rec) else "-"
        ok, detail = svc.health(s)
        rows.append({"service": svc.name, "healthy": ok, "pid": pid, "url": svc.url or "", "detail": detail})
    return rows


def print_urls(s: StackSettings, say: Callable[[str], None] = print) -> None:
    say(f"  Airflow UI      {s.airflow_url}   login {ADMIN_USER} / {s.secrets['airflow_admin_password']} "
        f"(stored in {s.airflow_passwords_file})")
    say(f"  MLflow UI       {s.mlflow_url}")
    say(f"  search service  {s.service_url}   ({s.service_url}/healthz, /metrics)")
    say(f"  Milvus          {s.milvus_uri}")
    say(f"  Postgres        {s.pg_display()}")
    say(f"  logs            {s.logs}/   CLI env: set -a; . {s.stack_dir / 'env'}; set +a")
