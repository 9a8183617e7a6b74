"""End to end: `airflow dags test lrem_nightly` on the smallest config, on the real embedded stack.

State (Airflow home, MLflow store, Milvus Lite data, DVC cache and remote) lives in a
temporary LREM_HOME; the Milvus Lite server runs on a free loopback port.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from e2e_helpers import BIN, REPO  # noqa: E402  (tests/e2e is on sys.path: no package)
from e2e_helpers import free_port as _free_port  # noqa: E402
from e2e_helpers import run as _run  # noqa: E402
pytestmark = pytest.mark.e2e






@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("lrem_home")
    env = {
        **os.environ,
        "LREM_HOME": str(home),
        "LREM_MILVUS_URI": f"http://127.0.0.1:{_free_port()}",
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "TOKENIZERS_PARALLELISM": "false",
    }
    try:
        boot = _run([str(BIN / "lrem"), "--config", "configs/smoke.yaml", "data", "bootstrap"], env)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        mig = _run([str(BIN / "airflow"), "db", "migrate"], env)
        assert mig.returncode == 0, mig.stdout[-3000:] + mig.stderr[-3000:]
        start = _run([str(BIN / "lrem"), "milvus", "start"], env)
        assert start.returncode == 0, start.stdout + start.stderr
        yield env
    finally:
        _run([str(BIN / "lrem"), "milvus", "stop"], env)


def _dags_test(env: dict, config: Path | str) -> subprocess.CompletedProcess:
    return _run([str(BIN / "airflow"), "dags", "test", "lrem_nightly", "--conf", json.dumps({"config": str(config)})],
                env)


def _mlflow(env: dict):
    import mlflow

    uri = "sqlite:///" + str(Path(env["LREM_HOME"]) / "mlflow" / "mlflow.db")
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_nightly_dag_registers_indexes_evaluates_and_promotes(stack):
    from pymilvus import MilvusClient

    from components.data.io import load_world

    proc = _dags_test(stack, "configs/smoke.yaml")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert "successful" in log, log[-3000:]
    assert not (Path(stack["LREM_HOME"]) / "locks" / "lrem_nightly.json").exists(), "clean_up kept the run lock"

    client = _mlflow(stack)
    champion = client.get_model_version_by_alias("lrem-retriever", "champion")
    assert client.get_model_version_by_alias("lrem-retriever", "challenger").version == champion.version
    for tag in ("dvc_rev", "data_md5", "git_commit", "n_triplets", "milvus_collection"):
        assert champion.tags.get(tag), f"model version lacks lineage tag {tag}"

    run = client.get_run(champion.run_id)
    metrics = run.data.metrics
    for key in ("challenger.overall.hit_rate_at_10", "challenger.overall.hit_rate_at_100",
                "challenger.overall.precision_at_10", "challenger.qa.hit_rate_at_100",
                "cold_start/replay_lm"):  # smoke.yaml rehearses the backbone's text in the cold start
        assert key in metrics, f"{key} not logged; have {sorted(metrics)[:20]}"
    assert 0.0 <= metrics["challenger.overall.hit_rate_at_100"] <= 1.0
    artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
    assert {"evaluation", "data_docs", "cold_start_model", "grpo_model"} <= artifacts

    catalog = load_world(run.data.tags["data_uri"]).catalog
    milvus = MilvusClient(uri=stack["LREM_MILVUS_URI"])
    collection = champion.tags["milvus_collection"]
    rows = milvus.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"]
    assert rows == len(catalog) > 0
    assert milvus.describe_alias("lrem_serving")["collection_name"] == collection


def test_bad_data_stops_at_validate_raw_and_registers_nothing(stack, tmp_path):
    from components.data.io import read_jsonl, write_jsonl
    from components.data.versioning import dvc_env

    # A data repo of its own: the demo data with a missing column, a null id and a duplicate id.
    repo = tmp_path / "data-repo"
    repo.mkdir()
    env = stack
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        assert _run(cmd, env, cwd=repo).returncode == 0
    good = Path(env["LREM_HOME"]) / "snapshots"
    source = next(p for p in sorted(good.iterdir()) if (p / "catalog.jsonl").exists() and "-items" not in p.name)
    shutil.copytree(source, repo / "data", ignore=shutil.ignore_patterns(".complete"))
    catalog = read_jsonl(repo / "data" / "catalog.jsonl")[:300]
    for row in catalog:
        row.pop("brand")
    catalog[5]["item_id"] = None
    catalog[9]["item_id"] = catalog[8]["item_id"]
    write_jsonl(repo / "data" / "catalog.jsonl", catalog)
    os.environ["LREM_HOME"] = env["LREM_HOME"]
    try:
        dvc = {**env, **dvc_env(repo)}  # the data repo's DVC on the stack's state dir (cache and remote)
    finally:
        os.environ.pop("LREM_HOME")
    for cmd in ([str(BIN / "dvc"), "add", "-q", "data"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "bad data"]):
        res = _run(cmd, dvc, cwd=repo)
        assert res.returncode == 0, res.stdout + res.stderr

    config = tmp_path / "bad.yaml"
    smoke = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    smoke["data"] = {"repo": str(repo)}
    smoke["name"] = "bad-data"
    config.write_text(yaml.safe_dump(smoke))

    client = _mlflow(env)
    before = len(client.search_model_versions("name = 'lrem-retriever'"))
    proc = _dags_test(env, config)
    log = proc.stdout + proc.stderr
    assert "catalog.jsonl" in log
    assert "expect_column_to_exist(brand)" in log
    assert "expect_column_values_to_not_be_null(item_id)" in log
    assert "expect_column_values_to_be_unique(item_id)" in log
    assert "generate_triplets" not in [line.split("task_id=")[-1].split()[0] for line in log.splitlines()
                                       if "[DAG TEST] starting task_id=" in line]
    assert len(client.search_model_versions("name = 'lrem-retriever'")) == before  # nothing registered
