"""Champion and challenger, loaded from the MLflow registry by alias and reloaded when an alias moves.

The service never reads a model from disk by path: each arm is
``models:/<model_name>@champion`` / ``@challenger``, resolved to a version, downloaded and
loaded, with the Milvus collection that version was indexed into (its ``milvus_collection``
tag). A poller re-resolves the aliases every ``serve.poll_seconds``; a moved alias is
loaded beside the old one and swapped in with one reference assignment, so requests in
flight finish on the arm they started with and none is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from components.config import PipelineConfig
from components.service.split import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)


@dataclass
class Arm:
    alias: str
    version: str
    model: Any  # LREMModel
    collection: str
    rows: int
    titles: dict[str, str]
    loaded_at: float = field(default_factory=time.time)
    search_params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"alias": self.alias, "version": self.version, "collection": self.collection, "rows": self.rows,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at))}


def _titles_of(client, mv) -> dict[str, str]:
    """item_id -> title from the data snapshot the version was trained on (run tag ``data_uri``)."""
    from components.data.io import load_world

    try:
        run = client.get_run(mv.run_id) if mv.run_id else None
        data_uri = (run.data.tags.get("data_uri") if run else None) or mv.tags.get("data_uri")
        if data_uri:
            world = load_world(data_uri)
            return dict(zip(world.catalog["item_id"].astype(str), world.catalog["title"].astype(str)))
    except Exception as exc:  # titles are cosmetic: serve ids rather than fail
        log.warning("no titles for version %s: %s", mv.version, exc)
    return {}


class ArmSet:
    """The loaded arms, a shared Milvus client, and the registry poller."""

    def __init__(self, cfg: PipelineConfig):
        import mlflow
        from pymilvus import MilvusClient

        from components import tracking

        self.cfg = cfg
        tracking.configure(cfg)
        self.client = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri, registry_uri=cfg.tracking.mlflow_uri)
        self.milvus = MilvusClient(uri=cfg.index.milvus_uri, timeout=30, dedicated=True)  # its own channel, see milvus_client
        self.arms: dict[str, Arm] = {}  # replaced as a whole, never mutated in place
        self._by_version: dict[str, Arm] = {}
        self._lock = threading.Lock()  # one refresh at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_poll: float | None = None
        self.last_error: str | None = None
        self.reloads = 0

    # ------------------------------------------------------------------ loading
    def _load_version(self, alias: str, mv) -> Arm:
        from components.index.collections import ensure_loaded, index_search_params
        from components.registry.models import load_lrem
        from components.serving import collection_of

        version = str(mv.version)
        collection = collection_of(self.cfg, version, mv)
        if collection not in self.milvus.list_collections():
            raise RuntimeError(f"collection {collection} of {self.cfg.tracking.model_name} v{version} does not exist")
        ensure_loaded(self.milvus, collection)  # a restarted Milvus keeps collections released
        rows = int(self.milvus.get_collection_stats(collection)["row_count"])
        if rows <= 0:
            raise RuntimeError(f"collection {collection} of v{version} is empty")
        model = load_lrem(f"models:/{self.cfg.tracking.model_name}/{version}")
        described = self.milvus.describe_index(collection, "embedding") or {}
        build = {k: v for k, v in described.items() if k in ("nlist", "M", "efConstruction")}
        params: dict[str, Any] = {"params": index_search_params(str(described.get("index_type", "FLAT")), build,
                                                                self.cfg.serve.max_k)}
        if described.get("metric_type"):
            params["metric_type"] = described["metric_type"]
        return Arm(alias, version, model, collection, rows, _titles_of(self.client, mv), search_params=params)

    def refresh(self) -> dict[str, Any]:
        """Re-resolve both aliases; load what moved; swap. Returns what changed."""
        from components.registry.models import alias_version

        changed: dict[str, Any] = {}
        with self._lock:
            new = dict(self.arms)
            for alias in (CHAMPION, CHALLENGER):
                mv = alias_version(self.cfg.tracking.model_name, alias)
                if mv is None:
                    if alias in new:
                        changed[alias] = {"from": new[alias].version, "to": None}
                        new.pop(alias)
                    continue
                version = str(mv.version)
                if alias in new and new[alias].version == version:
                    continue
                cached = self._by_version.get(version)
                try:
                    arm = (Arm(alias, version, cached.model, cached.collection, cached.rows, cached.titles,
                               search_params=cached.search_params) if cached else self._load_version(alias, mv))
                except Exception as exc:
                    # keep serving what we have; say why on /healthz
                    self.last_error = f"{alias} v{version}: {exc}"
                    log.error("cannot load %s v%s: %s", alias, version, exc)
                    continue
                changed[alias] = {"from": new[alias].version if alias in new else None, "to": version}
                new[alias] = arm
            self.arms = new  # one assignment: readers see the old dict or the new one
            live = {a.version for a in new.values()}
            self._by_version = {v: a for v, a in {**self._by_version, **{a.version: a for a in new.values()}}.items()
                                if v in live}
            self.last_poll = time.time()
            if changed:
                self.reloads += 1
                log.info("arms changed: %s", changed)
        return changed

    def start_polling(self) -> None:
        def loop():
            while not self._stop.wait(self.cfg.serve.poll_seconds):
                try:
                    self.refresh()
                except Exception as exc:  # registry briefly unreachable: try again next time
                    self.last_error = str(exc)
                    log.warning("registry poll failed: %s", exc)

        self._thread = threading.Thread(target=loop, name="lrem-registry-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.milvus.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ serving
    def arm_for(self, name: str) -> Arm | None:
        """The arm to serve ``name``: the challenger falls back to the champion when absent."""
        arms = self.arms
        if name == CHALLENGER and CHALLENGER not in arms:
            return arms.get(CHAMPION)
        return arms.get(name)

    def search(self, arm: Arm, embeddings: np.ndarray, limit: int) -> list[list[tuple[str, float]]]:
        result = self.milvus.search(arm.collection, data=np.asarray(embeddings, np.float32).tolist(), limit=limit,
                                    anns_field="embedding", search_params=arm.search_params, output_fields=["item_id"])
        return [[(str(hit.id), float(hit.distance)) for hit in hits] for hits in result]

    def health(self) -> dict[str, Any]:
        from components.index.collections import _alias_target

        try:
            serving = _alias_target(self.milvus, self.cfg.index.serving_alias)
        except Exception as exc:
            serving = f"unknown ({exc})"
        return {"model_name": self.cfg.tracking.model_name,
                "arms": {name: arm.describe() for name, arm in self.arms.items()},
                "serving_alias": {"alias": self.cfg.index.serving_alias, "collection": serving},
                "last_poll": self.last_poll, "poll_seconds": self.cfg.serve.poll_seconds,
                "reloads": self.reloads, "last_error": self.last_error}
