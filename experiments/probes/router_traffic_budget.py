"""Probe: rule C of docs/serving-cost.md 3.7, a reasoning budget set on the traffic's own router scores.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/probes/router_traffic_budget.py \
        --models <run>/routing/model,... --data data --budget 0.45 --out <report.json>

Per trained model: the nightly router (``fit_router_for`` with the config's routing section,
rule A) is fitted as ``train_router`` fits it; the eval queries are measured (direct and
always-reasoning HitRate@``hit_k``) and split into two halves by a seeded permutation
(``--split-seed``, 0 as registered). Each half stands in for tomorrow's traffic and the other
half for the traffic of the days before: the threshold is the cut that reasons on the
``--budget`` highest of the router's scores on the other half's queries (no labels read), and
it decides the half. The decisions on all eval queries are reported with the paired bootstrap
CI of routed minus always reasoning, overall and per category, beside rule A's own.
"met": share that reasons <= 50% and 0 inside the CI.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def split_half_decisions(scores: np.ndarray, budget: float, seed: int) -> tuple[np.ndarray, list[float]]:
    """Each half of a seeded permutation decided by the budget cut of the other half's scores."""
    from components.routing.router import budget_cut

    perm = np.random.default_rng(seed).permutation(len(scores))
    halves = [perm[: len(perm) // 2], perm[len(perm) // 2:]]
    reason = np.zeros(len(scores), dtype=bool)
    cuts = []
    for i, half in enumerate(halves):
        cut = budget_cut(scores[halves[1 - i]], budget)
        reason[half] = scores[half] >= cut
        cuts.append(cut)
    return reason, cuts


def main() -> None:
    from router_dev import parser, without_router  # the probes' shared arguments and model loop

    from components.config import load_config
    from components.data.io import load_world
    from components.routing.step import fit_router_for, measure, routed_report

    ap = parser(__doc__)
    ap.add_argument("--budget", type=float, default=0.45)
    ap.add_argument("--split-seed", type=int, default=0)
    args = ap.parse_args()
    cfg = load_config(args.config)
    cfg.routing.traffic_budget = None  # rule A as fitted; the budget is applied here, per half
    world = load_world(args.data)
    rows = []
    for path, model, t0 in without_router(args.models):
        router, _, items = fit_router_for(cfg, model, world)
        ev = measure(model, world, "eval", cfg.routing.hit_k, None, cfg.eval.batch_size, items=items)
        scores = router.scores(ev["direct"], ev["scalars"])
        rule_a = routed_report(scores >= router.threshold, ev, cfg.routing.bootstrap_samples)
        reason, cuts = split_half_decisions(scores, args.budget, args.split_seed)
        rule_c = routed_report(reason, ev, cfg.routing.bootstrap_samples)
        ov = rule_c["overall"]
        met = ov["reason_share"] <= 0.5 and ov["ci_low"] <= 0.0 <= ov["ci_high"]
        rows.append({"model": path, "rule_a_threshold": router.threshold, "half_cuts": cuts, "train": router.stats,
                     "rule_a": rule_a, "rule_c": rule_c, "met": met, "seconds": round(time.perf_counter() - t0, 1)})
        a = rule_a["overall"]
        print(f"{path}\n  rule A: reason {a['reason_share']:.3f}, routed - always {a['diff_routed_minus_always']:+.4f} "
              f"[{a['ci_low']:+.4f}, {a['ci_high']:+.4f}]\n  rule C (budget {args.budget}, cuts "
              f"{cuts[0]:.3f}/{cuts[1]:.3f}): reason {ov['reason_share']:.3f}, routed - always "
              f"{ov['diff_routed_minus_always']:+.4f} [{ov['ci_low']:+.4f}, {ov['ci_high']:+.4f}] -> "
              f"{'met' if met else 'missed'}", flush=True)
        for cat, row in rule_c.items():
            if cat != "overall":
                print(f"    {cat:12s} n {row['n']:3d}  reason {row['reason_share']:.2f}  "
                      f"{row['diff_routed_minus_always']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]")
    result = {"data": args.data, "config": args.config, "budget": args.budget, "split_seed": args.split_seed,
              "routing": vars(cfg.routing), "models": rows, "met": sum(r["met"] for r in rows)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"met on {result['met']} of {len(rows)} models; report {args.out}")


if __name__ == "__main__":
    main()
