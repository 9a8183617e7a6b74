"""The stack's pieces that need no Postgres: settings from the environment, process groups."""

from __future__ import annotations

import os
import time

import pytest

from components.stack import procs
from components.stack.settings import StackError, StackSettings


def test_settings_read_ports_and_refuse_bad_ones(monkeypatch, tmp_path):
    monkeypatch.setenv("LREM_HOME", str(tmp_path))
    monkeypatch.setenv("LREM_AIRFLOW_PORT", "58081")
    monkeypatch.delenv("LREM_PG_URL", raising=False)
    s = StackSettings.from_env()
    assert s.airflow_url.endswith(":58081") and s.pg_port == int(os.environ.get("LREM_PG_PORT", 5433))
    env = s.environment()
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{s.airflow_url}/execution/"
    assert env["LREM_MLFLOW_URI"] == env["MLFLOW_TRACKING_URI"] == s.mlflow_url
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg://lrem:")
    # secrets are generated once, private, and the same on the next read
    secrets_file = tmp_path / "stack" / "secrets.json"
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    assert StackSettings.from_env().secrets == s.secrets
    monkeypatch.setenv("LREM_AIRFLOW_PORT", "eighty")
    with pytest.raises(StackError, match="LREM_AIRFLOW_PORT='eighty' is not a port number"):
        StackSettings.from_env()
    monkeypatch.setenv("LREM_AIRFLOW_PORT", "58081")
    monkeypatch.setenv("LREM_PG_URL", "mysql://u@h/db")
    with pytest.raises(StackError, match="expected postgresql://"):
        StackSettings.from_env()
    monkeypatch.setenv("LREM_PG_URL", "postgresql://ops:s3cret@db.internal:5432/postgres")
    s = StackSettings.from_env()
    assert s.db_url("mlflow") == "postgresql+psycopg://ops:s3cret@db.internal:5432/mlflow"
    assert "s3cret" not in s.pg_display()
    monkeypatch.setenv("LREM_CONFIG", "configs/no-such.yaml")
    with pytest.raises(StackError, match="no such config file"):
        StackSettings.from_env()


def _pids_of_group(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry))
    return out


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to list a process group")
def test_a_service_is_its_own_group_and_stop_ends_all_of_it(monkeypatch, tmp_path):
    monkeypatch.setenv("LREM_HOME", str(tmp_path))
    # a leader with a forked worker (as uvicorn or the LocalExecutor have) and a grandchild in a
    # session of its own (as Airflow's task supervisor puts each task)
    rec = procs.start("probe", ["sh", "-c", "sleep 300 & setsid sleep 301 & echo worker started; wait"],
                      dict(os.environ))
    deadline = time.monotonic() + 10
    while len(procs.members(rec)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    tree = procs.members(rec)
    own_session = [pid for pid in tree if os.getsid(pid) != rec.pid]
    assert len(tree) == 3 and len(own_session) == 1, tree
    assert len(_pids_of_group(rec.pid)) == 2 and os.getpgid(rec.pid) == rec.pid != os.getpgid(0)
    assert procs.alive(procs.read("probe"))
    assert procs.stop("probe", timeout=5)
    assert _pids_of_group(rec.pid) == [] and procs.read("probe") is None
    assert not set(own_session) & set(procs._process_table()), "the own-session grandchild survived"  # zombies aside
    assert "worker started" in procs.tail(rec.log)
    assert procs.stop("probe") is False  # nothing recorded: nothing signalled
    # a record whose pid now belongs to another process (start time differs) is never signalled
    other = procs.start("other", ["sleep", "300"], dict(os.environ))
    try:
        forged = procs.Record(**{**procs.read("other").__dict__, "start_ticks": 1})
        assert not procs.alive(forged) and not procs.group_alive(forged)
    finally:
        procs.stop("other", timeout=5)
