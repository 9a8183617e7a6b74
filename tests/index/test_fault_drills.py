"""Fault drill: the process building a new collection is killed half-way.

The champion's collection keeps answering through the serving alias, and the retried build
(same collection name, as an Airflow retry of `build_index` does) ends with a complete,
verified collection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from components.config import IndexConfig
from components.index.collections import (
    alias_target, build_item_index, collection_row_count, milvus_client, point_alias, search,
)

N_ITEMS = 1200
BATCH = 100

_BUILDER = textwrap.dedent("""
    import hashlib, sys, time
    from pathlib import Path
    import numpy as np
    from components.config import IndexConfig
    from components.index.collections import build_item_index

    uri, collection, marker = sys.argv[1], sys.argv[2], Path(sys.argv[3])

    def embed(titles):
        out = []
        for t in titles:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        with marker.open("a") as fh:
            fh.write("batch\\n")
        time.sleep(0.5)  # slow enough to be killed in the middle
        return np.stack(out)

    ids = [f"N{i}" for i in range(%d)]
    build_item_index(uri, collection, ids, [f"item {i}" for i in range(%d)], embed,
                     IndexConfig(milvus_uri=uri, index_type="FLAT", serving_alias="drill_serving", batch_size=%d))
    print("finished")
""" % (N_ITEMS, N_ITEMS, BATCH))


def test_killed_build_leaves_serving_untouched_and_the_retry_completes(milvus_uri, embed_titles, tmp_path):
    cfg = IndexConfig(milvus_uri=milvus_uri, index_type="FLAT", serving_alias="drill_serving", batch_size=BATCH)
    build_item_index(milvus_uri, "drill_items_v1", ["A", "B", "C"], ["oak desk", "steel mug", "wool socks"],
                     embed_titles, cfg)
    point_alias(milvus_uri, "drill_serving", "drill_items_v1")

    marker = tmp_path / "batches"
    proc = subprocess.Popen([sys.executable, "-c", _BUILDER, milvus_uri, "drill_items_v2", str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if marker.exists() and len(marker.read_text().splitlines()) >= 3:
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"the builder ended before it could be killed: {proc.stdout.read()!r}"
        os.killpg(proc.pid, signal.SIGKILL)  # the worker dies mid-build (OOM kill, node loss)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL

    # the champion keeps answering through the serving alias
    assert alias_target(milvus_uri, "drill_serving") == "drill_items_v1"
    hits = search(milvus_uri, "drill_serving", embed_titles(["steel mug"]), limit=1)
    assert hits == [["B"]]
    with milvus_client(milvus_uri) as client:
        partial = client.get_collection_stats("drill_items_v2")["row_count"] if "drill_items_v2" in \
            client.list_collections() else 0
    assert partial < N_ITEMS  # what the killed build left is incomplete

    # the retry (same name) drops the partial collection and builds a complete, verified one
    result = build_item_index(milvus_uri, "drill_items_v2", [f"N{i}" for i in range(N_ITEMS)],
                              [f"item {i}" for i in range(N_ITEMS)], embed_titles, cfg)
    assert result["rows"] == N_ITEMS == collection_row_count(milvus_uri, "drill_items_v2")
    assert alias_target(milvus_uri, "drill_serving") == "drill_items_v1"  # only promote moves it


def _drill_cfg(tmp_path, milvus_uri, tag):
    from components.config import PipelineConfig, TrackingConfig

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return PipelineConfig(tracking=TrackingConfig(mlflow_uri=db, experiment="drill", model_name=f"lrem-{tag}"),
                          index=IndexConfig(milvus_uri=milvus_uri, serving_alias=f"{tag}_serving", index_type="FLAT",
                                            collection_prefix=f"{tag}_items_v"))


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_missing_or_corrupt_model_fails_build_index_clearly_and_leaves_the_champion(
        milvus_uri, embed_titles, tmp_path, damage):
    import mlflow

    from components.artifacts import ArtifactError, DataSnapshot, RegisteredModel
    from components.index import step as build_index_step

    tag = f"drill_{damage}"
    cfg = _drill_cfg(tmp_path, milvus_uri, tag)
    name, serving, v1, v2 = cfg.tracking.model_name, cfg.index.serving_alias, f"{tag}_items_v1", f"{tag}_items_v2"
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri, registry_uri=cfg.tracking.mlflow_uri)
    client.create_registered_model(name)
    build_item_index(milvus_uri, v1, ["A"], ["oak desk"], embed_titles, cfg.index)
    point_alias(milvus_uri, serving, v1)
    client.create_model_version(name, source=str(tmp_path), tags={"milvus_collection": v1})
    client.set_registered_model_alias(name, "champion", "1")
    model_dir = tmp_path / "v2"
    (model_dir / "artifacts" / "lrem").mkdir(parents=True)
    if damage == "corrupt":
        (model_dir / "artifacts" / "lrem" / "lrem_config.json").write_text("{not json")
    client.create_model_version(name, source=str(model_dir))

    snapshot = DataSnapshot(run_key="drill", mlflow_run_id="none", data_uri=str(tmp_path), full_data_uri=str(tmp_path),
                            dvc_rev="workspace", data_md5="x", git_commit="x")
    model = RegisteredModel(model_name=name, model_version="2", model_uri=f"models:/{name}/2")
    with pytest.raises(ArtifactError, match=rf"model models:/{name}/2 " + ("cannot be fetched" if damage ==
                                                                              "missing" else "is corrupt")):
        build_index_step.run_encode_shard(cfg, snapshot, model, shard=0)  # the shard task loads the model
    with pytest.raises(build_index_step.MissingShardError, match="shard-00000-of-00001"):
        build_index_step.run(cfg, snapshot, model)  # the gathering task: no shard, no collection
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    assert alias_target(milvus_uri, serving) == v1
    with milvus_client(milvus_uri) as mc:
        assert v2 not in mc.list_collections()


@pytest.mark.parametrize("damage", ["no weights", "corrupt spec"])
def test_incomplete_model_is_not_registered_and_the_champion_stays(tmp_path, monkeypatch, damage):
    import mlflow

    from components import tracking
    from components.artifacts import ArtifactError, DataSnapshot, TrainedModel, TripletSet
    from components.config import PipelineConfig, TrackingConfig
    from components.registry.step import run_register

    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig(tracking=TrackingConfig(mlflow_uri=db, experiment="drill-reg", model_name="lrem-reg"))
    client = mlflow.MlflowClient(tracking_uri=db, registry_uri=db)
    client.create_registered_model("lrem-reg")
    client.create_model_version("lrem-reg", source=str(tmp_path))
    client.set_registered_model_alias("lrem-reg", "champion", "1")

    trained = tmp_path / "grpo_model"
    trained.mkdir()
    (trained / "config.json").write_text("{}")
    if damage == "no weights":
        (trained / "lrem_config.json").write_text("{}")
    else:
        (trained / "lrem_config.json").write_text("{broken")
        (trained / "model.safetensors").write_bytes(b"\0" * 16)
    run_id = tracking.start_pipeline_run(cfg, "drill-reg")
    snapshot = DataSnapshot(run_key="drill-reg", mlflow_run_id=run_id, data_uri=str(tmp_path),
                            full_data_uri=str(tmp_path), dvc_rev="workspace", data_md5="x", git_commit="x")
    expected = "no weights" if damage == "no weights" else "lrem_config.json is unreadable"
    with pytest.raises(ArtifactError, match=f"is not a complete LREM model: .*{expected}"):
        run_register(cfg, snapshot, TripletSet(triplets_uri="/t.jsonl", n_triplets=1),
                     TrainedModel(stage="grpo", model_uri=str(trained), steps=1))
    assert [str(v.version) for v in client.search_model_versions("name = 'lrem-reg'")] == ["1"]
    assert str(client.get_model_version_by_alias("lrem-reg", "champion").version) == "1"


def test_register_killed_before_tagging_is_not_registered_twice(tmp_path, monkeypatch):
    """The version carries the run key from its creation: a register_challenger task that dies
    right after registering (before its lineage tags and alias) is found again by the retry."""
    import mlflow

    from components import tracking
    from components.artifacts import DataSnapshot, TrainedModel, TripletSet
    from components.config import ModelConfig, PipelineConfig, TrackingConfig
    from components.model.lrem import LREMModel
    from components.registry.step import run_register

    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig(tracking=TrackingConfig(mlflow_uri=db, experiment="drill-reg2", model_name="lrem-reg2"))
    model = LREMModel.create(ModelConfig(vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1),
                             ["a small corpus of item titles", "and a few queries"] * 20)
    trained = model.save(tmp_path / "grpo_model")
    run_id = tracking.start_pipeline_run(cfg, "drill-reg2")
    snapshot = DataSnapshot(run_key="drill-reg2", mlflow_run_id=run_id, data_uri=str(tmp_path),
                            full_data_uri=str(tmp_path), dvc_rev="workspace", data_md5="x", git_commit="x")
    args = (cfg, snapshot, TripletSet(triplets_uri="/t.jsonl", n_triplets=1),
            TrainedModel(stage="grpo", model_uri=str(trained), steps=1))

    def die(*_a, **_k):
        raise SystemExit("killed after registering")

    with monkeypatch.context() as m:
        m.setattr(mlflow.MlflowClient, "set_model_version_tag", die)
        with pytest.raises(SystemExit):
            run_register(*args)
    client = mlflow.MlflowClient(tracking_uri=db, registry_uri=db)
    assert [v.tags.get("run_key") for v in client.search_model_versions("name = 'lrem-reg2'")] == ["drill-reg2"]
    registered = run_register(*args)  # the retry
    versions = client.search_model_versions("name = 'lrem-reg2'")
    assert [str(v.version) for v in versions] == [registered.model_version] == ["1"]
    assert str(client.get_model_version_by_alias("lrem-reg2", "challenger").version) == "1"
