"""Probe: can a router fitted on queries the model never trained on reason on at most half of them?

    OMP_NUM_THREADS=1 .venv/bin/python experiments/probes/router_crossfit.py \
        --model <run>/routing/model --data <snapshot dir> --out <report.json>

The nightly router (step ``train_router``) is fitted on the training queries, where the model
has already learned the items (docs/serving-cost.md, section 3). Here the eval queries, which
the model never trained on, are measured with the pipeline's own code (direct and
always-reasoning HitRate@100 and the router's features: ``components.routing.step.measure``),
cut in two folds per category (hard categories by whole intent when the data has intent ids:
``components.routing.holdout.take_share``), and cross-fitted
(``components.routing.crossfit.cross_fit``): the nightly fit and threshold rule on one fold,
decisions on the other, and the other way round. Reported: reason share and routed HitRate@100
against always reasoning (paired bootstrap CI), overall and per category; the trade-off curve
on the held-out folds; the same for other fold seeds; the shipped router on the same
measurements (a check that they reproduce its ``routing/report.json``); the oracle (reason
exactly where it helps). Measurements are cached in ``--cache`` (npz) for reruns.
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

from components.routing.crossfit import cross_fit, tradeoff_curve  # noqa: E402
from components.routing.holdout import take_share  # noqa: E402
from components.routing.step import eval_report, routed_report  # noqa: E402

KEYS = ("direct", "scalars", "hit_direct", "hit_reason", "category", "qids")


def load_measurements(args) -> tuple[dict, object, object]:
    import torch

    from components.data.io import load_world
    from components.model.lrem import LREMModel
    from components.routing.step import measure

    torch.set_num_threads(args.threads)
    model = LREMModel.load(args.model)
    world = load_world(args.data)
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        m = {k: z[k] for k in KEYS}
        m["qids"] = m["qids"].tolist()
        return m, model, world
    t0 = time.perf_counter()
    m = measure(model, world, "eval", args.k, None, args.batch_size)
    print(f"measured {len(m['qids'])} eval queries in {time.perf_counter() - t0:.1f} s", flush=True)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **{k: np.asarray(m[k], dtype=str) if k in ("category", "qids") else np.asarray(m[k])
                           for k in KEYS})
    return m, model, world


def summary_rows(rep: dict) -> list[str]:
    out = [f"{'group':12s} {'n':>4s} {'reason':>7s} {'routed':>7s} {'always':>7s} {'direct':>7s}  routed - always, 95% CI"]
    for name, r in rep.items():
        out.append(f"{name:12s} {r['n']:4d} {100 * r['reason_share']:6.1f}% {r['hit_rate_routed']:7.3f} "
                   f"{r['hit_rate_always_reason']:7.3f} {r['hit_rate_direct']:7.3f}  {r['diff_routed_minus_always']:+.4f} "
                   f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model directory (its router.json is the shipped router)")
    ap.add_argument("--data", required=True, help="data folder (the run's DVC snapshot)")
    ap.add_argument("--out", required=True, help="JSON report")
    ap.add_argument("--cache", help="npz of the measurements (read if present, else written)")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="fold seed of the primary result")
    ap.add_argument("--extra-seeds", type=int, default=10, help="fold seeds 0..N-1 reported beside it")
    ap.add_argument("--bootstrap", type=int, default=2000)
    # the nightly fit's settings (RoutingConfig defaults)
    ap.add_argument("--tolerance", type=float, default=0.0)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--c", type=float, default=1.0)
    ap.add_argument("--bags", type=int, default=0, help="routing.threshold_bags: 0 the first-crossing threshold, "
                    "N the median over N bootstrap resamples (docs/serving-cost.md, 3.3)")
    args = ap.parse_args(argv)

    m, model, world = load_measurements(args)
    fit = dict(tolerance=args.tolerance, folds=args.folds, c=args.c, seed=0, bags=args.bags)
    frame = world.queries.set_index(world.queries["query_id"].astype(str)).loc[m["qids"]].reset_index(drop=True)
    assert (frame["category"].to_numpy() == m["category"]).all()
    helps = m["hit_reason"] > m["hit_direct"]
    report: dict = {
        "model": str(args.model), "data": str(args.data), "k": args.k, "fit": fit, "bootstrap": args.bootstrap,
        "n": len(m["qids"]), "share_reasoning_helps": float(helps.mean()),
        "share_reasoning_hurts": float((m["hit_reason"] < m["hit_direct"]).mean()),
        "intent_ids": "intent" in frame.columns,
    }
    if model.router is not None:  # the shipped router on the same measurements
        report["shipped_router"] = eval_report(model.router, m, args.bootstrap)
    report["oracle"] = routed_report(helps, m, args.bootstrap)  # reason exactly where it helps

    def one(seed: int) -> dict:
        fold = take_share(frame, 0.5, seed=seed)
        res = cross_fit(m, fold, **fit)
        return {"seed": seed, "fold": fold, "res": res, "report": routed_report(res["reason"], m, args.bootstrap)}

    primary = one(args.seed)
    fold, res = primary["fold"], primary["res"]
    report["primary"] = {
        "seed": args.seed,
        "fold_sizes": {c: [int((fold & (m["category"] == c)).sum()), int((~fold & (m["category"] == c)).sum())]
                       for c in sorted(set(m["category"]))},
        "routers": {name: {k: r.stats.get(k) for k in ("n_queries", "share_reasoning_helps", "oof_auc",
                                                       "calibration_reason_share", "calibration_hit_rate", "target",
                                                       "degenerate")} | {"threshold": r.threshold}
                    for name, r in res["routers"].items()},
        "report": primary["report"],
        "curve": tradeoff_curve(m, res["score"], fold, np.round(np.arange(0, 1.0001, 0.05), 2), args.bootstrap),
    }
    if "intent" in frame.columns:  # no intent of a hard category on both sides
        hard = frame["category"].isin(["qa", "alternative", "knowledge"]).to_numpy()
        a, b = set(frame.loc[hard & fold, "intent"]), set(frame.loc[hard & ~fold, "intent"])
        report["primary"]["intents_on_both_sides"] = len(a & b)
    seeds = []
    for seed in range(args.extra_seeds):
        row = primary if seed == args.seed else one(seed)
        o = row["report"]["overall"]
        seeds.append({"seed": seed, **{k: o[k] for k in ("reason_share", "hit_rate_routed", "diff_routed_minus_always",
                                                         "ci_low", "ci_high", "zero_in_ci")}})
    report["seeds"] = seeds
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))

    o = m
    print(f"eval queries {report['n']}: HitRate@{args.k} direct {o['hit_direct'].mean():.4f}, always reasoning "
          f"{o['hit_reason'].mean():.4f}; reasoning helps {100 * report['share_reasoning_helps']:.1f}%, "
          f"hurts {100 * report['share_reasoning_hurts']:.1f}%")
    if "shipped_router" in report:
        print("\nshipped router (fitted on training queries):")
        print("\n".join(summary_rows(report["shipped_router"])))
    print(f"\ncross-fitted router (fold seed {args.seed}; folds {report['primary']['fold_sizes']}):")
    for name, r in report["primary"]["routers"].items():
        print(f"  fold {name} routed by the router fitted on the other fold: {r}")
    print("\n".join(summary_rows(primary["report"])))
    print("\ntrade-off on the held-out folds (each fold cut at its own quantile of held-out scores):")
    for row in report["primary"]["curve"]:
        print(f"  share {100 * row['reason_share']:5.1f}%  routed {row['hit_rate_routed']:.4f}  "
              f"diff {row['diff_routed_minus_always']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
              f"{'  inside' if row['zero_in_ci'] else ''}")
    print("\noracle (reason exactly where it helps):")
    print("\n".join(summary_rows(report["oracle"])[:2]))
    print("\nfold seeds:")
    for row in seeds:
        print(f"  seed {row['seed']}: reason {100 * row['reason_share']:5.1f}%  diff {row['diff_routed_minus_always']:+.4f} "
              f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]{'  inside' if row['zero_in_ci'] else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
