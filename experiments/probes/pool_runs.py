"""Pool a paired difference over several experiment runs (e.g. the same recipe on several worlds).

python experiments/probes/pool_runs.py RUN.json [RUN.json ...] [--a lrem_rl] [--b lrem_cs] [--group hard]

Each RUN.json is an experiment result written by ``python -m components.experiment`` (its
``per_query`` block: every model's HitRate@K per eval query). Prints, per run and pooled over
the runs, the mean of A minus B on the group's queries with a 95% CI from a bootstrap that
resamples queries within each run (runs keep their query counts, so each world weighs by its
queries). The runs must be independent: different worlds, or different eval queries.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from components.experiment.baselines import HARD_CATEGORIES


def paired_values(run: dict, a: str, b: str, group: str) -> tuple[np.ndarray, np.ndarray]:
    """A's and B's per-query HitRate on the group's queries of one run (hard, overall or a category)."""
    pq = run.get("per_query")
    if not pq:
        raise SystemExit(f"{run.get('_path')}: no per_query block (written by an older experiment; re-run it)")
    hits = pq["hit_rate"]
    for m in (a, b):
        if m not in hits:
            raise SystemExit(f"{run.get('_path')}: model {m!r} not in this run (has {sorted(hits)})")
    cats = pq["category"]
    wanted = HARD_CATEGORIES if group == "hard" else None if group == "overall" else (group,)
    qids = [q for q in cats if (wanted is None or cats[q] in wanted) and q in hits[a] and q in hits[b]]
    if not qids:
        raise SystemExit(f"{run.get('_path')}: no query of group {group!r}")
    return (np.array([hits[a][q] for q in qids], dtype=np.float64),
            np.array([hits[b][q] for q in qids], dtype=np.float64))


def pooled_bootstrap(pairs: list[tuple[np.ndarray, np.ndarray]], n_resamples: int = 5000,
                     seed: int = 0) -> dict[str, float]:
    """Mean of A - B over all runs' queries; the CI resamples queries within each run."""
    rng = np.random.default_rng(seed)
    diffs = [x - y for x, y in pairs]
    total = sum(d.size for d in diffs)
    point = float(sum(d.sum() for d in diffs) / total)
    base = float(sum(y.sum() for _, y in pairs) / total)
    stats = np.empty(n_resamples)
    for i in range(n_resamples):
        stats[i] = sum(d[rng.integers(0, d.size, d.size)].sum() for d in diffs) / total
    low, high = np.percentile(stats, [2.5, 97.5])
    return {"n": total, "diff": point, "ci_low": float(low), "ci_high": float(high),
            "relative": point / base if base else float("nan")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="experiment result JSON files")
    p.add_argument("--a", default="lrem_rl", help="model id A (default lrem_rl)")
    p.add_argument("--b", default="lrem_cs", help="model id B (default lrem_cs)")
    p.add_argument("--group", default="hard", help="hard (default), overall or one category")
    p.add_argument("--resamples", type=int, default=5000)
    args = p.parse_args(argv)
    pairs = []
    print(f"HitRate@K, {args.a} minus {args.b}, group {args.group}:")
    for path in args.runs:
        run = json.loads(Path(path).read_text())
        run["_path"] = path
        x, y = paired_values(run, args.a, args.b, args.group)
        one = pooled_bootstrap([(x, y)], args.resamples)
        print(f"  {path}: n {one['n']}, {args.a} {x.mean():.4f}, {args.b} {y.mean():.4f}, diff {one['diff']:+.4f} "
              f"[{one['ci_low']:+.4f}, {one['ci_high']:+.4f}]")
        pairs.append((x, y))
    pooled = pooled_bootstrap(pairs, args.resamples)
    print(f"  pooled over {len(pairs)} run(s): n {pooled['n']}, diff {pooled['diff']:+.4f} "
          f"[{pooled['ci_low']:+.4f}, {pooled['ci_high']:+.4f}], relative {pooled['relative']:+.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
