"""The CoT/embedding cache: LRU bound, the nightly warm-up step, and the running service using it."""

from __future__ import annotations

import dataclasses
import time

import httpx
import numpy as np

from components.service.cache import CotCache, Entry, normalise_query, read_warm


def _entry(i: int) -> Entry:
    return Entry(np.full(3, i, np.float32), f"cot {i}", bool(i % 2))


def test_lru_is_bounded_keyed_by_version_and_normalised_query():
    cache = CotCache(capacity=3)
    assert normalise_query("  Oak\u00a0DESK \t chair ") == "oak desk chair"
    cache.put(cache.key("1", True, "oak desk"), _entry(1))
    assert cache.get(cache.key("1", True, "  OAK   desk")).cot == "cot 1"
    assert cache.get(cache.key("2", True, "oak desk")) is None  # another version
    assert cache.get(cache.key("1", False, "oak desk")) is None  # the direct embedding is another entry
    for i in range(2, 5):
        cache.put(cache.key("1", True, f"q{i}"), _entry(i))
    assert len(cache) == 3 and cache.evictions == 1
    assert cache.get(cache.key("1", True, "oak desk")) is None  # least recently used went first
    st = cache.stats()
    assert (st["hits"], st["misses"]) == (1, 3) and st["hit_rate"] == 0.25
    cache.put(cache.key("2", True, "x"), _entry(9))
    assert cache.retain(["2"]) == 2 and len(cache) == 1  # a moved alias drops the old version's entries


def _champion_user(cfg) -> str:
    from components.service.split import CHAMPION, assign_arm

    salt = cfg.online.salt or cfg.online.experiment
    return next(u for u in (f"user{i}" for i in range(1000))
                if assign_arm(u, salt, cfg.online.challenger_share) == CHAMPION)


def test_warm_cache_step_and_the_service_serving_from_it(stack, request):
    import mlflow

    from components.artifacts import DataSnapshot, ItemIndex, RegisteredModel
    from components.service.cache import WARM_TAG, run_warm_cache

    cfg, world, home = stack
    cfg = dataclasses.replace(cfg, serve=dataclasses.replace(cfg.serve, warm_top_n=12))
    name = cfg.tracking.model_name
    client = mlflow.MlflowClient()
    run_id = client.get_model_version(name, "1").tags["mlflow_run_id"]
    snap = DataSnapshot(run_key="warm-test", mlflow_run_id=run_id, data_uri=str(home / "data"),
                        full_data_uri=str(home / "data"), dvc_rev="test", data_md5="x", git_commit="y")
    warm = run_warm_cache(cfg, snap, RegisteredModel(name, "1", f"models:/{name}/1"),
                          ItemIndex("svc_items_v1", len(world.catalog), "1"))
    assert warm.entries == 12 and warm.source == "training_queries"  # the event store is empty
    assert client.get_model_version(name, "1").tags[WARM_TAG] == warm.cache_uri
    queries, embs, cots, reasoned = read_warm(mlflow.artifacts.download_artifacts(warm.cache_uri))
    assert len(queries) == 12 and embs.shape[0] == 12 and reasoned.all()  # no router: every query reasoned
    assert queries[0] == normalise_query(world.split("train")["text"].iloc[0])
    assert client.get_run(run_id).data.metrics["cache.warm_entries"] == 12
    service = request.getfixturevalue("service")  # started now: after the warm-up, as after build_index
    user = _champion_user(cfg)
    with httpx.Client(base_url=service.url, timeout=30) as http:
        health = http.get("/healthz").json()
        assert health["cache"]["warm"]["1"]["entries"] == 12  # loaded with the model
        assert health["cache"]["warm"]["2"]["entries"] == 0  # the challenger has no warm-up file
        # a head query is served from the warm-up: its CoT is the one computed in the nightly run
        out = http.post("/search", json={"query": queries[0].upper() + "  ", "k": 5, "user_id": user}).json()
        assert out["arm"] == "champion" and out["cot"] == cots[0]
        # a new query: computed once, then cached
        first = http.post("/search", json={"query": "waterproof oak chair", "k": 5, "user_id": user}).json()
        again = http.post("/search", json={"query": "Waterproof  oak chair", "k": 5, "user_id": user}).json()
        assert [i["item_id"] for i in again["items"]] == [i["item_id"] for i in first["items"]]
        assert again["cot"] == first["cot"]
        st = http.get("/healthz").json()["cache"]
        assert (st["hits"], st["misses"]) == (2, 1) and st["entries"] == 13
        assert http.get("/healthz").json()["routing"]["reason"] == 3
        metrics = http.get("/metrics").text
        assert 'lrem_cache_lookups{result="hit"} 2.0' in metrics and "lrem_cache_entries 13.0" in metrics
        assert 'lrem_cache_warm_entries{version="1"} 12.0' in metrics
        assert 'lrem_cache_warm_seconds{version="1"}' in metrics
        # the champion moves to v2: v1's entries are invalidated
        client.set_registered_model_alias(name, "champion", "2")
        try:
            deadline = time.monotonic() + 20
            while http.get("/healthz").json()["arms"]["champion"]["version"] != "2":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            moved = http.post("/search", json={"query": "waterproof oak chair", "k": 5, "user_id": user}).json()
            assert moved["model_version"] == "2"
            st = http.get("/healthz").json()["cache"]
            assert set(st["warm"]) == {"2"} and st["entries"] == 1
        finally:
            client.set_registered_model_alias(name, "champion", "1")
