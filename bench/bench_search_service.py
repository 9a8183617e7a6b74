"""Search latency through `lrem serve` against calling the model in-process.

A real stack in a temporary state folder: the embedded Milvus Lite server, an MLflow
SQLite registry holding the tiny demo model (untrained, ModelConfig defaults, the same
model as bench_query_latency) as `champion`, its 6,000-item collection (FLAT, exact), and
the service started as its own process (``lrem serve``, uvicorn) on loopback. Measured,
for reasoning (greedy CoT, the model's 16-token budget) and direct (empty CoT) embedding:

- in-process, batch 1: ``model.embed_queries([q])`` + one Milvus search (what the service
  does for one request, without HTTP, JSON, the event store or the batcher);
- service, batch 1: one client, one request at a time (``POST /search``, k=10);
- service, 8 concurrent clients: per-request latency and throughput, with the service's
  micro-batching on (max_batch 8) and off (max_batch 1, a second service process).

Reported: p50/p95 in ms, throughput, and the service overhead ratio (service p50 / in-process
p50, batch 1). Queries are the demo world's eval queries, the same list for every variant.

    .venv/bin/python bench/bench_search_service.py [--requests 60]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402

NAME = "search_service"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pct(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95))}


def build_stack(home: Path, model, world, milvus_uri: str):
    import mlflow
    import yaml

    from components import tracking
    from components.config import IndexConfig, PipelineConfig, ServeConfig, TrackingConfig
    from components.index.collections import build_item_index
    from components.registry.models import log_lrem_model

    db = f"sqlite:///{home / 'mlflow.db'}"
    cfg = PipelineConfig(tracking=TrackingConfig(mlflow_uri=db, experiment="bench", model_name="lrem-bench"),
                         index=IndexConfig(milvus_uri=milvus_uri, collection_prefix="bench_items_v",
                                           serving_alias="bench_serving", index_type="FLAT"),
                         serve=ServeConfig(event_store_url=f"sqlite:///{home / 'events.db'}", poll_seconds=60))
    exp = tracking.configure(cfg)
    saved = model.save(home / "model")
    with mlflow.start_run(experiment_id=exp):
        mlflow.set_tag("data_uri", str(C.world_dir() / "data"))
        info = log_lrem_model(saved, registered_name="lrem-bench")
    version = str(info.registered_model_version)
    build_item_index(milvus_uri, f"bench_items_v{version}", world.catalog["item_id"].tolist(),
                     world.catalog["title"].tolist(), model.embed_items, cfg.index)
    client = mlflow.MlflowClient()
    client.set_model_version_tag("lrem-bench", version, "milvus_collection", f"bench_items_v{version}")
    client.set_registered_model_alias("lrem-bench", "champion", version)
    configs = {}
    for batch in (8, 1):
        cfg.serve.max_batch = batch
        path = home / f"serve-batch{batch}.yaml"
        path.write_text(yaml.safe_dump(cfg.to_dict()))
        configs[batch] = path
    return cfg, configs, f"bench_items_v{version}"


def start_service(config: Path, port: int, home: Path) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "components.cli", "--config", str(config), "serve", "--port",
                             str(port)], cwd=C.REPO_ROOT, env={**os.environ, "LREM_HOME": str(home)},
                            stdout=open(home / f"service-{port}.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((home / f"service-{port}.log").read_text()[-3000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("service did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def in_process(model, milvus_uri: str, collection: str, queries: list[str], reasoning: bool) -> dict:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=milvus_uri)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        emb, _ = model.embed_queries([q], reasoning=reasoning, batch_size=1)
        client.search(collection, data=emb.tolist(), limit=10, anns_field="embedding", output_fields=["item_id"])
        times.append((time.perf_counter() - t0) * 1000)
    client.close()
    return pct(times)


def through_service(url: str, queries: list[str], reasoning: bool, clients: int) -> dict:
    import httpx

    def one(args):
        i, q = args
        with httpx.Client(base_url=url, timeout=120) as http:
            t0 = time.perf_counter()
            r = http.post("/search", json={"query": q, "k": 10, "user_id": f"b{i}", "reasoning": reasoning})
            ms = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            return ms, r.json()["latency_ms"]

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        out = list(pool.map(one, enumerate(queries)))
    wall = time.perf_counter() - t0
    res = pct([o[0] for o in out])
    res["server_p50_ms"] = float(np.percentile([o[1] for o in out], 50))
    res["throughput_rps"] = len(queries) / wall
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=60, help="requests per variant")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads, here and in the service (0: default)")
    args = ap.parse_args(argv)
    C.set_threads(args.threads)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the service process reads it at torch import
    started = time.monotonic()
    world, triplets = C.load_demo()
    model, _ = C.get_model(C.pipeline_corpus(world, triplets), "pipeline")
    queries = (world.split("eval")["text"].tolist() * 4)[: args.requests]
    warm = queries[:5]
    results: dict = {"machine": C.machine(), "requests": len(queries)}
    with tempfile.TemporaryDirectory(prefix="lrem-bench-svc-") as tmp:
        home = Path(tmp)
        os.environ["LREM_HOME"] = str(home)
        from components.index.server import start_server, stop_server

        milvus_uri = f"http://127.0.0.1:{free_port()}"
        start_server(milvus_uri, timeout=90)
        try:
            cfg, configs, collection = build_stack(home, model, world, milvus_uri)
            for reasoning in (True, False):
                in_process(model, milvus_uri, collection, warm, reasoning)
                results[f"inproc_b1_{'reasoning' if reasoning else 'direct'}"] = in_process(
                    model, milvus_uri, collection, queries, reasoning)
            for batch in (8, 1):
                port = free_port()
                proc = start_service(configs[batch], port, home)
                url = f"http://127.0.0.1:{port}"
                try:
                    for reasoning in (True, False):
                        mode = "reasoning" if reasoning else "direct"
                        through_service(url, warm, reasoning, 1)
                        if batch == 8:
                            results[f"service_b1_{mode}"] = through_service(url, queries, reasoning, 1)
                        results[f"service_c8_{mode}_maxbatch{batch}"] = through_service(url, queries, reasoning, 8)
                finally:
                    stop(proc)
        finally:
            stop_server()
    for mode in ("reasoning", "direct"):
        results[f"overhead_b1_{mode}"] = results[f"service_b1_{mode}"]["p50_ms"] / results[f"inproc_b1_{mode}"]["p50_ms"]
        results[f"batching_gain_c8_{mode}"] = (results[f"service_c8_{mode}_maxbatch8"]["throughput_rps"]
                                               / results[f"service_c8_{mode}_maxbatch1"]["throughput_rps"])
    results["reasoning_vs_direct_service_b1"] = results["service_b1_reasoning"]["p50_ms"] / results["service_b1_direct"]["p50_ms"]
    results["seconds"] = round(time.monotonic() - started, 1)
    C.RESULTS.mkdir(parents=True, exist_ok=True)
    (C.RESULTS / f"{NAME}.json").write_text(json.dumps(results, indent=2))

    print(f"search service latency ({results['requests']} requests per variant, k=10, 6,000 items, FLAT; "
          f"{results['machine'].get('cpu_model', '?')}, {results['machine']['cpu_count']} CPUs, "
          f"torch threads {results['machine']['torch_threads']}, load {results['machine'].get('loadavg_1m', 0):.1f}; "
          f"{results['seconds']} s)")
    print(f"{'variant':<44} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7}")
    for key, value in results.items():
        if isinstance(value, dict) and "p50_ms" in value:
            rps = f"{value['throughput_rps']:7.1f}" if "throughput_rps" in value else " " * 7
            print(f"{key:<44} {value['p50_ms']:8.1f} {value['p95_ms']:8.1f} {rps}")
    for key in ("overhead_b1_reasoning", "overhead_b1_direct", "batching_gain_c8_reasoning", "batching_gain_c8_direct",
                "reasoning_vs_direct_service_b1"):
        print(f"{key:<44} {results[key]:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
