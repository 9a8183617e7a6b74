"""Probe: does a reasoning budget on the nightly router keep HitRate@100 at half the reasoning?

    OMP_NUM_THREADS=1 .venv/bin/python experiments/probes/router_budget.py \
        --model <run>/routing/model --data <snapshot dir> --budget 0.5 --out <report.json>

The shipped router (fitted on the training queries, threshold by the bagged first-crossing rule)
reasons on about 88% of the eval queries (docs/serving-cost.md, 3). The rule under test adds a
budget: the threshold becomes the larger of the router's own and the ``1 - budget`` quantile of
the router's scores on its fitting queries (the training queries, as ``train_router`` takes them:
``components.routing.step.fit_queries``). Only the router's inputs on those queries are used (no
label, nothing of the eval queries). Reported on the eval queries, measured with the pipeline's
own code (``components.routing.step.measure``): the share that reasons and the routed HitRate@100
against always reasoning with its paired bootstrap CI, overall and per category; the shipped
router on the same measurements as a check (it must reproduce its ``routing/report.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    from components.config import load_config
    from components.data.io import load_world
    from components.model.lrem import LREMModel
    from components.routing.step import fit_queries, measure, routed_report

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", default="configs/demo.yaml", help="the run's config (its routing section)")
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    t0 = time.perf_counter()
    cfg = load_config(args.config)
    model = LREMModel.load(args.model)
    world = load_world(args.data)
    router = model.router
    fit, source = fit_queries(cfg, world)
    direct, scalars = model.direct_with_features(fit["text"].tolist(), batch_size=cfg.eval.batch_size)
    fit_scores = router.scores(direct, scalars)
    cut = float(np.quantile(fit_scores, 1.0 - args.budget))
    threshold = max(router.threshold, cut)
    ev = measure(model, world, "eval", cfg.routing.hit_k, None, cfg.eval.batch_size)
    ev_scores = router.scores(ev["direct"], ev["scalars"])
    shipped = routed_report(ev_scores >= router.threshold, ev, cfg.routing.bootstrap_samples)
    budgeted = routed_report(ev_scores >= threshold, ev, cfg.routing.bootstrap_samples)
    ov = budgeted["overall"]
    result = {"model": args.model, "data": args.data, "budget": args.budget, "fit_on": source,
              "fit_queries": len(fit), "router_threshold": router.threshold, "budget_cut": cut,
              "threshold": threshold, "fit_reason_share": float((fit_scores >= threshold).mean()),
              "shipped": shipped, "budgeted": budgeted,
              "target_met": bool(ov["reason_share"] <= 0.5 and ov["zero_in_ci"]),
              "seconds": round(time.perf_counter() - t0, 1)}
    Path(args.out).write_text(json.dumps(result, indent=2))
    for name, rep in (("shipped", shipped), ("budgeted", budgeted)):
        print(name)
        for group, row in rep.items():
            print(f"  {group:<12} n {row['n']:>3}  reason {row['reason_share']:6.1%}  routed {row['hit_rate_routed']:.4f}"
                  f"  always {row['hit_rate_always_reason']:.4f}  direct {row['hit_rate_direct']:.4f}"
                  f"  routed - always {row['diff_routed_minus_always']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]")
    print(f"threshold {router.threshold:.4f} -> {threshold:.4f} (budget cut {cut:.4f}); on the fitting queries "
          f"{result['fit_reason_share']:.1%} reason; target met: {result['target_met']}")


if __name__ == "__main__":
    main()
