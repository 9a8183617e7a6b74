"""Batched generation across concurrent requests.

Requests for the same model version (and the same reasoning switch) queue up; a worker
thread takes the first, waits up to ``serve.batch_wait_ms`` for up to ``serve.max_batch``
more, then generates every CoT of the batch in one KV-cached loop, embeds them and
searches Milvus once. On a CPU the reasoning loop's per-token cost is mostly fixed, so a
batch of 8 costs far less than 8 batches of 1 (see bench/bench_search_service.py).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from components.service.arms import Arm, ArmSet
from components.service.cache import CotCache, Entry, normalise_query


@dataclass
class Job:
    arm: Arm
    query: str
    k: int
    reasoning: bool
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)


@dataclass
class Hit:
    cot: str
    items: list[tuple[str, float]]
    queue_ms: float
    batch_size: int
    cached: bool = False  # CoT and embedding came from the cache
    reasoned: bool = False  # the query was reasoned (now or when it was cached), not embedded directly


class Batcher:
    def __init__(self, arms: ArmSet, max_batch: int, wait_ms: float, on_batch=None, cache: CotCache | None = None,
                 routing: bool = True):
        self.arms = arms
        self.cache = cache  # CoT/embedding cache (None: every query is computed)
        self.routing = routing  # False: the model's router is ignored, every reasoning query reasons
        self.routed = {"reason": 0, "direct": 0}  # reasoning requests served, by what their embedding is
        self.max_batch = max(1, int(max_batch))
        self.wait_s = max(0.0, float(wait_ms)) / 1000.0
        self.on_batch = on_batch  # callback(arm_alias, batch_size, seconds)
        self._queues: dict[tuple, queue.Queue] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # one model forward at a time: concurrent torch calls on 2 cores only thrash
        self._compute = threading.Lock()

    def submit(self, arm: Arm, query: str, k: int, reasoning: bool) -> Future:
        job = Job(arm, query, k, reasoning)
        key = (arm.version, arm.collection, reasoning)
        with self._lock:
            q = self._queues.get(key)
            if q is None:
                q = self._queues[key] = queue.Queue()
                threading.Thread(target=self._work, args=(q,), name=f"lrem-batch-{arm.version}-{reasoning}",
                                 daemon=True).start()
        q.put(job)
        return job.future

    def _work(self, q: queue.Queue) -> None:
        while not self._stop.is_set():
            try:
                first = q.get(timeout=0.5)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.perf_counter() + self.wait_s
            while len(batch) < self.max_batch:
                left = deadline - time.perf_counter()
                try:
                    batch.append(q.get(timeout=left) if left > 0 else q.get_nowait())
                except queue.Empty:
                    break
            self._run(batch)

    def _embed(self, arm: Arm, queries: list[str], reasoning: bool) -> list[Entry]:
        model = arm.model
        if not reasoning:
            embs, cots = model.embed_queries(queries, reasoning=False, batch_size=len(queries))
            return [Entry(e, c, False) for e, c in zip(embs, cots)]
        if self.routing:
            embs, cots, reasoned = model.embed_queries_routed(queries, batch_size=len(queries))
        else:
            embs, cots = model.embed_queries(queries, reasoning=True, batch_size=len(queries), routing=False)
            reasoned = np.ones(len(queries), dtype=bool)
        return [Entry(e, c, bool(r)) for e, c, r in zip(embs, cots, reasoned)]

    def _run(self, batch: list[Job]) -> None:
        arm = batch[0].arm
        reasoning = batch[0].reasoning
        started = time.perf_counter()
        try:
            entries: list[Entry | None] = [None] * len(batch)
            if self.cache is not None:
                entries = [self.cache.get(self.cache.key(arm.version, reasoning, j.query)) for j in batch]
            cached = [e is not None for e in entries]
            todo: dict[str, list[int]] = {}  # one computation per distinct query of the batch
            for i, job in enumerate(batch):
                if entries[i] is None:
                    todo.setdefault(normalise_query(job.query), []).append(i)
            if todo:
                firsts = [batch[rows[0]].query for rows in todo.values()]
                with self._compute:
                    fresh = self._embed(arm, firsts, reasoning)
                for rows, query, entry in zip(todo.values(), firsts, fresh):
                    for i in rows:
                        entries[i] = entry
                    if self.cache is not None:
                        self.cache.put(self.cache.key(arm.version, reasoning, query), entry)
            with self._compute:
                results = self.arms.search(arm, np.stack([e.embedding for e in entries]), max(j.k for j in batch))
        except Exception as exc:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        if reasoning:
            for e in entries:
                self.routed["reason" if e.reasoned else "direct"] += 1
        if self.on_batch is not None:
            self.on_batch(arm.alias, len(batch), time.perf_counter() - started)
        for job, entry, hits, was_cached in zip(batch, entries, results, cached):
            job.future.set_result(Hit(entry.cot, hits[:job.k], (started - job.enqueued) * 1000.0, len(batch),
                                      cached=was_cached, reasoned=entry.reasoned))

    def stop(self) -> None:
        self._stop.set()
