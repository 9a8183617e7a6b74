"""Calibration of the promotion gate: false-veto rate and power over simulated nights.

The same function as `lrem gate calibrate` (components.evaluation.calibrate.run_calibration),
the same figures printed, plus the baseline measured on the same nights: the rule the gate
had before the family of tests (every test at 0.05, no Holm, Fisher's exact test per
search, the interleaving binomial test as a veto). Ratios: new false-veto rate / old, and
the cost of a simulated night against nothing else (seconds).

    LREM_HOME=... .venv/bin/python bench/bench_gate_calibration.py --model models:/lrem-retriever/1 \
        --twin models:/lrem-retriever/2 --data <the demo world> [--nights 1000]

The protocol (models, nights, regressions, targets) is in docs/gate.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402  (puts the repository root on sys.path)


def main(argv: list[str] | None = None) -> int:
    from components import tracking
    from components.config import load_config
    from components.evaluation.calibrate import Plan, Traffic, format_report, run_calibration
    from components.paths import state_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--model", help="default: models:/<model_name>@champion")
    ap.add_argument("--twin", help="A/A': a second model of the same recipe (models:/ URI)")
    ap.add_argument("--data", default="data")
    ap.add_argument("--nights", type=int, default=Plan.nights)
    ap.add_argument("--large-users", type=int, default=20000)
    ap.add_argument("--large-requests", type=int, default=40000)
    ap.add_argument("--scenarios", default="null,overall,category", help="null, overall, category (comma-separated)")
    ap.add_argument("--base", choices=["cot", "direct"], default="cot", help="the champion's query embedding")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    tracking.configure(cfg)
    plan = Plan(nights=args.nights, traffics=(Traffic("demo", cfg.online.n_users, cfg.online.max_requests),
                                              Traffic("large", args.large_users, args.large_requests)),
                kinds=tuple(k.strip() for k in args.scenarios.split(",") if k.strip()), base=args.base)
    t0 = time.perf_counter()
    result = run_calibration(cfg, args.data, args.model or f"models:/{cfg.tracking.model_name}@champion", args.twin,
                             plan, state_path("calibration", "cache"))
    wall = time.perf_counter() - t0
    print(format_report(result))
    print("\nbaseline on the same nights (demo traffic): the gate before the family of tests")
    print("| scenario | veto rate, family + Holm | veto rate, old rule | ratio new / old |")
    print("|---|---|---|---|")
    for r in result["scenarios"]:
        demo = r["by_traffic"]["demo"]
        old = demo["old_rule_rate"]
        ratio = f"{demo['veto_rate'] / old:.2f}" if old else "-"
        print(f"| {r['scenario']} | {100 * demo['veto_rate']:.1f}% | {100 * old:.1f}% | {ratio} |")
    nights = sum(len(r["by_traffic"]) for r in result["scenarios"]) * plan.nights
    print(f"\n{nights} simulated nights in {result['seconds']:.0f} s ({1000 * result['seconds'] / nights:.1f} ms a "
          f"night); embedding the models once: {result['embed_seconds']:.0f} s (cached); wall {wall:.0f} s")
    path = C.write_result("gate_calibration", {**result, "wall_seconds": wall})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
