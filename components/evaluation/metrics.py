"""Offline retrieval metrics, overall and per query category.

HitRate@K follows the LREM paper: the share of a query's ground-truth items that appear
in its top K, averaged over queries (a recall, not "any hit"). Precision@K is the share
of the top K judged relevant, averaged over queries. Queries without any ground-truth
item are left out (their HitRate is undefined).

Metric keys are ``hit_rate@<K>``, ``precision@<K>`` and ``n_queries``. MLflow metric
and tag names may not contain ``@``, so :func:`flatten_metrics` / :func:`mlflow_key`
spell it ``_at_`` (``challenger.qa.hit_rate_at_100``).
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Sequence

from components.config import CATEGORIES

OVERALL = "overall"


def hit_rate_key(k: int) -> str:
    return f"hit_rate@{k}"


def precision_key(k: int) -> str:
    return f"precision@{k}"


def _category_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    known = [c for c in CATEGORIES if c in names]
    return known + sorted(names - set(known))


def retrieval_metrics(
    ranked: Mapping[str, Sequence[str]],
    relevant: Mapping[str, set[str]],
    categories: Mapping[str, str],
    hit_ks: Sequence[int] = (10, 50, 100),
    precision_k: int = 10,
) -> dict[str, dict[str, float]]:
    """Score ranked item ids per query against the judged-relevant items.

    ``ranked``: query id -> item ids, best first. ``relevant``: query id -> relevant item
    ids. ``categories``: query id -> category. Returns ``{"overall": {...}, "<category>":
    {...}}``, each with ``hit_rate@K`` for every K in ``hit_ks``, ``precision@<precision_k>``
    and ``n_queries``; categories without a scored query are omitted. A query without a
    category counts in "overall" only.
    """
    hit_ks = sorted({int(k) for k in hit_ks})
    if not hit_ks or hit_ks[0] < 1 or precision_k < 1:
        raise ValueError(f"K must be >= 1 (hit_ks={hit_ks}, precision_k={precision_k})")
    keys = [hit_rate_key(k) for k in hit_ks] + [precision_key(precision_k)]
    sums: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}

    for qid, items in ranked.items():
        truth = set(relevant.get(qid, ()))
        if not truth:
            continue
        items = list(items)
        scores = {hit_rate_key(k): len(truth.intersection(items[:k])) / len(truth) for k in hit_ks}
        scores[precision_key(precision_k)] = len(truth.intersection(items[:precision_k])) / precision_k
        groups = [OVERALL]
        if categories.get(qid):
            groups.append(categories[qid])
        for group in groups:
            acc = sums.setdefault(group, dict.fromkeys(keys, 0.0))
            for key, value in scores.items():
                acc[key] += value
            counts[group] = counts.get(group, 0) + 1

    out: dict[str, dict[str, float]] = {}
    for group in [OVERALL] + _category_order(g for g in sums if g != OVERALL):
        n = counts.get(group, 0)
        if group == OVERALL and n == 0:
            out[OVERALL] = {**dict.fromkeys(keys, 0.0), "n_queries": 0}
            continue
        out[group] = {key: sums[group][key] / n for key in keys}
        out[group]["n_queries"] = n
    return out


_MLFLOW_BAD = re.compile(r"[^\w./\- ]")


def mlflow_key(name: str) -> str:
    """``name`` made valid as an MLflow metric, param or tag key (``@`` -> ``_at_``)."""
    return _MLFLOW_BAD.sub("_", name.replace("@", "_at_"))


def flatten_metrics(metrics: Mapping[str, Mapping[str, float]], prefix: str = "") -> dict[str, float]:
    """``{"qa": {"hit_rate@100": x}}`` -> ``{"<prefix>.qa.hit_rate_at_100": x}`` for mlflow.log_metrics."""
    out: dict[str, float] = {}
    for group, values in metrics.items():
        for key, value in values.items():
            name = ".".join(p for p in (prefix, group, key) if p)
            out[mlflow_key(name)] = float(value)
    return out
