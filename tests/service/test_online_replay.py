"""Replay with simulated users against the service, the online analysis end to end, the detached service."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
import yaml

from components.paths import REPO_ROOT
from components.service.replay import check_loopback, eval_queries, replay


def test_replayer_only_drives_loopback():
    for ok in ("http://127.0.0.1:8765", "http://localhost:1", "http://[::1]:9"):
        check_loopback(ok)
    for bad in ("http://10.0.0.1:8765", "http://example.com", "https://8.8.8.8"):
        with pytest.raises(ValueError):
            check_loopback(bad)


def test_replay_is_bounded_and_online_eval_reports(stack, service, tmp_path):
    import mlflow

    from components.service.online import evaluate_online

    cfg, world, home = stack
    queries, relevant, categories = eval_queries(world)
    out = replay(service.url, queries, relevant, mode="split", n_users=20, max_requests=25, max_seconds=60,
                 concurrency=3, k=5)
    assert out["searches"] == 25 and out["errors"] == 0 and set(out["arms"]) <= {"champion", "challenger"}
    timed = replay(service.url, queries, relevant, max_requests=10_000, max_seconds=1.0, concurrency=2, k=5)
    assert timed["bounded_by_time"] and timed["seconds"] < 30

    cfg.online.max_requests = 60
    result = evaluate_online(cfg, str(home / "data"), tmp_path / "online", url=service.url)
    assert result["replay"]["split"]["searches"] == 30 and result["replay"]["interleave"]["searches"] == 30
    assert {"champion", "challenger"} >= set(result["table"]["overall"])
    assert result["interleaving"]["queries"] == 30
    assert "overall/hit_rate_judged" in result["tests"] and isinstance(result["regression"], bool)
    for name in ("online_report.html", "online_ctr.png", "online_hit_rate_judged.png", "online_result.json"):
        assert (tmp_path / "online" / name).exists()
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri)
    run = client.get_run(result["mlflow_run_id"])
    assert "online.regression" in run.data.tags
    assert any(k.startswith("online.overall.") for k in run.data.metrics)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "online")} >= {"online/online_report.html"}


def test_detached_service_start_status_stop(stack, tmp_path):
    cfg, world, home = stack
    config = tmp_path / "svc.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lrem = [sys.executable, "-m", "components.cli", "--config", str(config)]
    started = subprocess.run([*lrem, "serve", "--background", "--port", str(port)], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=240)
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        assert f"http://127.0.0.1:{port}" in started.stdout
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
        assert health["arms"]["champion"]["version"] == "1"
        status = subprocess.run([*lrem, "serve-status"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and json.loads(status.stdout)["url"].endswith(str(port))
    finally:
        stopped = subprocess.run([*lrem, "serve-stop"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert "stopped" in stopped.stdout
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
