"""The search service: ``POST /search``, ``POST /feedback``, ``GET /healthz``, ``GET /metrics``.

Request bodies are parsed by hand, not by a schema library, so that every kind of bad
input gets a precise 4xx and nothing reaches the model unchecked:

- 413: body larger than ``serve.max_body_bytes``
- 400: body not UTF-8, not JSON, not a JSON object, or a string with lone surrogates
- 422: missing/empty/over-long query (``serve.max_query_chars``), k not an integer in
  [``serve.min_k``, ``serve.max_k``], unknown fields, bad user id, bad event name,
  an item that the search did not show
- 404: feedback for an unknown request id
- 503: no champion loaded yet

Anything unexpected is answered 500 with a request id and logged; the process stays up.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import threading
import time
import uuid
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the string annotations here

from components.config import PipelineConfig
from components.service.arms import ArmSet
from components.service.batcher import Batcher
from components.service.cache import CotCache, load_warm_for
from components.service.events import EventStore
from components.service.interleave import team_draft
from components.service.split import CHALLENGER, CHAMPION, assign_arm

log = logging.getLogger(__name__)

SEARCH_FIELDS = {"query", "k", "user_id", "mode", "reasoning"}
FEEDBACK_FIELDS = {"request_id", "item_id", "event"}
EVENTS = ("click", "purchase")
MODES = ("split", "interleave")
INTERLEAVED = "interleaved"


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Metrics:
    """Prometheus metrics in a registry of their own (several apps may live in one process)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("lrem_requests", "HTTP requests by endpoint, arm and status", ["endpoint", "arm", "status"],
                                registry=self.registry)
        self.errors = Counter("lrem_errors", "Rejected or failed requests by endpoint, arm and reason",
                              ["endpoint", "arm", "reason"], registry=self.registry)
        buckets = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
        self.latency = Histogram("lrem_request_latency_seconds", "Server-side latency of /search by arm", ["arm"],
                                 buckets=buckets, registry=self.registry)
        self.batch = Histogram("lrem_batch_size", "Queries per generation batch", ["arm"],
                               buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=self.registry)
        self.version = Gauge("lrem_model_version", "Registry version loaded per arm", ["arm"], registry=self.registry)
        self.feedback = Counter("lrem_feedback_events", "Feedback events by arm and event", ["arm", "event"],
                                registry=self.registry)
        # the CoT/embedding cache and the router (set from their counters when scraped)
        self.cache_lookups = Gauge("lrem_cache_lookups", "CoT/embedding cache lookups since start", ["result"],
                                   registry=self.registry)
        self.cache_hit_rate = Gauge("lrem_cache_hit_rate", "Share of cache lookups that hit", registry=self.registry)
        self.cache_entries = Gauge("lrem_cache_entries", "Entries in the CoT/embedding cache", registry=self.registry)
        self.cache_capacity = Gauge("lrem_cache_capacity", "Size bound of the cache (serve.cache_size)",
                                    registry=self.registry)
        self.cache_warm_entries = Gauge("lrem_cache_warm_entries", "Warm-up entries loaded per model version",
                                        ["version"], registry=self.registry)
        self.cache_warm_seconds = Gauge("lrem_cache_warm_seconds", "Nightly warm-up time per model version",
                                        ["version"], registry=self.registry)
        self.routed = Gauge("lrem_routed_queries", "Reasoning requests served, by whether the query reasoned",
                            ["decision"], registry=self.registry)


class LatencyWindow:
    """Recent latencies per arm, for p50/p95 on /healthz."""

    def __init__(self, size: int = 5000):
        self._data: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=size))
        self._lock = threading.Lock()

    def add(self, arm: str, ms: float) -> None:
        with self._lock:
            self._data[arm].append(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        import numpy as np

        with self._lock:
            data = {arm: list(v) for arm, v in self._data.items()}
        return {arm: {"n": len(v), "p50_ms": float(np.percentile(v, 50)), "p95_ms": float(np.percentile(v, 95))}
                for arm, v in data.items() if v}


def _string(body: dict, key: str, max_len: int, required: bool = True, default: str | None = None) -> str | None:
    if key not in body or body[key] is None:
        if required:
            raise BadRequest(422, f"'{key}' is required")
        return default
    value = body[key]
    if not isinstance(value, str):
        raise BadRequest(422, f"'{key}' must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(400, f"'{key}' is not valid Unicode (lone surrogate)") from None
    if "\x00" in value:
        raise BadRequest(422, f"'{key}' contains a NUL character")
    value = value.strip()
    if not value:
        raise BadRequest(422, f"'{key}' is empty")
    if len(value) > max_len:
        raise BadRequest(422, f"'{key}' is {len(value)} characters long; the limit is {max_len}")
    return value


class Service:
    def __init__(self, cfg: PipelineConfig, arms: ArmSet, store: EventStore):
        self.cfg = cfg
        self.arms = arms
        self.store = store
        self.metrics = Metrics()
        self.window = LatencyWindow()
        self.cache = CotCache(cfg.serve.cache_size) if cfg.serve.cache_size > 0 else None
        self.batcher = Batcher(arms, cfg.serve.max_batch, cfg.serve.batch_wait_ms, on_batch=self._on_batch,
                               cache=self.cache, routing=cfg.serve.routing)
        self._synced: frozenset = frozenset()  # the versions the cache was last synced with
        self.salt = cfg.online.salt or cfg.online.experiment
        self.recent: collections.OrderedDict[str, dict] = collections.OrderedDict()
        self._recent_lock = threading.Lock()
        self.started = time.time()

    def _on_batch(self, arm: str, size: int, seconds: float) -> None:
        self.metrics.batch.labels(arm).observe(size)

    def sync_cache(self) -> None:
        """Load the warm-up file of every version an arm serves (once each); drop other versions' entries."""
        if self.cache is None:
            return
        arms = self.arms.arms
        self._synced = frozenset(a.version for a in arms.values())
        for arm in arms.values():
            if arm.version not in self.cache.warm:
                load_warm_for(self.cache, self.arms.client, self.cfg.tracking.model_name, arm.version)
        self.cache.retain(a.version for a in arms.values())

    def cache_health(self) -> dict[str, Any]:
        routed = dict(self.batcher.routed)
        total = sum(routed.values())
        out: dict[str, Any] = {"cache": self.cache.stats() if self.cache is not None else {"capacity": 0},
                               "routing": {"enabled": self.cfg.serve.routing, **routed,
                                           "reason_share": round(routed["reason"] / total, 4) if total else None}}
        m = self.metrics
        for decision, n in routed.items():
            m.routed.labels(decision).set(n)
        if self.cache is not None:
            st = out["cache"]
            m.cache_lookups.labels("hit").set(st["hits"])
            m.cache_lookups.labels("miss").set(st["misses"])
            m.cache_hit_rate.set(st["hit_rate"] or 0.0)
            m.cache_entries.set(st["entries"])
            m.cache_capacity.set(st["capacity"])
            for version, warm in st["warm"].items():
                m.cache_warm_entries.labels(version).set(warm["entries"])
                if warm.get("warmup_seconds") is not None:
                    m.cache_warm_seconds.labels(version).set(warm["warmup_seconds"])
        return out

    # ------------------------------------------------------------------ parsing
    async def read_json(self, request) -> dict:
        limit = self.cfg.serve.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise BadRequest(413, f"body is {declared} bytes; the limit is {limit}")
            except ValueError:
                raise BadRequest(400, "bad Content-Length header") from None
        raw = bytearray()
        async for chunk in request.stream():
            raw.extend(chunk)
            if len(raw) > limit:
                raise BadRequest(413, f"body is over the limit of {limit} bytes")
        if not raw:
            raise BadRequest(400, "empty body: expected a JSON object")
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(400, f"body is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        try:
            body = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, and ints over Python's digit limit
            raise BadRequest(400, f"malformed JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest(400, f"expected a JSON object, got {type(body).__name__}")
        return body

    def parse_search(self, body: dict) -> dict[str, Any]:
        s = self.cfg.serve
        unknown = set(body) - SEARCH_FIELDS
        if unknown:
            raise BadRequest(422, f"unknown field(s) {sorted(unknown)}; expected {sorted(SEARCH_FIELDS)}")
        query = _string(body, "query", s.max_query_chars)
        user = _string(body, "user_id", s.max_user_id_chars, required=False, default="anonymous")
        k = body.get("k", s.default_k)
        if isinstance(k, bool) or not isinstance(k, int):
            raise BadRequest(422, f"'k' must be an integer in [{s.min_k}, {s.max_k}], got {k!r:.40}")
        if not s.min_k <= k <= s.max_k:
            raise BadRequest(422, f"'k' must be in [{s.min_k}, {s.max_k}], got {k}")
        mode = body.get("mode", self.cfg.online.mode)
        if mode not in MODES:
            raise BadRequest(422, f"'mode' must be one of {list(MODES)}, got {mode!r:.40}")
        reasoning = body.get("reasoning", s.reasoning)
        if not isinstance(reasoning, bool):
            raise BadRequest(422, "'reasoning' must be true or false")
        return {"query": query, "user_id": user, "k": k, "mode": mode, "reasoning": reasoning}

    def parse_feedback(self, body: dict) -> dict[str, Any]:
        unknown = set(body) - FEEDBACK_FIELDS
        if unknown:
            raise BadRequest(422, f"unknown field(s) {sorted(unknown)}; expected {sorted(FEEDBACK_FIELDS)}")
        rid = _string(body, "request_id", 64)
        item = _string(body, "item_id", 256)
        event = body.get("event")
        if event not in EVENTS:
            raise BadRequest(422, f"'event' must be one of {list(EVENTS)}, got {event!r:.40}")
        return {"request_id": rid, "item_id": item, "event": event}

    # ------------------------------------------------------------------ search
    async def search(self, req: dict[str, Any], arrived: float, started_wall: float) -> dict[str, Any]:
        if self.arms.arm_for(CHAMPION) is None:
            raise BadRequest(503, "no champion model is loaded yet (registry alias 'champion' missing or its "
                                  f"collection unavailable: {self.arms.last_error})")
        if self.cache is not None and frozenset(a.version for a in self.arms.arms.values()) != self._synced:
            await asyncio.to_thread(self.sync_cache)  # the arms moved: new warm-ups in, stale entries out
        rid = uuid.uuid4().hex
        if req["mode"] == "interleave":
            champ, chal = self.arms.arm_for(CHAMPION), self.arms.arm_for(CHALLENGER)
            f1 = self.batcher.submit(champ, req["query"], req["k"], req["reasoning"])
            f2 = self.batcher.submit(chal, req["query"], req["k"], req["reasoning"])
            h1, h2 = await asyncio.gather(asyncio.wrap_future(f1), asyncio.wrap_future(f2))
            rng = random.Random(rid)
            ids, teams = team_draft([i for i, _ in h1.items], [i for i, _ in h2.items], req["k"], rng)
            score = {**dict(h2.items), **dict(h1.items)}
            arm_label, versions = INTERLEAVED, f"{champ.version}|{chal.version}"
            collections_ = f"{champ.collection}|{chal.collection}"
            cot = f"{h1.cot} || {h2.cot}"
            titles = {**chal.titles, **champ.titles}
            scores = [score[i] for i in ids]
            queue_ms = max(h1.queue_ms, h2.queue_ms)
        else:
            arm_label = assign_arm(req["user_id"], self.salt, self.cfg.online.challenger_share)
            arm = self.arms.arm_for(arm_label)
            hit = await asyncio.wrap_future(self.batcher.submit(arm, req["query"], req["k"], req["reasoning"]))
            ids, scores = [i for i, _ in hit.items], [s for _, s in hit.items]
            teams, versions, collections_, cot, titles = None, arm.version, arm.collection, hit.cot, arm.titles
            queue_ms = hit.queue_ms
        latency_ms = (time.perf_counter() - arrived) * 1000.0
        row = {"request_id": rid, "ts": started_wall, "user_id": req["user_id"], "experiment": self.cfg.online.experiment,
               "mode": req["mode"], "arm": arm_label, "model_version": versions, "collection": collections_,
               "query": req["query"], "k": req["k"], "reasoning": req["reasoning"], "cot": cot, "item_ids": ids,
               "scores": scores, "teams": teams, "latency_ms": latency_ms, "queue_ms": queue_ms}
        await asyncio.to_thread(self.store.log_search, row)  # logged before the response is sent
        self._remember(rid, {"arm": arm_label, "items": ids, "teams": teams})
        items = [{"rank": r, "item_id": i, "title": titles.get(i, i), "score": round(float(s), 6),
                  **({"team": teams[r - 1]} if teams else {})} for r, (i, s) in enumerate(zip(ids, scores), start=1)]
        return {"request_id": rid, "arm": arm_label, "mode": req["mode"], "model_version": versions,
                "collection": collections_, "cot": cot, "reasoning": req["reasoning"], "items": items,
                "latency_ms": round(latency_ms, 3)}

    def _remember(self, rid: str, info: dict) -> None:
        with self._recent_lock:
            self.recent[rid] = info
            while len(self.recent) > self.cfg.serve.recent_requests:
                self.recent.popitem(last=False)

    def _lookup(self, rid: str) -> dict | None:
        with self._recent_lock:
            info = self.recent.get(rid)
        if info is not None:
            return info
        row = self.store.get_search(rid)  # older than the in-memory window, or another replica
        return {"arm": row["arm"], "items": row["item_ids"], "teams": row["teams"]} if row else None

    async def feedback(self, req: dict[str, Any]) -> dict[str, Any]:
        info = await asyncio.to_thread(self._lookup, req["request_id"])
        if info is None:
            raise BadRequest(404, f"unknown request_id {req['request_id']!r}")
        if req["item_id"] not in info["items"]:
            raise BadRequest(422, f"item {req['item_id']!r} was not shown by request {req['request_id']}")
        position = info["items"].index(req["item_id"]) + 1
        team = info["teams"][position - 1] if info["teams"] else None
        row = {"ts": time.time(), "request_id": req["request_id"], "item_id": req["item_id"], "event": req["event"],
               "arm": info["arm"], "team": team, "position": position}
        await asyncio.to_thread(self.store.log_feedback, row)
        self.metrics.feedback.labels(info["arm"], req["event"]).inc()
        return {"ok": True, "request_id": req["request_id"], "arm": info["arm"], "position": position,
                **({"team": team} if team else {})}

    def health(self) -> dict[str, Any]:
        h = self.arms.health()
        for name, arm in h["arms"].items():
            try:
                self.metrics.version.labels(name).set(float(arm["version"]))
            except ValueError:
                pass
        ok = CHAMPION in h["arms"]
        return {"status": "ok" if ok else "degraded", **h,
                "experiment": {"name": self.cfg.online.experiment, "challenger_share": self.cfg.online.challenger_share,
                               "mode": self.cfg.online.mode},
                "latency": self.window.summary(), "uptime_s": round(time.time() - self.started, 1),
                **self.cache_health(),
                "event_store": self.store.url.split("@")[-1]}


def create_app(cfg: PipelineConfig, arms: ArmSet, store: EventStore):
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    svc = Service(cfg, arms, store)
    app = FastAPI(title="LREM search", version="1", docs_url="/docs", redoc_url=None)
    app.state.service = svc

    def reject(endpoint: str, arm: str, exc: BadRequest):
        svc.metrics.requests.labels(endpoint, arm, str(exc.status)).inc()
        svc.metrics.errors.labels(endpoint, arm, str(exc.status)).inc()
        return JSONResponse({"error": exc.message, "status": exc.status}, status_code=exc.status)

    def failed(endpoint: str, exc: Exception):
        eid = uuid.uuid4().hex[:12]
        log.exception("%s failed (error id %s)", endpoint, eid)
        svc.metrics.requests.labels(endpoint, "none", "500").inc()
        svc.metrics.errors.labels(endpoint, "none", "internal").inc()
        return JSONResponse({"error": f"internal error {eid}: {type(exc).__name__}", "status": 500}, status_code=500)

    @app.post("/search")
    async def search(request: Request):
        arrived, wall = time.perf_counter(), time.time()
        try:
            req = svc.parse_search(await svc.read_json(request))
            out = await svc.search(req, arrived, wall)
        except BadRequest as exc:
            return reject("search", "none", exc)
        except Exception as exc:
            return failed("search", exc)
        svc.metrics.requests.labels("search", out["arm"], "200").inc()
        svc.metrics.latency.labels(out["arm"]).observe(out["latency_ms"] / 1000.0)
        svc.window.add(out["arm"], out["latency_ms"])
        return out

    @app.post("/feedback")
    async def feedback(request: Request):
        try:
            out = await svc.feedback(svc.parse_feedback(await svc.read_json(request)))
        except BadRequest as exc:
            return reject("feedback", "none", exc)
        except Exception as exc:
            return failed("feedback", exc)
        svc.metrics.requests.labels("feedback", out["arm"], "200").inc()
        return out

    @app.get("/healthz")
    async def healthz():
        h = svc.health()
        return JSONResponse(h, status_code=200 if h["status"] == "ok" else 503)

    @app.get("/metrics")
    async def metrics():
        svc.health()  # refreshes the version gauges
        return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(404)
    async def not_found(request: Request, exc):
        return JSONResponse({"error": f"no such endpoint {request.method} {request.url.path}", "status": 404},
                            status_code=404)

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc):
        return JSONResponse({"error": f"{request.method} is not allowed on {request.url.path}", "status": 405},
                            status_code=405)

    return app


def build(cfg: PipelineConfig, poll: bool = True):
    """The app with its arms loaded from the registry and the event store opened."""
    from components.index.server import ensure_server

    ensure_server(cfg.index.milvus_uri)
    arms = ArmSet(cfg)
    arms.refresh()
    if poll:
        arms.start_polling()
    store = EventStore(cfg.serve.event_store_url)
    app = create_app(cfg, arms, store)
    app.state.service.sync_cache()  # the warm-up files of the loaded versions, with the models

    @app.on_event("shutdown")
    def _close():
        arms.stop()
        app.state.service.batcher.stop()
        store.close()

    return app


def serve(cfg: PipelineConfig, host: str | None = None, port: int | None = None) -> None:
    """Run the service in the foreground (uvicorn, one process; the model is shared by threads)."""
    import uvicorn

    app = build(cfg)
    uvicorn.run(app, host=host or cfg.serve.host, port=port or cfg.serve.port, log_level="warning",
                access_log=False, timeout_graceful_shutdown=10)
