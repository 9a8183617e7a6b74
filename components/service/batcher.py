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

from components.service.arms import Arm, ArmSet


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


class Batcher:
    def __init__(self, arms: ArmSet, max_batch: int, wait_ms: float, on_batch=None):
        self.arms = arms
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

    def _run(self, batch: list[Job]) -> None:
        arm = batch[0].arm
        started = time.perf_counter()
        try:
            with self._compute:
                embs, cots = arm.model.embed_queries([j.query for j in batch], reasoning=batch[0].reasoning,
                                                     batch_size=len(batch))
                results = self.arms.search(arm, embs, max(j.k for j in batch))
        except Exception as exc:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        if self.on_batch is not None:
            self.on_batch(arm.alias, len(batch), time.perf_counter() - started)
        for job, cot, hits in zip(batch, cots, results):
            job.future.set_result(Hit(cot, hits[:job.k], (started - job.enqueued) * 1000.0, len(batch)))

    def stop(self) -> None:
        self._stop.set()
