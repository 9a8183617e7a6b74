"""Paired bootstrap confidence intervals on the difference of two retrievers, per category.

Both retrievers rank the same eval queries; a query's score is its HitRate@K (share of its
relevant items in its top K). Resampling queries with replacement (the same resample for
both systems, so the pairing is kept) gives the distribution of the mean difference.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def per_query_hit_rate(ranked: Mapping[str, Sequence[str]], relevant: Mapping[str, set], k: int) -> dict[str, float]:
    out = {}
    for qid, items in ranked.items():
        rel = relevant.get(qid) or set()
        if rel:
            out[qid] = len(set(items[:k]) & set(rel)) / len(rel)
    return out


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_resamples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """Mean of a - b with a percentile CI; also the relative difference (a - b) / b."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired samples must be non-empty and of one length (got {a.size} and {b.size})")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_resamples, a.size))
    diffs = a[idx].mean(axis=1) - b[idx].mean(axis=1)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, 1 - (1 - level) / 2])
    base = float(b.mean())
    return {"n": int(a.size), "a": float(a.mean()), "b": base, "diff": float(a.mean() - base),
            "ci_low": float(lo), "ci_high": float(hi),
            "relative": float((a.mean() - base) / base) if base > 0 else float("nan"),
            "p_not_better": float(np.mean(diffs <= 0))}


def compare_by_group(ranked_a: Mapping[str, Sequence[str]], ranked_b: Mapping[str, Sequence[str]],
                     relevant: Mapping[str, set], categories: Mapping[str, str], k: int,
                     groups: Mapping[str, Sequence[str]] | None = None, n_resamples: int = 2000,
                     seed: int = 0, query_groups: Mapping[str, Sequence[str]] | None = None
                     ) -> dict[str, dict[str, float]]:
    """Paired bootstrap of HitRate@k (a minus b): overall, per category, per named group of
    categories (``groups``) and per named set of query ids (``query_groups``)."""
    ha = per_query_hit_rate(ranked_a, relevant, k)
    hb = per_query_hit_rate(ranked_b, relevant, k)
    qids = [q for q in ha if q in hb]
    cats = sorted({categories[q] for q in qids})
    sets: dict[str, list[str]] = {"overall": qids}
    for c in cats:
        sets[c] = [q for q in qids if categories[q] == c]
    for name, members in (groups or {}).items():
        sets[name] = [q for q in qids if categories[q] in set(members)]
    for name, members in (query_groups or {}).items():
        wanted = set(members)
        sets[name] = [q for q in qids if q in wanted]
    out = {}
    for name, members in sets.items():
        if members:
            out[name] = paired_bootstrap([ha[q] for q in members], [hb[q] for q in members], n_resamples, seed)
    return out
