"""Serving cost: a Zipf traffic replay through the running search service.

Three variants, each a real ``lrem serve`` process started here on its own port, all serving
the registry's champion (run the nightly pipeline first, e.g. ``lrem --config
configs/smoke.yaml pipeline``; its ``warm_cache`` step leaves the warm-up file the third
variant loads):

- ``direct``: ``"reasoning": false`` requests (empty CoT, one forward), cache off;
- ``always_reason``: every query reasons (``serve.routing: false``), cache off;
- ``reason_cache_router``: the registered model's router decides, with the CoT/embedding
  cache (``serve.cache_size``) and the nightly warm-up.

Traffic: queries drawn from the eval + training queries with Zipf probabilities (rank r has
weight 1 / r^s, s = ``--zipf`` = 1.0, ranks in a seeded shuffle); the repeat rate (share of
requests whose query was asked before in the stream) is printed. Every variant replays the
same stream in order, in blocks that rotate between variants (noise on a shared machine hits
all three alike), with 1 and with 8 concurrent clients; each client setting replays a draw of
its own from the same Zipf law over the same head queries (so the 8-client pass is not the
1-client stream replayed into a full cache). Reported: client-side p50/p95
and throughput, ratios to direct in the same run; server-side latency and queue time (where
the time goes), the cache hit rate and the share of queries that reasoned (``/healthz``);
HitRate@100 on the eval queries of the stream, with a paired bootstrap CI of each variant
against always-reasoning.

    .venv/bin/python bench/bench_serving_cost.py --config configs/smoke.yaml [--requests 300] [--zipf 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402

NAME = "serving_cost"
VARIANTS = ("direct", "always_reason", "reason_cache_router")


def zipf_stream(queries: list[str], n: int, s: float, seed: int, draw: int = 0) -> list[int]:
    """``n`` query positions drawn with Zipf weights over ranks; the rank order (which queries are
    the head) depends on ``seed`` only, the draw also on ``draw`` (0: the first draw)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(queries))
    if draw:
        rng = np.random.default_rng([seed, draw])
    weights = 1.0 / np.arange(1, len(queries) + 1) ** s
    ranks = rng.choice(len(queries), size=n, p=weights / weights.sum())
    return order[ranks].tolist()


def start_service(config: Path, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "components.cli", "--config", str(config), "serve", "--host", "127.0.0.1",
           "--port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=C.REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service at {url} exited with {proc.returncode}")
        try:
            r = httpx.get(f"{url}/healthz", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"service at {url} not healthy within {timeout:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except Exception:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except Exception:
            pass


def service_configs(raw: dict, tmp: Path, plain_port: int, routed_port: int) -> dict[str, Path]:
    """The two services' config files (in ``tmp``): "plain" (no cache, no router: direct and always
    reasoning) and "routed" (cache + router), from the config ``raw``. Their requests go to an event
    store of the bench's own, in ``tmp``: synthetic traffic must not become the state dir's traffic,
    on which the nightly router sets its reasoning budget (docs/serving-cost.md 3.7)."""
    import yaml

    configs = {}
    for name, port, serve in (("plain", plain_port, {"cache_size": 0, "routing": False}),
                              ("routed", routed_port, {"routing": True})):
        conf = json.loads(json.dumps(raw))
        conf.setdefault("serve", {}).update({"port": port, "max_k": 100, **serve,
                                             "event_store_url": f"sqlite:///{tmp / 'bench-events.db'}"})
        configs[name] = tmp / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(conf))
    return configs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/smoke.yaml")
    ap.add_argument("--requests", type=int, default=300, help="requests per variant and client setting")
    ap.add_argument("--zipf", type=float, default=1.0)
    ap.add_argument("--block", type=int, default=20, help="requests per block before the next variant runs")
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--port", type=int, default=58726, help="first of two ports")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each service (OMP_NUM_THREADS)")
    args = ap.parse_args()

    import httpx
    import yaml

    from components.config import load_config
    from components.data.io import load_world
    from components.evaluation.bootstrap import paired_bootstrap
    from components.registry.models import CHAMPION, alias_version

    cfg = load_config(args.config)
    from components import tracking

    tracking.configure(cfg)
    mv = alias_version(cfg.tracking.model_name, CHAMPION)
    if mv is None:
        sys.exit(f"no champion in {cfg.tracking.mlflow_uri}: run the pipeline first (lrem --config {args.config} pipeline)")
    import mlflow

    run = mlflow.MlflowClient().get_run(mv.run_id)
    world = load_world(run.data.tags["data_uri"])
    pool = world.split("eval")["text"].tolist() + world.split("train")["text"].tolist()
    eval_texts = set(world.split("eval")["text"])
    qid_of = dict(zip(world.queries["text"], world.queries["query_id"].astype(str)))
    relevant = {str(q): {str(i) for i in v} for q, v in world.relevant().items()}
    stream = [pool[i] for i in zipf_stream(pool, args.requests, args.zipf, args.seed)]
    repeat = 1.0 - len(set(stream)) / len(stream)
    print(f"[serving cost] champion v{mv.version}; {len(pool)} queries (eval + train), Zipf s={args.zipf}: "
          f"{len(stream)} requests per run, {len(set(stream))} distinct, repeat rate {repeat:.1%}; "
          f"{sum(q in eval_texts for q in stream)} requests are eval queries", flush=True)

    raw = yaml.safe_load(Path(args.config).read_text()) or {}
    tmp = Path(tempfile.mkdtemp(prefix="lrem-serving-cost-"))
    plain_port, routed_port = args.port, args.port + 1
    configs = service_configs(raw, tmp, plain_port, routed_port)
    env_threads = str(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", env_threads)
    procs = {name: start_service(configs[name], port, tmp / f"{name}.log")
             for name, port in (("plain", plain_port), ("routed", routed_port))}
    urls = {"direct": f"http://127.0.0.1:{plain_port}", "always_reason": f"http://127.0.0.1:{plain_port}",
            "reason_cache_router": f"http://127.0.0.1:{routed_port}"}
    result: dict = {"config": vars(args), "repeat_rate": repeat, "distinct": len(set(stream)),
                    "model_version": str(mv.version), "by_clients": {}}
    try:
        t0 = time.perf_counter()
        for name, proc in procs.items():
            wait_healthy(urls["direct" if name == "plain" else "reason_cache_router"], proc)
        print(f"  services up in {time.perf_counter() - t0:.1f} s (logs in {tmp})", flush=True)
        routed_health = httpx.get(f"{urls['reason_cache_router']}/healthz", timeout=10).json()
        warm = routed_health.get("cache", {}).get("warm", {}).get(str(mv.version), {})
        print(f"  warm-up of v{mv.version}: {warm.get('entries', 0)} entries, nightly warm-up time "
              f"{warm.get('warmup_seconds')} s, loaded in {warm.get('load_seconds')} s", flush=True)
        result["warm"] = warm
        for clients in [int(c) for c in args.clients.split(",")]:
            per: dict = {v: {"lat": [], "server": [], "queue": [], "hits": {}, "wall": 0.0} for v in VARIANTS}
            http = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=2 * clients))
            before = httpx.get(f"{urls['reason_cache_router']}/healthz", timeout=10).json()

            def one(variant: str, query: str, user: str):
                body = {"query": query, "k": 100, "user_id": user, "reasoning": variant != "direct"}
                t = time.perf_counter()
                r = http.post(f"{urls[variant]}/search", json=body)
                ms = (time.perf_counter() - t) * 1000.0
                r.raise_for_status()
                out = r.json()
                return ms, out

            # each client setting replays a draw of its own (the same Zipf law, the same head queries), so
            # the later setting finds in the cache what the earlier traffic left there, not its whole stream
            stream = [pool[i] for i in zipf_stream(pool, args.requests, args.zipf, args.seed, draw=clients - 1)]
            blocks = [stream[i:i + args.block] for i in range(0, len(stream), args.block)]
            lock = threading.Lock()
            for b, block in enumerate(blocks):
                order = VARIANTS[b % 3:] + VARIANTS[:b % 3]
                for variant in order:
                    t = time.perf_counter()
                    with ThreadPoolExecutor(clients) as ex:
                        outs = list(ex.map(lambda iq: one(variant, iq[1], f"bench{iq[0] % 97}"),
                                           enumerate(block)))
                    with lock:
                        per[variant]["wall"] += time.perf_counter() - t
                    for q, (ms, out) in zip(block, outs):
                        per[variant]["lat"].append(ms)
                        per[variant]["server"].append(out["latency_ms"])
                        if q in eval_texts and qid_of.get(q) in relevant:
                            truth = relevant[qid_of[q]]
                            got = [it["item_id"] for it in out["items"]]
                            per[variant]["hits"][q] = len(truth.intersection(got)) / len(truth)
            after = httpx.get(f"{urls['reason_cache_router']}/healthz", timeout=10).json()
            http.close()
            rows = {}
            for v in VARIANTS:
                lat = per[v]["lat"]
                rows[v] = {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                           "throughput_rps": len(lat) / per[v]["wall"],
                           "server_p50_ms": float(np.percentile(per[v]["server"], 50)),
                           "client_overhead_p50_ms": float(np.percentile(np.subtract(lat, per[v]["server"]), 50))}
            for v in VARIANTS:
                for key in ("p50_ms", "p95_ms"):
                    rows[v][f"{key}_ratio_to_direct"] = rows[v][key] / rows["direct"][key]
                rows[v]["throughput_ratio_to_direct"] = rows[v]["throughput_rps"] / rows["direct"]["throughput_rps"]
            c0, c1 = before.get("cache", {}), after.get("cache", {})
            lookups = (c1.get("hits", 0) - c0.get("hits", 0)) + (c1.get("misses", 0) - c0.get("misses", 0))
            r0, r1 = before.get("routing", {}), after.get("routing", {})
            reasoned = r1.get("reason", 0) - r0.get("reason", 0)
            routed_total = reasoned + r1.get("direct", 0) - r0.get("direct", 0)
            rows["reason_cache_router"]["cache_hit_rate"] = ((c1.get("hits", 0) - c0.get("hits", 0)) / lookups
                                                             if lookups else None)
            rows["reason_cache_router"]["reason_share_of_requests"] = reasoned / routed_total if routed_total else None
            qs = sorted(set(per["always_reason"]["hits"]) & set(per["reason_cache_router"]["hits"])
                        & set(per["direct"]["hits"]))
            quality = {}
            for v in VARIANTS:
                a = [per[v]["hits"][q] for q in qs]
                b = [per["always_reason"]["hits"][q] for q in qs]
                quality[v] = {"hit_rate@100": float(np.mean(a)) if a else None,
                              **({"vs_always": paired_bootstrap(a, b)} if a else {})}
            result["by_clients"][str(clients)] = {"latency": rows, "quality": quality, "eval_queries": len(qs)}
            print(f"  {clients} client(s), {len(stream)} requests per variant:")
            print(f"    {'variant':<22} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7} {'p50/dir':>8} {'p95/dir':>8} "
                  f"{'srv p50':>8} {'HitRate@100':>12}  CI vs always")
            for v in VARIANTS:
                r, qv = rows[v], quality[v]
                ci = qv.get("vs_always", {})
                print(f"    {v:<22} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['throughput_rps']:7.1f} "
                      f"{r['p50_ms_ratio_to_direct']:7.2f}x {r['p95_ms_ratio_to_direct']:7.2f}x "
                      f"{r['server_p50_ms']:8.1f} {qv['hit_rate@100'] if qv['hit_rate@100'] is not None else float('nan'):12.4f}"
                      f"  [{ci.get('ci_low', float('nan')):+.4f}, {ci.get('ci_high', float('nan')):+.4f}]")
            rc = rows["reason_cache_router"]
            print(f"    reason_cache_router: cache hit rate {rc['cache_hit_rate']}, share that reasoned "
                  f"{rc['reason_share_of_requests']} (of the requests computed or served from cache); "
                  f"{len(qs)} distinct eval queries in the HitRate", flush=True)
    finally:
        for proc in procs.values():
            stop(proc)
    path = C.write_result(NAME, result)
    print(f"  -> {path.relative_to(C.REPO_ROOT)}")


if __name__ == "__main__":
    main()
