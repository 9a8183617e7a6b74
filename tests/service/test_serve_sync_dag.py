"""`airflow dags test lrem_serve_sync`: a champion moved outside lrem is served within 60 seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.e2e


def test_serve_sync_dag_follows_a_champion_set_outside_lrem(stack, tmp_path):
    import mlflow

    from components.index.collections import alias_target
    from components.service import audit

    cfg, _, home = stack
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri, registry_uri=cfg.tracking.mlflow_uri)
    name, alias = cfg.tracking.model_name, cfg.index.serving_alias
    client.set_registered_model_alias(name, "champion", "1")
    audit.sync(cfg, actor="test setup")
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    env = {**os.environ, "LREM_HOME": str(home), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    mig = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert mig.returncode == 0, mig.stderr[-3000:]

    client.set_registered_model_alias(name, "champion", "2")  # as the MLflow UI does
    moved = time.monotonic()
    proc = subprocess.run([str(BIN / "airflow"), "dags", "test", "lrem_serve_sync", "--conf",
                           f'{{"config": "{config}"}}'], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    followed = time.monotonic() - moved
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert alias_target(cfg.index.milvus_uri, alias) == "svc_items_v2"
    assert followed < 60, f"serving followed after {followed:.0f}s"
    last = audit.history(cfg)[-1]
    assert last["kind"] == "serving_alias" and last["to_version"] == "2" and "lrem_serve_sync DAG" in last["actor"]
    client.set_registered_model_alias(name, "champion", "1")
    audit.sync(cfg, actor="test teardown")
