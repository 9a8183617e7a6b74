"""Item encoding throughput: ``model.embed_items(titles, batch_size=B)`` against a bare forward loop.

TARGET (the issue): throughput of embed_items / throughput of a bare loop calling
``model.lm.base_model(input_ids=..., attention_mask=...)`` under ``torch.no_grad`` over the
SAME pre-tokenised batches (already on the device) >= 0.9.

embed_items also tokenises, moves batches to the device, builds position ids, pools at
``<emb>``, normalises and copies back; so two more variants are timed to split the gap:
  * ``tokenise_bare_forward``: ``item_batch`` + device copy + the bare forward (the ratio of
    embed_items to it is the overhead that is not tokenisation);
  * ``encode_pretokenised``: ``model.encode`` on the pre-tokenised batches (everything but
    tokenisation, the copy back and the Python loop).
(An earlier replica of embed_items with one tokenizer call per batch is gone: ``item_batch``
itself tokenises a batch in one call now. Only the model's public API is used here.)

Noise control (the CPU is shared): the titles are cut into chunks of ``--chunk-batches``
batches; every chunk is run by each variant back to back, in a random order drawn afresh for
each chunk (a fixed rotation would always put the same variant after the same one, and what
ran just before matters here: see the README), so a burst of load from other processes hits
the variants of one chunk alike. A ratio is the median over
chunks of the paired per-chunk ratios; the ratio of summed times is printed too. Each
embed_items call is a real ``embed_items(chunk_titles, batch_size=B)`` call (its fixed cost
per call is paid once per chunk, which slightly favours the baseline).
Peak memory: embed_items and the bare loop once more over all titles, each in its own subprocess.

    .venv/bin/python bench/bench_item_encoding.py [--n-items 2048] [--batch-size 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import torch  # noqa: E402

NAME = "item_encoding"
TARGET = 0.9


def titles_for(n_items: int) -> list[str]:
    world, _ = C.load_demo()
    titles = world.catalog["title"].tolist()
    return titles[:n_items] if n_items else titles


def item_model():
    """The demo model with its tokenizer trained on the (whole) catalog's titles."""
    world, _ = C.load_demo()
    return C.get_model(world.catalog["title"].tolist(), "items")


def pretokenise(model, titles, batch_size, device):
    return [tuple(t.to(device) for t in model.item_batch(titles[s:s + batch_size]))
            for s in range(0, len(titles), batch_size)]


def run_embed(model, titles, batch_size):
    return model.embed_items(titles, batch_size=batch_size)


def run_bare(model, batches):
    decoder = model.lm.base_model
    with torch.no_grad():
        for ids, mask in batches:
            decoder(input_ids=ids, attention_mask=mask)


def run_tokenise_bare(model, titles, batch_size, device):
    decoder = model.lm.base_model
    with torch.no_grad():
        for s in range(0, len(titles), batch_size):
            ids, mask = model.item_batch(titles[s:s + batch_size])
            decoder(input_ids=ids.to(device), attention_mask=mask.to(device))


def run_encode(model, batches):
    with torch.no_grad():
        for ids, mask in batches:
            model.encode(ids, mask)


def breakdown(model, titles, batch_size, device, reps: int = 3) -> dict[str, float]:
    """Seconds per batch of each piece of embed_items outside the decoder (medians of ``reps``)."""
    import time

    chunks = [titles[s:s + batch_size] for s in range(0, len(titles), batch_size)]
    out: dict[str, list[float]] = {"item_batch (tokenise + left-pad)": [], "tokenizer call alone, per title": [],
                                   "tokenizer batch call": []}
    for _ in range(reps):
        t0 = time.perf_counter()
        for ch in chunks:
            model.item_batch(ch)
        out["item_batch (tokenise + left-pad)"].append((time.perf_counter() - t0) / len(chunks))
        t0 = time.perf_counter()
        for ch in chunks:
            for t in ch:
                model.tokenizer(t, add_special_tokens=False)
        out["tokenizer call alone, per title"].append((time.perf_counter() - t0) / len(chunks))
        t0 = time.perf_counter()
        for ch in chunks:
            model.tokenizer(list(ch), add_special_tokens=False)
        out["tokenizer batch call"].append((time.perf_counter() - t0) / len(chunks))
    return {k: statistics.median(v) for k, v in out.items()}


def profile_embed(model, titles, batch_size, device, out: Path) -> None:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        model.embed_items(titles, batch_size=batch_size)
    out.write_text(prof.key_averages().table(sort_by="cpu_time_total", row_limit=40))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-items", type=int, default=2048, help="first N catalog titles (0: all 6000)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--chunk-batches", type=int, default=2, help="batches per paired chunk")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the titles")
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads (default 1: on the shared 2-core box 2 threads are ~2x slower "
                         "and very noisy; 0 = torch default)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--profile", action="store_true", help="also write a torch.profiler table of embed_items")
    ap.add_argument("--memory-variant", help=argparse.SUPPRESS)
    ap.add_argument("--memory-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = C.pick_device()
    B = args.batch_size

    if args.memory_variant:  # subprocess: one variant, one pass over the titles
        def setup_embed():
            _, key = item_model()
            model, titles = C.load_model(key, device), titles_for(args.n_items)
            run_embed(model, titles[:B], B)  # warm-up
            return lambda: {"n": len(run_embed(model, titles, B))}

        def setup_bare():
            _, key = item_model()
            model, titles = C.load_model(key, device), titles_for(args.n_items)
            batches = pretokenise(model, titles, B, device)
            run_bare(model, batches[:1])
            return lambda: run_bare(model, batches)

        C.memory_child_main(args, {"embed_items": setup_embed, "bare_forward": setup_bare})
        return

    C.set_threads(args.threads)
    titles = titles_for(args.n_items)
    model, key = item_model()
    model.to(device).eval()
    batches = pretokenise(model, titles, B, device)
    n = len(titles)
    tokens = int(sum(int(m.sum()) for _, m in batches))
    padded = int(sum(m.numel() for _, m in batches))
    print(f"[item encoding] device={device.type} threads={torch.get_num_threads()} items={n} batch={B} "
          f"batches={len(batches)} tokens={tokens} (padded {padded}) "
          f"params={sum(p.numel() for p in model.parameters()):,}", flush=True)

    cb = args.chunk_batches
    chunks = [(titles[i * B:(i + cb) * B], batches[i:i + cb]) for i in range(0, len(batches), cb)]
    variants = {
        "embed_items": lambda ch: run_embed(model, ch[0], B),
        "bare_forward": lambda ch: run_bare(model, ch[1]),
        "tokenise_bare_forward": lambda ch: run_tokenise_bare(model, ch[0], B, device),
        "encode_pretokenised": lambda ch: run_encode(model, ch[1]),
    }
    names = list(variants)
    for name in names:  # warm-up
        variants[name](chunks[0])
    times: dict[str, list[float]] = {k: [] for k in names}  # per (round, chunk)
    rng = random.Random(0)
    for r in range(args.rounds):
        for c, ch in enumerate(chunks):
            for name in rng.sample(names, len(names)):  # a fresh random order per chunk
                t0 = C.now(device)
                variants[name](ch)
                times[name].append(C.now(device) - t0)
        done = slice(r * len(chunks), (r + 1) * len(chunks))
        print(f"  round {r + 1}: " + ", ".join(f"{k} {n / sum(times[k][done]):.0f}" for k in names) + " items/s",
              flush=True)

    def ratio(base: str) -> dict:
        paired = [b / e for b, e in zip(times[base], times["embed_items"])]
        return {"median_paired": statistics.median(paired), "of_sums": sum(times[base]) / sum(times["embed_items"]),
                "paired_quartiles": statistics.quantiles(paired, n=4) if len(paired) > 1 else paired}

    thr = {k: n * args.rounds / sum(v) for k, v in times.items()}
    ratios = {base: ratio(base) for base in names[1:]}
    met = ratios["bare_forward"]["median_paired"] >= TARGET
    result = {
        "config": {"n_items": n, "batch_size": B, "chunk_batches": cb, "rounds": args.rounds,
                   "device": device.type, "threads": torch.get_num_threads(), "tokens": tokens,
                   "padded_tokens": padded},
        "seconds_per_chunk": times,
        "items_per_s": thr,
        "ratios_embed_items_over": ratios,
        "target": {"ratio": "embed_items / bare_forward throughput (median of paired chunks)", "min": TARGET,
                   "value": ratios["bare_forward"]["median_paired"], "met": met},
    }
    labels = {"embed_items": "embed_items", "bare_forward": "bare forward (pre-tokenised, on device)",
              "tokenise_bare_forward": "item_batch + bare forward", "encode_pretokenised": "model.encode (pre-tokenised)"}
    for k in names:
        print(f"  {labels[k]:<40} {thr[k]:8.0f} items/s")
    for base in names[1:]:
        rr = ratios[base]
        tag = (f"   TARGET >= {TARGET}: {'met' if met else 'MISSED'}" if base == "bare_forward" else "")
        print(f"  ratio embed_items / {labels[base]:<40} = {rr['median_paired']:.3f} (median paired; "
              f"of sums {rr['of_sums']:.3f}){tag}")
    parts = breakdown(model, titles[:8 * B], B, device)
    fwd = statistics.median(times["bare_forward"]) / cb
    result["breakdown_seconds_per_batch"] = {**parts, "bare forward (median)": fwd}
    print("  per batch of %d: bare forward %.1f ms; " % (B, fwd * 1e3)
          + "; ".join(f"{k} {v * 1e3:.1f} ms" for k, v in parts.items()))

    if args.profile:
        path = C.RESULTS / f"{NAME}_profile.txt"
        profile_embed(model, titles[:4 * B], B, device, path)
        result["profile"] = str(path.relative_to(C.REPO_ROOT))
        print(f"  profile table: {result['profile']}")

    if not args.no_memory:
        extra = ["--n-items", str(args.n_items), "--batch-size", str(B), "--threads", str(args.threads)]
        mem = {v: C.run_memory_child(Path(__file__), v, extra) for v in ("embed_items", "bare_forward")}
        result["memory"] = mem
        for v, rep in mem.items():
            print(f"  memory {v:<13} {C.fmt_mem(rep)}")
    path = C.write_result(NAME, result)
    print(f"  -> {path.relative_to(C.REPO_ROOT)}")


if __name__ == "__main__":
    main()
