"""Run every benchmark (each in its own process), then print one summary table.

    .venv/bin/python bench/run_all.py [--no-memory] [--threads 1]

Writes bench/results/<benchmark>.json (by each script) and bench/results/summary.json + summary.txt.
About 3 minutes on the shared 2-core CPU box with the previous 2 x 128 default backbone; longer with
the current 4 x 256 one (not re-timed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

BENCHES = [("item_encoding", "bench_item_encoding.py"), ("cold_start", "bench_cold_start.py"),
           ("query_latency", "bench_query_latency.py"), ("grpo", "bench_grpo.py")]


def mem_cell(report: dict | None) -> str:
    if not report:
        return "-"
    s = f"{report['peak_rss_mb']:.0f}"
    if report.get("peak_minus_rss_before_mb") is not None:
        s += f" (+{report['peak_minus_rss_before_mb']:.0f})"
    if report.get("cuda_max_allocated_mb") is not None:
        s += f" (cuda {report['cuda_max_allocated_mb']:.0f})"
    return s


def rows_for(name: str, r: dict) -> list[list[str]]:
    mem = r.get("memory", {})
    if name == "item_encoding":
        t, thr = r["target"], r["items_per_s"]
        return [["item encoding", f"embed_items {thr['embed_items']:.0f} items/s",
                 f"bare fwd {thr['bare_forward']:.0f} items/s", f"{t['value']:.3f}", f">= {t['min']}",
                 "met" if t["met"] else "MISSED",
                 f"{mem_cell(mem.get('embed_items'))} / {mem_cell(mem.get('bare_forward'))}"],
                ["  (with tokenising)", f"embed_items {thr['embed_items']:.0f} items/s",
                 f"tok+fwd {thr['tokenise_bare_forward']:.0f} items/s",
                 f"{r['ratios_embed_items_over']['tokenise_bare_forward']['median_paired']:.3f}", "-", "info", ""]]
    if name == "cold_start":
        t, sps = r["target"], r["steps_per_s"]
        return [["cold start", f"train_cold_start {sps['train_cold_start_mean']:.2f} steps/s",
                 f"bare {sps['bare_loop_mean']:.2f} steps/s", f"{t['value']:.3f}", f">= {t['min']}",
                 "met" if t["met"] else "MISSED",
                 f"{mem_cell(mem.get('train_cold_start'))} / {mem_cell(mem.get('bare_loop'))}"]]
    if name == "query_latency":
        out = []
        for size in ("1", "32"):
            b = r["by_batch_size"][size]
            ms = {m: v["median"] for m, v in b["ms_per_batch"].items()}
            out.append([f"query latency b{size}",
                        f"reasoning {ms['reasoning']:.1f} ms ({ms['reasoning'] / int(size):.2f}/q)",
                        f"direct {ms['direct']:.1f} ms ({ms['direct'] / int(size):.2f}/q)",
                        f"{b['ratio_reasoning_over_direct']['median_paired']:.2f}x",
                        "paper 3.3x", f"CoT {b['mean_cot_tokens']:.1f} tok",
                        f"{mem_cell(mem.get(f'reasoning_b{size}'))} / {mem_cell(mem.get(f'direct_b{size}'))}"])
        return out
    if name == "grpo":
        sec, share, step = r["seconds_per_step_by_part"], r["share_of_step"], r["seconds_per_step"]
        rows = [["grpo step", f"train_grpo {step:.2f} s/step", "-", "-", "-",
                 f"{r['config']['per_device_batch_size']} compl., {r['config']['timed_steps']} steps", "-"]]
        for key, label in (("generate", "generation"), ("rewards", "rewards"),
                           ("acc_embed_queries", "  acc: embed queries"), ("acc_embed_items", "  acc: embed items"),
                           ("loss_backward", "loss + backward"), ("backward", "  backward"),
                           ("optimizer", "optimizer"), ("other", "other")):
            rows.append([f"  {label}", f"{sec[key]:.3f} s/step ({share[key]:.0%})", "", "", "", "info", ""])
        return rows
    return []


def table(rows: list[list[str]]) -> str:
    head = ["benchmark", "measured", "baseline", "ratio", "target", "status", "peak RSS MiB (+ over start), meas / base"]
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for every benchmark (0: torch default)")
    ap.add_argument("--only", nargs="*", help="benchmark names to run (default: all)")
    ap.add_argument("--summary-only", action="store_true", help="only rebuild the table from the JSON results")
    args = ap.parse_args()
    started = time.perf_counter()
    results, failed, seconds = {}, [], {}
    if args.summary_only:
        old = json.loads((C.RESULTS / "summary.json").read_text()) if (C.RESULTS / "summary.json").exists() else {}
        seconds = old.get("seconds", {})
        results = {n: json.loads((C.RESULTS / f"{n}.json").read_text()) for n, _ in BENCHES
                   if (C.RESULTS / f"{n}.json").exists()}
    for name, script in BENCHES:
        if args.only and name not in args.only or args.summary_only:
            continue
        cmd = [sys.executable, str(C.BENCH_DIR / script), "--threads", str(args.threads)]
        if args.no_memory:
            cmd.append("--no-memory")
        print(f"=== {script}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=str(C.REPO_ROOT)).returncode
        seconds[name] = time.perf_counter() - t0
        path = C.RESULTS / f"{name}.json"
        if rc != 0 or not path.exists() or path.stat().st_mtime < time.time() - seconds[name] - 1:
            failed.append(name)
            continue
        results[name] = json.loads(path.read_text())
    total = sum(seconds.values()) if args.summary_only else time.perf_counter() - started
    rows = [row for name, _ in BENCHES if name in results for row in rows_for(name, results[name])]
    m = C.machine()
    where = (f"{m.get('gpu') or m.get('cpu_model', '?')}, {m['cpu_count']} CPUs, torch {m['torch']}, "
             f"threads {args.threads or 'default'}, load avg {m.get('loadavg_1m', float('nan')):.1f}")
    text = (f"SUMMARY ({where}; total {total:.0f} s: "
            + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")\n" + table(rows))
    if failed:
        text += f"\nFAILED: {', '.join(failed)}"
    print("\n" + text)
    C.RESULTS.mkdir(parents=True, exist_ok=True)
    (C.RESULTS / "summary.txt").write_text(text + "\n")
    if not args.summary_only:
        C.write_result("summary", {"rows": rows, "seconds": seconds, "total_seconds": total, "failed": failed})
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
