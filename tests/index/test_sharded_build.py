"""The sharded index build: shard files, their reuse on a retry, a missing shard, the gathering build."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import IndexConfig, ModelConfig
from components.index.collections import collection_row_count, insert_item_vectors, search
from components.index.step import MissingShardError, encode_shard, gather_shards, shard_bounds, shard_name

MODEL_URI = "models:/lrem-retriever/7"
TITLES = [f"{c} {t} {n}" for c in ("red", "blue", "green", "black") for t in ("mug", "chair", "shoe", "lamp")
          for n in range(6)]  # 96 items
IDS = [f"item-{i:03d}" for i in range(len(TITLES))]


@pytest.fixture(scope="module")
def lrem():
    """A real (untrained) tiny LREM: what build_index encodes the catalog with."""
    from components.model.lrem import LREMModel

    cfg = ModelConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_cot_tokens=4)
    return LREMModel.create(cfg, TITLES * 3)


def test_shard_bounds_cover_the_catalog_in_whole_batches():
    assert shard_bounds(96, 1, 10) == [(0, 96)]
    bounds = shard_bounds(96, 3, 10)  # 10 batches over 3 shards: 4, 3, 3
    assert bounds == [(0, 40), (40, 70), (70, 96)]
    assert shard_bounds(5, 3, 10) == [(0, 5), (5, 5), (5, 5)]  # more shards than batches: empty ones
    with pytest.raises(ValueError):
        shard_bounds(5, 0, 10)


def test_shard_files_equal_the_unsharded_embeddings(lrem, tmp_path):
    batch = 16
    embed = lambda titles: lrem.embed_items(titles, batch_size=batch)  # noqa: E731
    whole = np.concatenate([embed(TITLES[at:at + batch]) for at in range(0, len(TITLES), batch)])
    for shard in range(3):
        encode_shard(tmp_path, shard, 3, IDS, TITLES, embed, MODEL_URI, batch)
    parts = list(gather_shards(tmp_path, 3, IDS, MODEL_URI))
    assert [start for start, _ in parts] == [0, 32, 64]
    np.testing.assert_array_equal(np.concatenate([v for _, v in parts]), whole)
    # and one shard is the whole catalog, as with index.shards 1
    one = tmp_path / "one"
    one.mkdir()
    encode_shard(one, 0, 1, IDS, TITLES, embed, MODEL_URI, batch)
    np.testing.assert_array_equal(next(gather_shards(one, 1, IDS, MODEL_URI))[1], whole)


def test_a_retried_shard_reuses_complete_files_and_redoes_bad_ones(tmp_path):
    calls = []

    def embed(titles):
        calls.append(len(titles))
        return np.ones((len(titles), 4), np.float32)

    first = encode_shard(tmp_path, 1, 2, IDS, TITLES, embed, MODEL_URI, 16)
    assert not first["reused"] and sum(calls) == first["rows"] == 48
    again = encode_shard(tmp_path, 1, 2, IDS, TITLES, embed, MODEL_URI, 16)
    assert again["reused"] and sum(calls) == 48  # nothing encoded again
    other_model = encode_shard(tmp_path, 1, 2, IDS, TITLES, embed, "models:/lrem-retriever/8", 16)
    assert not other_model["reused"] and sum(calls) == 96  # another model: a different fingerprint
    vectors = tmp_path / f"{shard_name(1, 2)}.npy"
    vectors.write_bytes(vectors.read_bytes()[:-8])  # a torn write: the checksum no longer matches
    redone = encode_shard(tmp_path, 1, 2, IDS, TITLES, embed, "models:/lrem-retriever/8", 16)
    assert not redone["reused"] and sum(calls) == 144
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left


def test_a_missing_shard_fails_the_gathering_naming_it(tmp_path):
    embed = lambda titles: np.ones((len(titles), 4), np.float32)  # noqa: E731
    for shard in (0, 2):
        encode_shard(tmp_path, shard, 3, IDS, TITLES, embed, MODEL_URI, 16)
    with pytest.raises(MissingShardError, match=r"shard-00001-of-00003 \(missing"):
        gather_shards(tmp_path, 3, IDS, MODEL_URI)  # raises before anything is read or inserted
    encode_shard(tmp_path, 1, 3, IDS, TITLES, embed, MODEL_URI, 16)
    with pytest.raises(MissingShardError, match="encoded by models:/lrem-retriever/7, not"):
        gather_shards(tmp_path, 3, IDS, "models:/lrem-retriever/9")
    with pytest.raises(MissingShardError, match="not catalog rows"):
        gather_shards(tmp_path, 3, list(reversed(IDS)), MODEL_URI)
    assert sum(len(v) for _, v in gather_shards(tmp_path, 3, IDS, MODEL_URI)) == len(IDS)


def test_gathered_shards_build_a_verified_collection(milvus_uri, embed_titles, tmp_path):
    for shard in range(3):
        encode_shard(tmp_path, shard, 3, IDS, TITLES, embed_titles, MODEL_URI, 16)
    cfg = IndexConfig(milvus_uri=milvus_uri, index_type="HNSW", shards=3)
    result = insert_item_vectors(milvus_uri, "sharded_v1", IDS, gather_shards(tmp_path, 3, IDS, MODEL_URI), cfg,
                                 probes=8)
    assert result["rows"] == len(IDS) and result["probes"] == 8
    assert collection_row_count(milvus_uri, "sharded_v1") == len(IDS)
    assert search(milvus_uri, "sharded_v1", embed_titles(TITLES[40:41]), limit=1) == [[IDS[40]]]


def test_the_build_step_deletes_the_shards_once_verified_keeps_them_when_it_fails_and_a_retry_after_success_redoes_nothing(
        milvus_uri, embed_titles, tmp_path, monkeypatch):
    """`build_index` (the gathering step) on 3 shard files in the run's scratch: a build that fails
    (here the collection's verification) leaves them for the retry, which builds from them without
    encoding anything and then deletes them, with the run's empty index_shards folder."""
    import types

    import mlflow
    import pandas as pd

    from components import tracking
    from components.artifacts import DataSnapshot, RegisteredModel
    from components.config import PipelineConfig, TrackingConfig
    from components.index import collections as index_collections
    from components.index import step as build_index_step
    from components.paths import run_dir

    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = PipelineConfig(tracking=TrackingConfig(mlflow_uri=db, experiment="shards", model_name="lrem-shards"),
                         index=IndexConfig(milvus_uri=milvus_uri, serving_alias="shards_serving", index_type="FLAT",
                                           collection_prefix="shards_items_v", batch_size=16, shards=3))
    client = mlflow.MlflowClient(tracking_uri=db, registry_uri=db)
    client.create_registered_model("lrem-shards")
    client.create_model_version("lrem-shards", source=str(tmp_path))
    run_id = tracking.start_pipeline_run(cfg, "shards-run")
    snapshot = DataSnapshot(run_key="shards-run", mlflow_run_id=run_id, data_uri=str(tmp_path),
                            full_data_uri=str(tmp_path), dvc_rev="workspace", data_md5="x", git_commit="x")
    model = RegisteredModel(model_name="lrem-shards", model_version="1", model_uri="models:/lrem-shards/1")
    world = types.SimpleNamespace(catalog=pd.DataFrame({"item_id": IDS, "title": TITLES}))
    monkeypatch.setattr(build_index_step, "load_world", lambda uri: world)

    root = build_index_step.shard_root("shards-run", "shards_items_v1")
    for shard in range(3):  # what the three shard tasks wrote
        build_index_step.encode_shard(root, shard, 3, IDS, TITLES, embed_titles, model.model_uri, 16)
    files = sorted(p.name for p in root.iterdir())
    assert len(files) == 9  # vectors, ids and manifest of each shard

    real_insert = index_collections.insert_item_vectors

    def failing_verification(*args, **kwargs):
        raise index_collections.IndexBuildError("probe search on 'shards_items_v1': 1 of 8 items are not in their top 10")

    monkeypatch.setattr(index_collections, "insert_item_vectors", failing_verification)
    with pytest.raises(index_collections.IndexBuildError, match="probe search"):
        build_index_step.run(cfg, snapshot, model)
    assert sorted(p.name for p in root.iterdir()) == files  # kept for the retry

    monkeypatch.setattr(index_collections, "insert_item_vectors", real_insert)
    monkeypatch.setattr(build_index_step, "encode_shard", None)  # the retry encodes nothing
    built = build_index_step.run(cfg, snapshot, model)
    assert built.rows == len(IDS) == collection_row_count(milvus_uri, "shards_items_v1")
    assert search(milvus_uri, "shards_items_v1", embed_titles(TITLES[70:71]), limit=1) == [[IDS[70]]]
    assert client.get_model_version("lrem-shards", "1").tags["milvus_collection"] == "shards_items_v1"
    assert not root.exists() and not (run_dir("shards-run") / "index_shards").exists()

    # the worker dies after the build finished (shard files deleted) and Airflow retries the task:
    # the retry finds the version tagged with its verified collection and redoes nothing
    again = build_index_step.run(cfg, snapshot, model)
    assert (again.collection, again.rows) == ("shards_items_v1", len(IDS))
    assert collection_row_count(milvus_uri, "shards_items_v1") == len(IDS)
    # shard files gone and the collection dropped since: that is a build that did not finish
    with index_collections.milvus_client(milvus_uri) as mc:
        mc.drop_collection("shards_items_v1")
    with pytest.raises(build_index_step.MissingShardError, match="3 of 3 index shards missing"):
        build_index_step.run(cfg, snapshot, model)
