"""Query embedding latency: reasoning (16 greedy CoT tokens, then ``</think><emb>``) against direct.

``model.embed_queries(queries, reasoning=True, max_cot_tokens=16)`` against
``model.embed_queries(queries, reasoning=False)`` at batch 1 and batch 32, on the demo world's
evaluation queries and the untrained demo model (``ModelConfig()`` defaults, whatever they are:
now the 3.4M-parameter tiny Qwen2, 4 layers, hidden 256, short prompt template; built by
``_common.get_model``, no size is set here; an untrained model rarely closes its
CoT early, so the full 16-token budget is spent; the mean CoT length actually produced is
counted exactly from the tokens fed to the decoder, in an untimed pass). Reported: ms per
batch, ms per query, and reasoning / direct (the paper: 50 ms vs 15 ms in production, 3.3x).

Noise control: for every batch of queries the two modes run back to back (order alternating),
and the ratio is the median of the paired per-batch ratios. Peak memory: each of the four
(mode, batch size) variants once more in its own subprocess.

    .venv/bin/python bench/bench_query_latency.py [--batches-1 32] [--batches-32 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import torch  # noqa: E402

NAME = "query_latency"
COT_TOKENS = 16
PAPER = {"reasoning_ms": 50.0, "direct_ms": 15.0, "ratio": 50.0 / 15.0}


def demo_model_and_queries():
    world, triplets = C.load_demo()
    _, key = C.get_model(C.pipeline_corpus(world, triplets), "pipeline")
    queries = world.split("eval")["text"].tolist() + world.split("train")["text"].tolist()
    return key, queries


def batches_of(queries: list[str], size: int, count: int) -> list[list[str]]:
    return [queries[i * size:(i + 1) * size] for i in range(count)]


def run(model, batch: list[str], reasoning: bool):
    if reasoning:
        return model.embed_queries(batch, reasoning=True, max_cot_tokens=COT_TOKENS, batch_size=len(batch))
    return model.embed_queries(batch, reasoning=False, batch_size=len(batch))


def exact_cot_lengths(model, batch: list[str]) -> tuple[list[int], int]:
    """CoT tokens generated per query (counted from the decoder's inputs) and decoder calls."""
    fed: list[torch.Tensor] = []

    def pre_hook(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        fed.append(ids.detach().cpu())

    handle = model.decoder.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        run(model, batch, reasoning=True)
    finally:
        handle.remove()
    not_cot = {model.close_id, model.emb_id, model.pad_id}
    counts = [0] * len(batch)
    for ids in fed[1:]:  # fed[0] is the prompt
        for r, tok in enumerate(ids[:, 0].tolist()):
            counts[r] += tok not in not_cot
    return counts, len(fed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches-1", type=int, default=32, help="batches timed at batch size 1")
    ap.add_argument("--batches-32", type=int, default=8, help="batches timed at batch size 32")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch default); see README")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also write torch.profiler tables of both modes")
    ap.add_argument("--memory-variant", help=argparse.SUPPRESS)
    ap.add_argument("--memory-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = C.pick_device()
    counts = {1: args.batches_1, 32: args.batches_32}

    if args.memory_variant:
        def setup(reasoning: bool, size: int):
            def _setup():
                key, queries = demo_model_and_queries()
                model = C.load_model(key, device)
                bs = batches_of(queries, size, counts[size])
                run(model, bs[0], reasoning)  # warm-up
                return lambda: {"batches": len([run(model, b, reasoning) for b in bs])}
            return _setup

        C.memory_child_main(args, {f"{'reasoning' if r else 'direct'}_b{s}": setup(r, s)
                                   for r in (True, False) for s in (1, 32)})
        return

    C.set_threads(args.threads)
    key, queries = demo_model_and_queries()
    model = C.load_model(key, device)
    desc = C.describe_model(model)
    print(f"[query latency] device={device.type} threads={torch.get_num_threads()} model: {desc['text']}; "
          f"cot budget={COT_TOKENS} greedy; batches: {counts[1]} x 1, {counts[32]} x 32", flush=True)
    result: dict = {"config": {"cot_tokens": COT_TOKENS, "batches": counts, "device": device.type,
                               "threads": torch.get_num_threads(), "model": desc},
                    "by_batch_size": {}, "paper": PAPER}
    for size in (1, 32):
        bs = batches_of(queries, size, counts[size])
        run(model, bs[0], True)  # warm-up
        run(model, bs[0], False)
        t = {"reasoning": [], "direct": []}
        for i, b in enumerate(bs):
            for mode in (("reasoning", "direct") if i % 2 == 0 else ("direct", "reasoning")):
                t0 = C.now(device)
                run(model, b, mode == "reasoning")
                t[mode].append(C.now(device) - t0)
        paired = [r / d for r, d in zip(t["reasoning"], t["direct"])]
        lengths, calls = [], []
        for b in bs:
            n, c = exact_cot_lengths(model, b)
            lengths += n
            calls.append(c)
        med = {m: statistics.median(v) * 1e3 for m, v in t.items()}
        row = {
            "ms_per_batch": {m: C.summarise([x * 1e3 for x in v]) for m, v in t.items()},
            "ms_per_query_median": {m: med[m] / size for m in med},
            "ratio_reasoning_over_direct": {"median_paired": statistics.median(paired),
                                            "of_medians": med["reasoning"] / med["direct"]},
            "mean_cot_tokens": statistics.fmean(lengths),
            "share_of_queries_with_full_budget": sum(n == COT_TOKENS for n in lengths) / len(lengths),
            "decoder_calls_per_batch_mean": statistics.fmean(calls),
            "ms_per_decode_step": (med["reasoning"] - med["direct"]) / max(statistics.fmean(calls) - 1, 1),
        }
        result["by_batch_size"][str(size)] = row
        print(f"  batch {size:>2}: reasoning {med['reasoning']:7.1f} ms/batch ({med['reasoning'] / size:6.2f} ms/query)"
              f" | direct {med['direct']:7.1f} ms/batch ({med['direct'] / size:6.2f} ms/query)"
              f" | reasoning/direct {row['ratio_reasoning_over_direct']['median_paired']:.2f}x (median paired)"
              f" | mean CoT {row['mean_cot_tokens']:.2f} tokens, {row['share_of_queries_with_full_budget']:.0%} "
              f"at {COT_TOKENS}; {row['decoder_calls_per_batch_mean']:.1f} decoder calls", flush=True)
    print(f"  paper (production): reasoning {PAPER['reasoning_ms']:.0f} ms vs direct {PAPER['direct_ms']:.0f} ms "
          f"= {PAPER['ratio']:.1f}x")

    if args.profile:
        from torch.profiler import profile

        b = batches_of(queries, 32, 1)[0]
        for mode in ("reasoning", "direct"):
            with profile() as prof:
                run(model, b, mode == "reasoning")
            path = C.RESULTS / f"{NAME}_profile_{mode}_b32.txt"
            path.write_text(prof.key_averages().table(sort_by="cpu_time_total", row_limit=30))
            print(f"  profile: {path.relative_to(C.REPO_ROOT)}")

    if not args.no_memory:
        extra = ["--batches-1", str(args.batches_1), "--batches-32", str(args.batches_32),
                 "--threads", str(args.threads)]
        mem = {}
        for variant in ("reasoning_b1", "direct_b1", "reasoning_b32", "direct_b32"):
            mem[variant] = C.run_memory_child(Path(__file__), variant, extra)
            print(f"  memory {variant:<14} {C.fmt_mem(mem[variant])}")
        result["memory"] = mem
    path = C.write_result(NAME, result)
    print(f"  -> {path.relative_to(C.REPO_ROOT)}")


if __name__ == "__main__":
    main()
