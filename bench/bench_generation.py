"""Greedy reasoning: Hugging Face ``generate`` against the loops written for this model.

Per query: reason (greedy, 16-token CoT budget) then embed at ``<emb>``. Variants, each the
whole reason-then-embed:

- ``hf_generate``: ``lm.generate`` (same stopping rules: special tokens suppressed, ``</think>``
  ends the CoT), then one teacher-forced forward of prompt + CoT + ``</think><emb>``;
- ``hf_loop``: the HF decoder called per token with its dynamic KV cache, embedding in the same
  loop (the default before issue 26);
- ``static``: :mod:`components.model.fastgen`, the model's layers run by hand with a
  preallocated KV cache (the default now), without draft tokens;
- ``static_drafts`` (a ``--model`` with a ``cot_drafts.json``): the same loop checking the
  model's draft tokens, several per decoder call (:mod:`components.model.drafts`; batch 1 only);
- ``static_compiled`` (``--compile``): the same with the layer stack under ``torch.compile``;
- ``direct``: the direct embedding (empty CoT, one forward), the baseline every ratio is against.

On the untrained demo model (``ModelConfig()`` defaults, built by ``_common.get_model``; it
rarely closes its CoT, so nearly the whole budget is spent) and the demo world's queries, at
batch 1 and batch 32. Noise control: for each batch every variant runs back to back in a
rotating order; a ratio is the median of the per-batch paired ratios. The tokens of every
variant are checked equal to HF ``generate``'s before timing.

``--model DIR`` times a trained model instead (a saved LREM directory, e.g. a run's
``routing/model``): its CoTs are as long as it writes them, which is what serving pays. The
mean CoT length and the decoder calls per query are printed with the times.

    .venv/bin/python bench/bench_generation.py [--batches-1 24] [--batches-32 4] [--compile] [--model DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import torch  # noqa: E402

NAME = "generation"
COT_TOKENS = 16


def make_variants(model, compiled):
    def hf_generate(batch):
        cots = model.hf_generate_cot_ids(batch, COT_TOKENS)
        return model.embed_queries_after_cot_ids(batch, cots), cots

    drafts = model.drafts

    def loop(mode, with_drafts=False):
        def run(batch):
            model.generation = mode
            model.drafts = drafts if with_drafts else None
            with model._eval_mode():
                emb, cots = model._reason_and_embed(batch, COT_TOKENS, False, 1.0, None)
            model.generation = "static"
            model.drafts = drafts
            return emb.numpy(), cots
        return run

    def direct(batch):
        return model.embed_queries(batch, reasoning=False, batch_size=len(batch))[0], None

    variants = {"direct": direct, "hf_generate": hf_generate, "hf_loop": loop("hf_loop"), "static": loop("static")}
    if drafts is not None:  # the model's draft table (cot_drafts.json): used at batch 1 only
        variants["static_drafts"] = loop("static", with_drafts=True)
    if compiled is not None:
        def static_compiled(batch):
            original = model._static
            model._static = compiled
            try:
                return loop("static")(batch)
            finally:
                model._static = original
        variants["static_compiled"] = static_compiled
    return variants


def decoder_calls(variants, batches) -> dict[str, float]:
    """Decoder calls per query of the static loops (prefill, CoT steps, ``</think><emb>``), counted."""
    from components.model.fastgen import count_decoder_calls

    out = {}
    with count_decoder_calls() as count:
        for name in ("static", "static_drafts"):
            if name in variants:
                count[0] = 0
                for batch in batches:
                    variants[name](batch)
                out[name] = count[0] / sum(len(b) for b in batches)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches-1", type=int, default=24)
    ap.add_argument("--batches-32", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch default)")
    ap.add_argument("--compile", action="store_true", help="also time the static loop under torch.compile")
    ap.add_argument("--model", default=None, help="a trained LREM model directory (default: the untrained demo model)")
    args = ap.parse_args()
    C.set_threads(args.threads)
    device = C.pick_device()
    world, triplets = C.load_demo()
    if args.model:
        import contextlib
        import io

        from components.model.lrem import LREMModel

        with contextlib.redirect_stderr(io.StringIO()):  # the weight-loading progress bar
            model = LREMModel.load(args.model, device=str(device))
    else:
        _, key = C.get_model(C.pipeline_corpus(world, triplets), "pipeline")
        model = C.load_model(key, device)
    queries = world.split("eval")["text"].tolist() + world.split("train")["text"].tolist()
    compiled = None
    compile_s = None
    if args.compile:
        from components.model.fastgen import StaticGreedy

        compiled = StaticGreedy(model.lm)
        compiled._forward = torch.compile(compiled._forward, dynamic=True)
        t0 = time.perf_counter()
        with model._eval_mode():
            for size in (1, 32):  # compile both shapes before timing
                original = model._static
                model._static = compiled
                model._reason_and_embed(queries[:size], COT_TOKENS, False, 1.0, None)
                model._static = original
        compile_s = time.perf_counter() - t0
    variants = make_variants(model, compiled)
    desc = C.describe_model(model)
    print(f"[generation] device={device.type} threads={torch.get_num_threads()} model: "
          f"{args.model or 'untrained demo model'}, {desc['text']}; greedy, CoT budget {COT_TOKENS}"
          + (f"; torch.compile took {compile_s:.1f} s" if compile_s else ""), flush=True)
    # same tokens as HF generate, and the same embedding (up to float error), before anything is timed
    check = queries[:5]
    ref_emb, ref = variants["hf_generate"](check)
    agreement = {}
    for name in ("hf_loop", "static", "static_drafts", "static_compiled"):
        if name in variants:
            emb, cots = variants[name](check)
            agreement[name] = {"same_tokens": cots == ref, "max_abs_emb_diff": float(abs(emb - ref_emb).max())}
            print(f"  {name}: tokens equal to hf_generate: {cots == ref}; max |emb diff| "
                  f"{agreement[name]['max_abs_emb_diff']:.2e}")
    result = {"config": {"cot_tokens": COT_TOKENS, "threads": torch.get_num_threads(), "model": desc,
                         "model_dir": args.model, "compile_s": compile_s}, "agreement": agreement, "by_batch_size": {}}
    names = list(variants)
    for size, count in ((1, args.batches_1), (32, args.batches_32)):
        batches = [queries[i * size:(i + 1) * size] for i in range(count)]
        for name in names:  # warm-up
            variants[name](batches[0])
        times = {name: [] for name in names}
        cot_lengths = [len(c) for batch in batches for c in variants["static"](batch)[1]]
        calls = decoder_calls(variants, batches)
        for i, batch in enumerate(batches):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                t0 = C.now(device)
                variants[name](batch)
                times[name].append(C.now(device) - t0)
        med = {n: statistics.median(v) * 1e3 / size for n, v in times.items()}
        ratio_direct = {n: statistics.median(a / d for a, d in zip(times[n], times["direct"])) for n in names}
        ratio_hf = {n: statistics.median(a / g for a, g in zip(times[n], times["hf_generate"])) for n in names}
        mean_cot = statistics.mean(cot_lengths)
        result["by_batch_size"][str(size)] = {"ms_per_query_median": med, "ratio_to_direct": ratio_direct,
                                              "ratio_to_hf_generate": ratio_hf, "batches": count,
                                              "mean_cot_tokens": mean_cot,
                                              "share_full_budget": sum(n >= COT_TOKENS for n in cot_lengths)
                                              / len(cot_lengths), "decoder_calls_per_query": calls}
        print(f"  batch {size}: {count} batches; CoT {mean_cot:.1f} tokens on average "
              f"({result['by_batch_size'][str(size)]['share_full_budget']:.0%} spend the budget of {COT_TOKENS})")
        print(f"    decoder calls per query (static loops): "
              + ", ".join(f"{n} {c:.2f}" for n, c in calls.items()))
        print(f"    {'variant':<16} {'ms/query':>9} {'/direct':>8} {'/hf_generate':>13}")
        for n in names:
            print(f"    {n:<16} {med[n]:9.2f} {ratio_direct[n]:7.2f}x {ratio_hf[n]:12.2f}x")
    path = C.write_result(NAME, result)
    print(f"  -> {path.relative_to(C.REPO_ROOT)}")


if __name__ == "__main__":
    main()
