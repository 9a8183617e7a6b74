"""The type oracle: the most any model can reach on the demo world (every item of a query's relevant
product types first)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from components.experiment.config import HARD_CATEGORIES
from components.experiment.data import ExperimentData


def type_oracle_ranking(query_ids: Sequence[str], relevant: dict, item_ids: Sequence[str],
                        item_type: dict[str, str], seed: int = 0) -> dict[str, list[str]]:
    """Per query: every item of its relevant items' product type(s) first, in a seeded random
    order, then the rest of the catalog.

    The demo world judges a qa, alternative or knowledge query's relevant items at random among
    the items of the right type(s), so no model can rank them above the other items of those
    types on average: this ranking's HitRate is the ceiling of what a model that gets the type
    right can reach (a knowledge query with two types has about 158 candidates for 100 places)."""
    rng = np.random.default_rng(seed)
    by_type: dict[str, list[str]] = {}
    for iid in item_ids:
        by_type.setdefault(item_type.get(iid), []).append(iid)
    out: dict[str, list[str]] = {}
    for qid in query_ids:
        kinds = sorted({item_type.get(i) for i in relevant.get(qid, ())} - {None})
        first = [i for kind in kinds for i in by_type.get(kind, [])]
        first = [first[j] for j in rng.permutation(len(first))]
        chosen = set(first)
        out[qid] = first + [i for i in item_ids if i not in chosen]
    return out


def _type_oracle(data: ExperimentData, k: int, seed: int) -> dict[str, float] | None:
    """HitRate@k of :func:`type_oracle_ranking` per category, on the hard categories and overall
    (None without product types: real data)."""
    from components.evaluation.bootstrap import per_query_hit_rate

    if not data.item_types:
        return None
    ranked = type_oracle_ranking(data.eval_ids, data.relevant, list(data.item_ids), data.item_types, seed)
    hit = per_query_hit_rate(ranked, data.relevant, k)
    cats = data.categories

    def mean(qids) -> float:
        vals = [hit[q] for q in qids if q in hit]
        return float(np.mean(vals)) if vals else 0.0

    out = {c: mean([q for q in data.eval_ids if cats[q] == c]) for c in dict.fromkeys(data.eval_categories)}
    out["hard"] = mean([q for q in data.eval_ids if cats[q] in HARD_CATEGORIES])
    out["overall"] = mean(data.eval_ids)
    return out
