"""The CoT/embedding cache of the search service, and its nightly warm-up (step `warm_cache`).

Search traffic is head-heavy: the same queries come back all day. A query's CoT and
embedding depend only on the model version and the query (greedy generation, routed by the
version's own router), so they are computed once per (model version, normalised query,
reasoning switch) and kept in an in-process LRU bounded by ``serve.cache_size`` entries.
An entry of a version no arm serves any more is dropped when the arms change.

Warm-up: after ``build_index`` the nightly run precomputes the ``serve.warm_top_n`` most
frequent queries of the event store's last ``serve.warm_days`` days (the training queries
when the store has none) with the challenger, writes them to ``cot_cache.npz``, logs it in
the run under ``serving_cache/v<version>/`` and tags the model version with its URI
(``serving_cache_uri``). The service loads that file when it first sees the version, so a
new champion starts warm; hit rate, size and warm-up time are on ``/metrics``, ``/healthz``
and in the run (``cache.*`` metrics).
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from components.artifacts import CacheWarmup, DataSnapshot, ItemIndex, RegisteredModel
from components.config import PipelineConfig

log = logging.getLogger(__name__)

WARM_FILE = "cot_cache.npz"
WARM_TAG = "serving_cache_uri"
WARM_SECONDS_TAG = "serving_cache_seconds"
_SPACES = re.compile(r"\s+")


def normalise_query(query: str) -> str:
    """The cache's view of a query: Unicode NFKC, case-folded, whitespace collapsed and trimmed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", query).casefold()).strip()


@dataclass(frozen=True)
class Entry:
    embedding: np.ndarray
    cot: str
    reasoned: bool


class CotCache:
    """Thread-safe LRU of (model version, reasoning switch, normalised query) -> Entry."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self._data: collections.OrderedDict[tuple, Entry] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.warm: dict[str, dict[str, Any]] = {}  # version -> {"entries", "load_seconds", "warmup_seconds", "uri"}

    @staticmethod
    def key(version: str, reasoning: bool, query: str) -> tuple:
        return (str(version), bool(reasoning), normalise_query(query))

    def get(self, key: tuple) -> Entry | None:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: tuple, entry: Entry) -> None:
        if self.capacity == 0:
            return
        with self._lock:
            self._data[key] = entry
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
                self.evictions += 1

    def retain(self, versions: Iterable[str]) -> int:
        """Drop every entry of a version not in ``versions`` (a moved alias); returns how many."""
        live = {str(v) for v in versions}
        with self._lock:
            stale = [k for k in self._data if k[0] not in live]
            for k in stale:
                del self._data[k]
            for v in [v for v in self.warm if v not in live]:
                del self.warm[v]
        return len(stale)

    def __len__(self) -> int:
        return len(self._data)

    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {"capacity": self.capacity, "entries": len(self._data), "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hits / lookups, 4) if lookups else None, "evictions": self.evictions,
                "warm": dict(self.warm)}

    def load_warm(self, version: str, path: str | Path, uri: str | None = None,
                  warmup_seconds: float | None = None) -> int:
        """Put a warm-up file's entries (reasoning switch on: what a default request asks) in the cache."""
        t0 = time.perf_counter()
        queries, embs, cots, reasoned = read_warm(path)
        for q, e, c, r in zip(queries, embs, cots, reasoned):
            self.put(self.key(version, True, q), Entry(e, c, bool(r)))
        self.warm[str(version)] = {"entries": len(queries), "load_seconds": round(time.perf_counter() - t0, 3),
                                   "warmup_seconds": warmup_seconds, "uri": uri}
        return len(queries)


# ---------------------------------------------------------------------------- warm-up file
def write_warm(path: str | Path, queries: list[str], embs: np.ndarray, cots: list[str], reasoned: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, queries=np.asarray(queries, dtype=object).astype(str),
                        embeddings=np.asarray(embs, np.float32), cots=np.asarray(cots, dtype=object).astype(str),
                        reasoned=np.asarray(reasoned, bool))
    return path


def read_warm(path: str | Path) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return f["queries"].tolist(), f["embeddings"], f["cots"].tolist(), f["reasoned"]


def head_queries(cfg: PipelineConfig, fallback: list[str]) -> tuple[list[str], str]:
    """The ``serve.warm_top_n`` most frequent normalised queries of the event store's last
    ``serve.warm_days`` days; ``fallback`` (the training queries) when it holds none."""
    n = cfg.serve.warm_top_n
    try:
        from components.service.events import recent_queries

        texts = recent_queries(cfg.serve.event_store_url, cfg.serve.warm_days)
    except Exception as exc:  # no store yet: the training queries
        log.info("event store unreadable (%s): warming up on the training queries", exc)
        texts = []
    if texts:
        counts = collections.Counter(normalise_query(t) for t in texts)
        return [q for q, _ in counts.most_common(n)], "event_store"
    seen = dict.fromkeys(normalise_query(t) for t in fallback)
    return list(seen)[:n], "training_queries"


def run_warm_cache(cfg: PipelineConfig, snapshot: DataSnapshot, model: RegisteredModel,
                   index: ItemIndex) -> CacheWarmup:
    """Precompute the head queries' CoT and embedding with the challenger; store them with its version."""
    import mlflow

    from components import tracking
    from components.data.io import load_world
    from components.paths import run_dir
    from components.registry import models

    tracking.configure(cfg)
    lrem = models.load_lrem(model.model_uri)
    world = load_world(snapshot.data_uri)
    queries, source = head_queries(cfg, world.split("train")["text"].astype(str).tolist())
    t0 = time.perf_counter()
    embs, cots, reasoned = (lrem.embed_queries_routed(queries, batch_size=cfg.eval.batch_size) if queries
                            else (np.zeros((0, lrem.lm.config.hidden_size), np.float32), [], np.zeros(0, bool)))
    seconds = time.perf_counter() - t0
    out = run_dir(snapshot.run_key) / "serving_cache" / f"v{model.model_version}"
    write_warm(out / WARM_FILE, queries, embs, cots, reasoned)
    artifact_dir = f"serving_cache/v{model.model_version}"
    uri = f"runs:/{snapshot.mlflow_run_id}/{artifact_dir}/{WARM_FILE}"
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        mlflow.log_artifact(str(out / WARM_FILE), artifact_dir)
        mlflow.log_metrics({"cache.warm_entries": len(queries), "cache.warm_seconds": seconds,
                            "cache.warm_reason_share": float(np.mean(reasoned)) if len(queries) else 0.0})
        mlflow.set_tag("cache.warm_source", source)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(model.model_name, model.model_version, WARM_TAG, uri)
    client.set_model_version_tag(model.model_name, model.model_version, WARM_SECONDS_TAG, f"{seconds:.2f}")
    log.info("warm cache of v%s: %d queries (%s), %.1f s, %.0f%% reasoned", model.model_version, len(queries),
             source, seconds, 100 * float(np.mean(reasoned)) if len(queries) else 0.0)
    return CacheWarmup(model_version=model.model_version, cache_uri=uri, entries=len(queries), source=source,
                       seconds=round(seconds, 3), collection=index.collection)


def load_warm_for(cache: CotCache, client, model_name: str, version: str) -> int:
    """Load the warm-up file a model version is tagged with (none: 0 entries); never raises."""
    if str(version) in cache.warm:
        return cache.warm[str(version)]["entries"]
    try:
        import mlflow

        mv = client.get_model_version(model_name, str(version))
        uri = mv.tags.get(WARM_TAG)
        if not uri:
            cache.warm[str(version)] = {"entries": 0, "load_seconds": 0.0, "warmup_seconds": None, "uri": None}
            return 0
        secs = mv.tags.get(WARM_SECONDS_TAG)
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
        return cache.load_warm(str(version), local, uri=uri, warmup_seconds=float(secs) if secs else None)
    except Exception as exc:  # a cold cache is slower, not wrong
        log.warning("no warm cache for v%s: %s", version, exc)
        return 0
