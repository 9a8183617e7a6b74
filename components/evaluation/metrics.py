"""Offline retrieval metrics, overall and per query category.

HitRate@K follows the LREM paper: the share of a query's ground-truth items that appear
in its top K, averaged over queries (a recall, not "any hit"). Precision@K is the share
of the top K judged relevant, averaged over queries. Queries without any ground-truth
item are left out (their HitRate is undefined).

nDCG@K (``ndcg@<K>``) is trec_eval's ``ndcg_cut``, the definition BEIR and MTEB publish:
gain = the judged relevance grade (linear, not 2^g - 1), discount 1 / log2(rank + 1), divided
by the DCG of the ideal ranking of all judged grades. Recall@K (``recall@<K>``) is the share
of a query's relevant items in its top K; with binary judgments it equals the paper's
HitRate@K, and both are kept so reports can be read by either community. Grades come from
``relevant`` when its values are mappings ``{item id: grade}``; a set means grade 1 for
each. Every item with grade >= 1 is relevant for HitRate, Recall and Precision.

Metric keys are ``hit_rate@<K>``, ``precision@<K>``, ``ndcg@<K>``, ``recall@<K>`` and ``n_queries``. MLflow metric
and tag names may not contain ``@``, so :func:`flatten_metrics` / :func:`mlflow_key`
spell it ``_at_`` (``challenger.qa.hit_rate_at_100``).
"""

from __future__ import annotations

import math
import re
from typing import Iterable, Mapping, Sequence, Union

from components.config import CATEGORIES

OVERALL = "overall"


def hit_rate_key(k: int) -> str:
    return f"hit_rate@{k}"


def precision_key(k: int) -> str:
    return f"precision@{k}"


def ndcg_key(k: int) -> str:
    return f"ndcg@{k}"


def recall_key(k: int) -> str:
    return f"recall@{k}"


Judged = Union[set, frozenset, Mapping[str, float]]  # relevant item ids, or item id -> grade


def _grades(judged: Judged | None) -> dict[str, float]:
    if not judged:
        return {}
    if isinstance(judged, Mapping):
        return {str(i): float(g) for i, g in judged.items() if g is not None and float(g) > 0}
    return {str(i): 1.0 for i in judged}


def _dedup(items: Sequence[str]) -> list[str]:
    """A ranking with repeats removed (first occurrence kept): an item counts once."""
    seen: set[str] = set()
    return [i for i in items if not (i in seen or seen.add(i))]


def ndcg_at_k(ranking: Sequence[str], grades: Mapping[str, float], k: int) -> float:
    """trec_eval ndcg_cut.k: linear gains, log2(rank + 1) discount, ideal DCG over all judged grades."""
    dcg = sum(grades.get(item, 0.0) / math.log2(rank + 1) for rank, item in enumerate(ranking[:k], start=1))
    ideal = sorted(grades.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def _category_order(names: Iterable[str]) -> list[str]:
    names = set(names)
    known = [c for c in CATEGORIES if c in names]
    return known + sorted(names - set(known))


def retrieval_metrics(
    ranked: Mapping[str, Sequence[str]],
    relevant: Mapping[str, Judged],
    categories: Mapping[str, str],
    hit_ks: Sequence[int] = (10, 50, 100),
    precision_k: int = 10,
    ndcg_ks: Sequence[int] = (10,),
    recall_ks: Sequence[int] = (100,),
) -> dict[str, dict[str, float]]:
    """Score ranked item ids per query against the judged-relevant items.

    ``ranked``: query id -> item ids, best first. ``relevant``: query id -> relevant item
    ids, or item id -> relevance grade (graded data). ``categories``: query id -> category.
    Returns ``{"overall": {...}, "<category>": {...}}``, each with ``hit_rate@K`` for every K
    in ``hit_ks``, ``precision@<precision_k>``, ``ndcg@K`` for every K in ``ndcg_ks``,
    ``recall@K`` for every K in ``recall_ks`` and ``n_queries``; categories without a scored
    query are omitted. A query without a category counts in "overall" only.
    """
    hit_ks = sorted({int(k) for k in hit_ks})
    ndcg_ks = sorted({int(k) for k in ndcg_ks})
    recall_ks = sorted({int(k) for k in recall_ks})
    if not hit_ks or min(hit_ks + ndcg_ks + recall_ks) < 1 or precision_k < 1:
        raise ValueError(f"K must be >= 1 (hit_ks={hit_ks}, precision_k={precision_k}, ndcg_ks={ndcg_ks}, "
                         f"recall_ks={recall_ks})")
    keys = ([hit_rate_key(k) for k in hit_ks] + [precision_key(precision_k)] + [ndcg_key(k) for k in ndcg_ks]
            + [recall_key(k) for k in recall_ks])
    sums: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}

    for qid, items in ranked.items():
        grades = _grades(relevant.get(qid))
        truth = set(grades)
        if not truth:
            continue
        items = _dedup([str(i) for i in items])
        scores = {hit_rate_key(k): len(truth.intersection(items[:k])) / len(truth) for k in hit_ks}
        scores[precision_key(precision_k)] = len(truth.intersection(items[:precision_k])) / precision_k
        for k in ndcg_ks:
            scores[ndcg_key(k)] = ndcg_at_k(items, grades, k)
        for k in recall_ks:
            scores[recall_key(k)] = len(truth.intersection(items[:k])) / len(truth)
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
