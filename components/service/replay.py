"""Drive the running service over loopback HTTP with the eval queries and simulated users.

Each simulated request picks a user (``u0000`` .. ``u<n_users-1>``) and an eval query,
calls ``POST /search``, lets the position-biased click model (:mod:`clicks`) react to the
results using the data's relevance judgments, and sends each click or purchase to
``POST /feedback``. Bounded twice: at most ``max_requests`` searches and ``max_seconds``
of wall time. Only loopback URLs are accepted (this is a test driver, not a load tool).
"""

from __future__ import annotations

import ipaddress
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

from components.service.clicks import ClickModel


def check_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"the replayer only drives a service on loopback (127.0.0.1, ::1, localhost), not {url!r}")


def replay(url: str, queries: list[str], relevant: dict[str, set[str]], *, mode: str = "split", n_users: int = 200,
           max_requests: int = 400, max_seconds: float = 300.0, concurrency: int = 4, k: int = 10,
           click_model: ClickModel | None = None, seed: int = 0, user_prefix: str = "u") -> dict[str, Any]:
    """Replay; returns counts of searches, feedback events, errors and the arms served."""
    import httpx

    check_loopback(url)
    if not queries:
        raise ValueError("no queries to replay")
    model = click_model or ClickModel()
    rng_lock = threading.Lock()
    rng = random.Random(seed)
    counter = {"searches": 0, "feedback": 0, "errors": 0, "issued": 0}
    arms: dict[str, int] = {}
    deadline = time.monotonic() + max_seconds
    started = time.monotonic()

    def bump(key: str, arm: str | None = None) -> None:
        with rng_lock:
            counter[key] += 1
            if arm is not None:
                arms[arm] = arms.get(arm, 0) + 1

    def worker(worker_id: int) -> None:
        local = random.Random(seed * 1000 + worker_id)
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < deadline:
                with rng_lock:
                    if counter["issued"] >= max_requests:
                        return
                    counter["issued"] += 1
                    user = f"{user_prefix}{rng.randrange(n_users):04d}"
                    query = rng.choice(queries)
                try:
                    r = http.post("/search", json={"query": query, "k": k, "user_id": user, "mode": mode})
                except httpx.HTTPError:
                    bump("errors")
                    continue
                if r.status_code != 200:
                    bump("errors")
                    continue
                out = r.json()
                bump("searches", out["arm"])
                shown = [it["item_id"] for it in out["items"]]
                for item, event in model.simulate(shown, relevant.get(query, set()), local):
                    fb = http.post("/feedback", json={"request_id": out["request_id"], "item_id": item, "event": event})
                    bump("feedback" if fb.status_code == 200 else "errors")

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(worker, range(max(1, concurrency))))
    return {**{k: v for k, v in counter.items() if k != "issued"}, "arms": arms, "mode": mode,
            "seconds": round(time.monotonic() - started, 2), "bounded_by_time": time.monotonic() >= deadline}


def eval_queries(world) -> tuple[list[str], dict[str, set[str]], dict[str, str]]:
    """(eval query texts, text -> relevant item ids, text -> category) of a loaded world."""
    eval_q = world.split("eval")
    by_id = world.relevant()
    relevant = {text: by_id.get(qid, set()) for qid, text in zip(eval_q["query_id"], eval_q["text"])}
    categories = dict(zip(eval_q["text"], eval_q["category"]))
    return eval_q["text"].tolist(), relevant, categories


def replay_seed(run_key: str, data_md5: str = "", base: int = 0) -> int:
    """The replay seed of one pipeline run: a hash of the run key and the data hash (and the
    configured base seed), so every night replays fresh users and clicks, and a rerun of the
    same run (a retried task) replays the same ones. Recorded in the decision and in MLflow."""
    import hashlib

    digest = hashlib.sha256(f"{run_key}|{data_md5}|{base}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")
