"""How the index build grows to a million items: encoding shards, Milvus insert, index build, search.

For each ``--sizes`` N (default 10k, 100k, 1M), a catalog of N items is generated with the demo
world's item template (``components.data.generate``: brand + attributes + product type, the same
price and brand rules; titles repeat once the combinations run out, as they would in a big catalog).

Encoding (the tiny LREM of ``configs/demo.yaml``, untrained: throughput does not depend on the
weights): ``--encode-sample`` items of the catalog are encoded by the real shard function
(``components.index.step.encode_shard``, files in a scratch folder) with 1 shard in one process and
with 2 shards in 2 processes at once; items/s of each, and against the bare forward loop
(``model.lm.base_model`` over the same pre-tokenised batches, one process) measured in the same run.
Each process's peak RSS (``ru_maxrss``) is recorded.

Milvus (a Milvus Lite server of its own, on ``--port``): the N vectors are the encoded sample's,
repeated and perturbed (``x + 0.05 * noise``, renormalised) when N is larger than the sample (said
in the output); inserted (4096 rows a request), flushed; then for FLAT, HNSW and IVF_FLAT (``--index``):
index build + load time, ``--queries`` query vectors (held-out items' encodings, perturbed the same
way) searched one at a time at top 100: latency p50/p95, and recall@100 against FLAT, i.e. the exact cosine top 100 computed with numpy (a hit counts
when its similarity reaches FLAT's 100th: ties between repeated titles are not misses). The server's
peak RSS (VmHWM) is read from /proc. Each step has a time limit (``--step-timeout``): one that
does not finish is reported as such.

    nice -n 10 .venv/bin/python bench/bench_million_items.py --sizes 10000,100000
    nice -n 10 .venv/bin/python bench/bench_million_items.py --sizes 1000000 --index FLAT,IVF_FLAT
    .venv/bin/python bench/bench_million_items.py --tables bench/results/million_items.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402

NAME = "million_items"
TOP_K = 100
NOISE = 0.05


# ------------------------------------------------------------------------------ the catalog
def make_catalog(n_items: int, seed: int = 20251016) -> list[dict]:
    """N items with the demo world's item template (its catalog builder, with N items)."""
    from components.config import WorldConfig
    from components.data import generate as g

    rng = random.Random(seed)
    departments = sorted({pt.department for pt in g.PRODUCT_TYPES})
    standard, premium = g._make_brands(rng, departments)
    items, _ = g._build_catalog(WorldConfig(n_items=n_items, seed=seed), rng, standard, premium)
    return [it.row() for it in items]


def tiny_model_dir(root: Path, titles: list[str]) -> Path:
    from components.config import load_config
    from components.model.lrem import LREMModel

    target = root / "model"
    if not (target / "lrem_config.json").exists():
        LREMModel.create(load_config("configs/demo.yaml").model, titles[:20000]).save(target)
    return target


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# ------------------------------------------------------------------------------ encoding
def _encode_worker(model_dir: str, shard: int, shards: int, ids: list[str], titles: list[str], scratch: str,
                   batch: int, threads: int, out: mp.Queue) -> None:
    import torch

    from components.index.step import encode_shard
    from components.model.lrem import LREMModel

    torch.set_num_threads(threads)
    model = LREMModel.load(model_dir)
    t0 = time.perf_counter()
    manifest = encode_shard(Path(scratch), shard, shards, ids, titles,
                            lambda chunk: model.embed_items(chunk, batch_size=batch), f"bench:{model_dir}", batch)
    out.put({"shard": shard, "rows": manifest["rows"], "seconds": time.perf_counter() - t0,
             "peak_rss_mb": _peak_rss_mb(), "threads": threads})


def encode_sharded(model_dir: Path, ids: list[str], titles: list[str], shards: int, batch: int,
                   scratch: Path) -> dict:
    """The shard function in ``shards`` processes at once; items/s over the wall time of all."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // shards)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    procs = [ctx.Process(target=_encode_worker, args=(str(model_dir), s, shards, ids, titles, str(scratch), batch,
                                                      threads, queue)) for s in range(shards)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - t0  # includes each process's start and model load
    encode_s = max(r["seconds"] for r in results)
    return {"shards": shards, "threads_per_process": threads, "items": len(ids), "wall_s": round(wall, 2),
            "encode_s": round(encode_s, 2), "items_per_s": round(len(ids) / encode_s, 1),
            "processes": sorted(results, key=lambda r: r["shard"])}


def bare_forward(model_dir: Path, titles: list[str], batch: int) -> dict:
    """The bare loop: pre-tokenised batches through ``model.lm.base_model`` under no_grad (this process)."""
    import torch

    from components.model.lrem import LREMModel

    torch.set_num_threads(os.cpu_count() or 1)
    model = LREMModel.load(model_dir)
    batches = [model.item_batch(titles[i:i + batch]) for i in range(0, len(titles), batch)]
    base = model.lm.base_model
    t0 = time.perf_counter()
    with torch.no_grad():
        for ids, mask in batches:
            base(input_ids=ids, attention_mask=mask)
    seconds = time.perf_counter() - t0
    return {"items": len(titles), "seconds": round(seconds, 2), "items_per_s": round(len(titles) / seconds, 1)}


def load_vectors(scratch: Path, shards: int, ids: list[str], model_dir: Path) -> np.ndarray:
    """The shard files read back as build_index's gathering task reads them (every shard checked)."""
    from components.index.step import gather_shards

    return np.concatenate([v for _, v in gather_shards(scratch, shards, ids, f"bench:{model_dir}")])


def grow(sample: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` vectors: the sample's rows, then perturbed copies of them, unit length."""
    if n <= len(sample):
        return sample[:n].copy()
    rng = np.random.default_rng(seed)
    out = np.empty((n, sample.shape[1]), np.float32)
    out[:len(sample)] = sample
    for start in range(len(sample), n, 65536):
        end = min(n, start + 65536)
        base = sample[np.arange(start, end) % len(sample)]
        chunk = base + NOISE * rng.standard_normal(base.shape).astype(np.float32) / np.sqrt(sample.shape[1])
        out[start:end] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


# ------------------------------------------------------------------------------ Milvus
def _server_peak_mb(pid: int | None) -> float | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _server_rss_mb(pid: int | None) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, TypeError):
        return None
    return None


def exact_kth_similarity(vectors: np.ndarray, queries: np.ndarray, k: int = TOP_K, block: int = 64) -> np.ndarray:
    """Each query's k-th largest cosine similarity over all vectors (both unit length): what FLAT returns,
    computed exactly with numpy, so recall needs no FLAT search per query."""
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), block):
        sims = queries[start:start + block] @ vectors.T
        out[start:start + block] = -np.partition(-sims, k - 1, axis=1)[:, k - 1]
    return out


def milvus_run(uri: str, pid: int | None, vectors: np.ndarray, queries: np.ndarray, index_types: list[str],
               step_timeout: float, flat_queries: int | None = None) -> dict:
    from pymilvus import DataType, MilvusClient

    from components.index.collections import index_build_params

    client = MilvusClient(uri=uri, timeout=max(600.0, step_timeout))
    out: dict = {"rows": len(vectors), "dim": int(vectors.shape[1]), "indexes": {}}
    name = f"bench_{len(vectors)}"
    if client.has_collection(name):
        client.drop_collection(name)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("item_id", DataType.INT64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
    client.create_collection(name, schema=schema, consistency_level="Strong")
    rss_before = _server_rss_mb(pid)
    t0 = time.perf_counter()
    for start in range(0, len(vectors), 4096):
        chunk = vectors[start:start + 4096]
        client.insert(name, [{"item_id": start + i, "embedding": v} for i, v in enumerate(chunk.tolist())])
    client.flush(name)
    out["insert_s"] = round(time.perf_counter() - t0, 2)
    out["insert_rows_per_s"] = round(len(vectors) / out["insert_s"], 1)
    out["server_rss_after_insert_mb"] = _server_rss_mb(pid)
    print(f"  insert: {out['insert_s']} s ({out['insert_rows_per_s']} rows/s); server RSS {rss_before} -> "
          f"{out['server_rss_after_insert_mb']} MB", flush=True)
    out["server_rss_before_mb"] = rss_before
    t0 = time.perf_counter()
    kth = exact_kth_similarity(vectors, queries)  # the recall reference (exact cosine top 100, as FLAT)
    out["exact_reference_s"] = round(time.perf_counter() - t0, 2)
    for kind in index_types:
        res: dict = {}
        try:
            client.release_collection(name)
        except Exception:
            pass
        try:
            client.drop_index(name, "embedding")
        except Exception:
            pass
        params = index_build_params(kind, len(vectors), int(vectors.shape[1]))
        ip = client.prepare_index_params()
        ip.add_index(field_name="embedding", index_name="embedding", index_type=kind, metric_type="COSINE",
                     params=params)
        t0 = time.perf_counter()
        try:
            client.create_index(name, ip, timeout=step_timeout)
            res["build_s"] = round(time.perf_counter() - t0, 2)
            t1 = time.perf_counter()
            client.load_collection(name, timeout=step_timeout)
            res["load_s"] = round(time.perf_counter() - t1, 2)
        except Exception as exc:  # a build past the limit: said, not hidden
            res["error"] = f"{type(exc).__name__}: {str(exc)[:200]} after {time.perf_counter() - t0:.0f}s"
            out["indexes"][kind] = res
            print(f"  {kind}: {res['error']}", flush=True)
            continue
        res["params"] = params
        sweep = search_param_sweep(kind, params)
        res["search"] = []
        for sp in sweep:
            lat, hits, sims = [], [], []
            searched = queries[:flat_queries] if kind == "FLAT" and flat_queries else queries
            for q in searched:
                t1 = time.perf_counter()
                r = client.search(name, data=[q.tolist()], limit=TOP_K, anns_field="embedding",
                                  search_params={"metric_type": "COSINE", "params": sp})
                lat.append(time.perf_counter() - t1)
                hits.append(np.array([h.id for h in r[0]]))
                sims.append(np.array([h.distance for h in r[0]]))
            row = {"params": sp, "p50_ms": round(1000 * statistics.median(lat), 2),
                   "p95_ms": round(1000 * float(np.percentile(lat, 95)), 2), "queries": len(searched)}
            # a hit counts when its similarity reaches the exact 100th (ties between repeated titles)
            row["recall_at_100"] = round(float(np.mean([
                min(1.0, np.sum(s >= ref - 1e-5) / TOP_K) for s, ref in zip(sims, kth)])), 4)
            res["search"].append(row)
            print(f"  {kind} {sp}: p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, recall@100 "
                  f"{row.get('recall_at_100')}", flush=True)
        res["server_peak_rss_mb"] = _server_peak_mb(pid)
        out["indexes"][kind] = res
        print(f"  {kind}: build {res['build_s']} s, load {res['load_s']} s", flush=True)
    client.drop_collection(name)
    client.close()
    return out


def search_param_sweep(kind: str, params: dict) -> list[dict]:
    if kind == "HNSW":
        return [{"ef": ef} for ef in (100, 200, 400)]
    if kind.startswith("IVF"):
        nlist = params["nlist"]
        return [{"nprobe": p} for p in sorted({min(nlist, x) for x in (16, 32, 64, max(16, nlist // 4))})]
    return [{}]


# ------------------------------------------------------------------------------ tables
def markdown(report: dict) -> str:
    """The report's tables (docs/scaling.md)."""
    lines = []
    enc = report.get("encode")
    if enc:
        base = enc["bare_forward"]
        lines += ["| encoding | processes x threads | items/s | vs bare loop | peak RSS per process (MB) |",
                  "| --- | --- | --- | --- | --- |",
                  f"| bare forward loop (pre-tokenised) | 1 x {report['machine'].get('cpu_count')} | "
                  f"{base['items_per_s']} | 1.00 | |"]
        for r in enc["runs"]:
            lines.append(f"| encode_shard, {r['shards']} shard(s) | {r['shards']} x {r['threads_per_process']} | "
                         f"{r['items_per_s']} | {r['ratio_to_bare_loop']:.2f} | "
                         f"{', '.join(str(round(p['peak_rss_mb'])) for p in r['processes'])} |")
        lines.append("")
    lines += ["| items | vectors | insert s (rows/s) | index | build + load s | search params | p50 ms | p95 ms | "
              "recall@100 vs FLAT | server peak RSS MB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in report.get("milvus", []):
        for kind, res in run["indexes"].items():
            if "error" in res:
                lines.append(f"| {run['rows']} | {run['vectors']} | {run['insert_s']} ({run['insert_rows_per_s']}) | "
                             f"{kind} | {res['error']} | | | | | |")
                continue
            for row in res["search"]:
                lines.append(f"| {run['rows']} | {run['vectors']} | {run['insert_s']} ({run['insert_rows_per_s']}) | "
                             f"{kind} {res['params'] or ''} | {res['build_s']} + {res['load_s']} | {row['params'] or '-'} | "
                             f"{row['p50_ms']} | {row['p95_ms']} | {row.get('recall_at_100')} | "
                             f"{round(res['server_peak_rss_mb'] or 0)} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ main
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="catalog sizes, comma-separated")
    ap.add_argument("--encode-sample", type=int, default=20000, help="items encoded (1 and 2 shards)")
    ap.add_argument("--batch-size", type=int, default=256, help="index.batch_size")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--index", default="FLAT,HNSW,IVF_FLAT", help="index types (FLAT first: the reference)")
    ap.add_argument("--port", type=int, default=0, help="Milvus Lite port (0: a free one)")
    ap.add_argument("--step-timeout", type=float, default=1800.0, help="seconds an index build may take")
    ap.add_argument("--flat-queries", type=int, default=0,
                    help="FLAT's latency on the first N queries only (0: all); recall is against the exact "
                         "numpy top 100 in every case")
    ap.add_argument("--skip-encode", action="store_true", help="reuse the encoded sample of an earlier run")
    ap.add_argument("--out", default=str(C.RESULTS / f"{NAME}.json"))
    ap.add_argument("--tables", help="print the tables of an earlier run's JSON and exit")
    args = ap.parse_args()
    if args.tables:
        print(markdown(json.loads(Path(args.tables).read_text())))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    work = C.RESULTS / "cache" / NAME
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": C.machine(), "args": vars(args), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}

    enc_path = work / f"sample-{args.encode_sample}.npy"
    if not args.skip_encode or not enc_path.exists():
        # the catalog is needed for encoding only: the Milvus part grows the encoded sample
        t0 = time.perf_counter()
        catalog = make_catalog(max(max(sizes), args.encode_sample + args.queries))
        report["catalog"] = {"items": len(catalog), "seconds": round(time.perf_counter() - t0, 1),
                             "distinct_titles": len({it["title"] for it in catalog}),
                             "peak_rss_mb": round(_peak_rss_mb(), 1)}
        print(f"catalog: {report['catalog']}", flush=True)
        titles = [it["title"] for it in catalog]
        ids = [it["item_id"] for it in catalog]
        model_dir = tiny_model_dir(work, titles)
        sample_ids, sample_titles = ids[:args.encode_sample], titles[:args.encode_sample]
        query_titles = titles[args.encode_sample:args.encode_sample + args.queries]
        base = bare_forward(model_dir, sample_titles, args.batch_size)
        print(f"bare forward loop: {base}", flush=True)
        runs = []
        for shards in (1, 2):
            r = encode_sharded(model_dir, sample_ids, sample_titles, shards, args.batch_size, work / f"shards{shards}")
            r["ratio_to_bare_loop"] = round(r["items_per_s"] / base["items_per_s"], 3)
            runs.append(r)
            print(f"encode {shards} shard(s): {r['items_per_s']} items/s ({r['ratio_to_bare_loop']} x bare loop); "
                  f"peak RSS {[p['peak_rss_mb'] for p in r['processes']]} MB", flush=True)
        runs[1]["speedup_vs_1_shard"] = round(runs[1]["items_per_s"] / runs[0]["items_per_s"], 3)
        one = load_vectors(work / "shards1", 1, sample_ids, model_dir)
        two = load_vectors(work / "shards2", 2, sample_ids, model_dir)
        report["encode"] = {"bare_forward": base, "runs": runs, "two_shards_equal_one": bool(np.array_equal(one, two))}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        np.save(enc_path, one)
        qvec = bare_queries(model_dir, query_titles, args.batch_size)
        np.save(work / "queries.npy", qvec)
    sample = np.load(enc_path)
    queries = np.load(work / "queries.npy")

    from components.index.server import server_status, start_server, stop_server

    os.environ["LREM_HOME"] = str(work / "home")
    uri = f"http://127.0.0.1:{args.port or free_port()}"
    # an empty data dir: a collection left by an interrupted run would be loaded at start (minutes at 1M)
    shutil.rmtree(work / "home" / "milvus", ignore_errors=True)
    start_server(uri, data_dir=work / "home" / "milvus", timeout=120)
    pid = server_status(uri).get("pid")
    report["milvus"] = []
    try:
        for n in sizes:
            vectors = grow(sample, n, seed=n)
            q = queries + NOISE * np.random.default_rng(1).standard_normal(queries.shape).astype(np.float32) / np.sqrt(queries.shape[1])
            q /= np.linalg.norm(q, axis=1, keepdims=True)
            print(f"Milvus, {n} items ({'encoded' if n <= len(sample) else f'{len(sample)} encoded, the rest perturbed copies'}):",
                  flush=True)
            run = milvus_run(uri, pid, vectors, q, args.index.split(","), args.step_timeout, args.flat_queries)
            run["vectors"] = "encoded" if n <= len(sample) else f"{len(sample)} encoded + perturbed copies"
            report["milvus"].append(run)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=1))
            del vectors
    finally:
        stop_server()
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(markdown(report))
    print(f"wrote {args.out}")


def bare_queries(model_dir: Path, titles: list[str], batch: int) -> np.ndarray:
    """Query vectors: held-out items' encodings (a query that names an item's words)."""
    from components.model.lrem import LREMModel

    return LREMModel.load(model_dir).embed_items(titles, batch_size=batch)


if __name__ == "__main__":
    main()
