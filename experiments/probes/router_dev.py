"""Probe: the nightly router, refitted on trained models (e.g. the dev-fitted router on other training seeds).

    OMP_NUM_THREADS=2 .venv/bin/python experiments/probes/router_dev.py \
        --models <run>/routing/model,<run>/routing/model,... --data data --out <report.json>

For each trained model, ``train_router`` exactly as the nightly run does it
(``components.routing.step.train_router_for`` with the config's routing section: the defaults
since docs/serving-cost.md 3.6 fit on dev with the direct retrieval's features; 3.5 measured
``routing.use_dev`` with a ``routing.reason_share`` budget and the features of before) is rerun
on the given data, and its eval report kept: the share of eval queries that reason, and
routed HitRate@``hit_k`` against always reasoning with the paired bootstrap CI, overall and per
category. The model's own registered router is not used. "met": share <= 50% and 0 inside the CI.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parser(doc: str) -> argparse.ArgumentParser:
    """The arguments the router probes share: the trained models, the data, the config, the report."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="comma-separated model directories")
    ap.add_argument("--data", required=True, help="the data folder (with its dev split)")
    ap.add_argument("--config", default="configs/demo.yaml", help="the config whose routing section is used")
    ap.add_argument("--out", required=True)
    return ap


def without_router(models: str):
    """(path, model, start time) per comma-separated model directory, the model's own router dropped."""
    from components.model.lrem import LREMModel

    for path in models.split(","):
        t0 = time.perf_counter()
        model = LREMModel.load(path)
        model.router = None
        yield path, model, t0


def main() -> None:
    from components.config import load_config
    from components.data.io import load_world
    from components.routing.step import train_router_for

    args = parser(__doc__).parse_args()
    cfg = load_config(args.config)
    world = load_world(args.data)
    rows = []
    for path, model, t0 in without_router(args.models):
        router, report = train_router_for(cfg, model, world)
        ov = report["eval"]["overall"]
        met = ov["reason_share"] <= 0.5 and ov["ci_low"] <= 0.0 <= ov["ci_high"]
        rows.append({"model": path, "fit_on": report["fit_on"], "train": router.stats, "eval": report["eval"],
                     "met": met, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{path}: fit on {report['fit_on']} ({router.stats['n_queries']}), rule share on the fit set "
              f"{router.stats.get('rule_reason_share')}; eval reason share {ov['reason_share']:.3f}, routed - always "
              f"{ov['diff_routed_minus_always']:+.4f} [{ov['ci_low']:+.4f}, {ov['ci_high']:+.4f}] -> "
              f"{'met' if met else 'missed'}", flush=True)
        for cat, row in report["eval"].items():
            if cat != "overall":
                print(f"    {cat:12s} n {row['n']:3d}  reason {row['reason_share']:.2f}  "
                      f"{row['diff_routed_minus_always']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]")
    result = {"data": args.data, "config": args.config, "routing": vars(cfg.routing), "models": rows,
              "met": sum(r["met"] for r in rows)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"met on {result['met']} of {len(rows)} models; report {args.out}")


if __name__ == "__main__":
    main()
