"""The search service on loopback against the real registry, Milvus Lite and event store."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from components.service.events import EventStore


def test_search_feedback_health_metrics(stack, service):
    cfg, world, _ = stack
    with httpx.Client(base_url=service.url, timeout=30) as http:
        health = http.get("/healthz").json()
        assert health["status"] == "ok"
        assert health["arms"]["champion"]["version"] == "1" and health["arms"]["challenger"]["version"] == "2"
        assert health["arms"]["champion"]["collection"] == "svc_items_v1"
        r = http.post("/search", json={"query": "waterproof hiking backpack", "k": 5, "user_id": "alice"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["arm"] in ("champion", "challenger") and len(out["items"]) == 5
        assert out["model_version"] == {"champion": "1", "challenger": "2"}[out["arm"]]
        titles = dict(zip(world.catalog["item_id"], world.catalog["title"]))
        assert all(it["title"] == titles[it["item_id"]] for it in out["items"])
        assert out["items"][0]["score"] >= out["items"][-1]["score"]
        assert isinstance(out["cot"], str) and out["latency_ms"] > 0
        # the same user always gets the same arm
        again = http.post("/search", json={"query": "oak desk", "k": 3, "user_id": "alice"}).json()
        assert again["arm"] == out["arm"]
        fb = http.post("/feedback", json={"request_id": out["request_id"], "item_id": out["items"][2]["item_id"],
                                          "event": "click"})
        assert fb.status_code == 200 and fb.json()["position"] == 3
        inter = http.post("/search", json={"query": "desk chair", "k": 6, "user_id": "bob", "mode": "interleave"}).json()
        assert inter["arm"] == "interleaved" and {it["team"] for it in inter["items"]} <= {"champion", "challenger"}
        direct = http.post("/search", json={"query": "desk chair", "k": 4, "reasoning": False}).json()
        assert direct["cot"] == "" and len(direct["items"]) == 4
        metrics = http.get("/metrics").text
        assert "lrem_requests_total" in metrics and "lrem_request_latency_seconds_bucket" in metrics
        assert 'lrem_model_version{arm="challenger"} 2.0' in metrics


MALFORMED = [
    ("search", b"", 400),
    ("search", b"{not json", 400),
    ("search", b"\xff\xfe{\"query\": \"x\"}", 400),  # not UTF-8
    ("search", b"[1, 2, 3]", 400),
    ("search", b'{"query": "\\ud800 lone surrogate"}', 400),
    ("search", json.dumps({"query": ""}).encode(), 422),
    ("search", json.dumps({"query": "   "}).encode(), 422),
    ("search", json.dumps({"query": "x" * 201}).encode(), 422),  # over max_query_chars
    ("search", json.dumps({"query": "chair", "k": 0}).encode(), 422),
    ("search", json.dumps({"query": "chair", "k": 51}).encode(), 422),
    ("search", json.dumps({"query": "chair", "k": "5"}).encode(), 422),
    ("search", json.dumps({"query": "chair", "k": 2.5}).encode(), 422),
    ("search", json.dumps({"query": "chair", "k": True}).encode(), 422),
    ("search", json.dumps({"query": 42}).encode(), 422),
    ("search", json.dumps({"query": "chair", "extra": 1}).encode(), 422),
    ("search", json.dumps({"query": "chair", "mode": "both"}).encode(), 422),
    ("search", b'{"query": "' + b"y" * 20000 + b'"}', 413),  # over max_body_bytes
    ("search", b'{"query": "chair", "k": 1' + b"0" * 5000 + b"}", 400),  # an int past Python's digit limit
    ("search", b'{"query": "chair", "k": NaN}', 422),
    ("search", b'{"query": "chair", "k": 1e400}', 422),
    ("search", b'{"query": "chair", "user_id": ""}', 422),
    ("search", b'{"query": "nul \u0000 inside"}', 422),
    ("search", b'{"query": "chair"' + b"]" * 10, 400),
    ("search", b"[" * 5000 + b"]" * 5000, 400),  # deep nesting
    ("feedback", json.dumps({"request_id": "0" * 32, "item_id": "x", "event": "click"}).encode(), 404),
    ("feedback", json.dumps({"request_id": "abc", "item_id": "x", "event": "like"}).encode(), 422),
    ("feedback", json.dumps({"item_id": "x", "event": "click"}).encode(), 422),
    ("feedback", b"\x80\x81", 400),
]


def test_thousand_requests_mixed_no_5xx_no_event_lost(stack, service):
    """1,000 requests, concurrent, valid and malformed: 0 5xx, every malformed one 4xx, store == responses."""
    cfg, world, home = stack
    store = EventStore(cfg.serve.event_store_url)
    before = store.counts()
    queries = world.split("eval")["text"].tolist() + world.split("train")["text"].tolist()[:30]
    rng = random.Random(0)
    plan = []
    for i in range(1000):
        r = rng.random()
        if r < 0.45:
            plan.append(("search", {"query": rng.choice(queries), "k": rng.randint(1, 20), "user_id": f"u{rng.randint(0, 99)}",
                                    **({"mode": "interleave"} if rng.random() < 0.1 else {})}, 200))
        elif r < 0.6:
            plan.append(("feedback", None, 200))  # for a search answered earlier
        else:
            endpoint, body, status = rng.choice(MALFORMED)
            plan.append((endpoint, body, status))
    answered: list[dict] = []
    statuses = {"search_ok": 0, "feedback_ok": 0}
    failures = []
    deadline = time.monotonic() + 240  # bounded in time as well as count

    def one(i_item):
        i, (endpoint, body, expect) = i_item
        if time.monotonic() > deadline:
            return None
        with httpx.Client(base_url=service.url, timeout=60) as http:
            if endpoint == "feedback" and body is None:
                if not answered:
                    return ("skipped", None)
                prev = answered[rng.randrange(len(answered))]
                body = json.dumps({"request_id": prev["request_id"], "item_id": prev["items"][0]["item_id"],
                                   "event": rng.choice(["click", "purchase"])}).encode()
                r = http.post("/feedback", content=body, headers={"content-type": "application/json"})
            elif isinstance(body, dict):
                r = http.post(f"/{endpoint}", json=body)
            else:
                r = http.post(f"/{endpoint}", content=body, headers={"content-type": "application/json"})
            return (endpoint, expect, r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text)

    sent = 0
    with ThreadPoolExecutor(max_workers=6) as pool:
        for result in pool.map(one, enumerate(plan)):
            if result is None:
                continue
            if result[0] == "skipped":
                continue
            sent += 1
            endpoint, expect, status, payload = result
            if status >= 500 or status != expect:
                failures.append((endpoint, expect, status, payload))
            if status == 200 and endpoint == "search":
                statuses["search_ok"] += 1
                answered.append(payload)
            elif status == 200:
                statuses["feedback_ok"] += 1
            if expect != 200:
                assert 400 <= status < 500, (endpoint, status, payload)
                assert "error" in payload
    assert sent >= 950, f"only {sent} requests sent within the time bound"
    assert not failures, failures[:5]
    after = store.counts()
    assert after["search_events"] - before["search_events"] == statuses["search_ok"]
    assert after["feedback_events"] - before["feedback_events"] == statuses["feedback_ok"]
    with httpx.Client(base_url=service.url) as http:
        assert http.get("/healthz").status_code == 200  # still up
        metrics = http.get("/metrics").text
    assert 'status="500"' not in metrics


def test_alias_move_reloads_without_dropping_requests(stack, service):
    import mlflow

    cfg, world, _ = stack
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri, registry_uri=cfg.tracking.mlflow_uri)
    name = cfg.tracking.model_name
    codes, versions = [], set()
    with httpx.Client(base_url=service.url, timeout=60) as http:
        deadline = time.monotonic() + 60
        moved_at = None
        i = 0
        while time.monotonic() < deadline:
            r = http.post("/search", json={"query": f"chair {i}", "k": 3, "user_id": "carol-champion-user"})
            codes.append(r.status_code)
            i += 1
            if r.status_code == 200 and r.json()["arm"] == "champion":
                versions.add(r.json()["model_version"])
            if i == 5:
                client.set_registered_model_alias(name, "champion", "2")
                moved_at = time.monotonic()
            if moved_at and http.get("/healthz").json()["arms"]["champion"]["version"] == "2" and i > 10:
                break
        health = http.get("/healthz").json()
    client.set_registered_model_alias(name, "champion", "1")  # leave the stack as it was
    assert set(codes) == {200}
    assert health["arms"]["champion"]["version"] == "2" and health["arms"]["champion"]["collection"] == "svc_items_v2"
    assert health["reloads"] >= 1
