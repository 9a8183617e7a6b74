"""Fault drill: every task of the nightly run fails once after doing its work, and is retried.

Each step of the registry runs, "crashes" (its artefact is thrown away, as when a worker
dies after the step's side effects but before the XCom is written), and runs again, as an
Airflow retry does. The end state must be the one a clean run leaves on a fresh stack: one
registered version (champion and challenger), one collection holding the catalog, the
serving alias on it, one MLflow pipeline run for the run key, no orphan collection.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from e2e_helpers import BIN  # noqa: E402  (tests/e2e is on sys.path: no package)
from e2e_helpers import free_port as _free_port  # noqa: E402
from e2e_helpers import run as _run  # noqa: E402
pytestmark = pytest.mark.e2e






@pytest.fixture
def fresh_stack(tmp_path, monkeypatch):
    home = tmp_path / "lrem_home"
    env = {**os.environ, "LREM_HOME": str(home), "LREM_MILVUS_URI": f"http://127.0.0.1:{_free_port()}",
           "TOKENIZERS_PARALLELISM": "false"}
    try:
        boot = _run([str(BIN / "lrem"), "--config", "configs/smoke.yaml", "data", "bootstrap"], env)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        start = _run([str(BIN / "lrem"), "milvus", "start"], env)
        assert start.returncode == 0, start.stdout + start.stderr
        for key in ("LREM_HOME", "LREM_MILVUS_URI", "TOKENIZERS_PARALLELISM"):
            monkeypatch.setenv(key, env[key])
        yield env
    finally:
        _run([str(BIN / "lrem"), "milvus", "stop"], env)


def test_each_task_failing_once_and_retried_leaves_the_clean_run_state(fresh_stack):
    import mlflow

    from components.config import load_config
    from components.data.io import load_world
    from components.index.collections import alias_target, collection_row_count, milvus_client
    from components.pipeline import STEPS, run_shard, run_step

    cfg = load_config("configs/smoke.yaml")
    run_key = "retry-drill"
    ctx: dict[str, dict] = {}
    for name in STEPS:
        for shard in range(STEPS[name].num_shards(cfg)):  # a sharded step's shard tasks (build_index), retried too
            run_shard(name, cfg, shard, ctx)
            assert run_shard(name, cfg, shard, ctx)["reused"]  # the retry reuses the shard's complete files
        first = run_step(name, cfg, ctx, run_key=run_key)  # the task's work is done ...
        del first  # ... and then the worker dies before handing its artefact on
        ctx[name] = run_step(name, cfg, ctx, run_key=run_key).to_dict()  # the retry

    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri, registry_uri=cfg.tracking.mlflow_uri)
    versions = client.search_model_versions(f"name = '{cfg.tracking.model_name}'")
    assert [str(v.version) for v in versions] == ["1"], "a retried task registered a duplicate version"
    for alias in ("champion", "challenger"):
        assert str(client.get_model_version_by_alias(cfg.tracking.model_name, alias).version) == "1"
    with milvus_client(cfg.index.milvus_uri) as mc:
        ours = sorted(c for c in mc.list_collections() if c.startswith(cfg.index.collection_prefix))
    assert ours == [f"{cfg.index.collection_prefix}1"], f"orphan collections: {ours}"
    catalog = load_world(ctx["pull_data"]["data_uri"]).catalog
    assert collection_row_count(cfg.index.milvus_uri, ours[0]) == len(catalog) > 0
    assert alias_target(cfg.index.milvus_uri, cfg.index.serving_alias) == ours[0]
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.lrem_run_key = '{run_key}'")
    assert len(runs) == 1, "a retried pull_data started a second MLflow run for the same run key"
    assert ctx["promote"]["promoted"] is True and ctx["clean_up"]["dropped"] == []
