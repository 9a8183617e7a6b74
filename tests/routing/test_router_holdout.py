"""The router's held-out queries: the intent-aware split, and cross-fitting (docs/serving-cost.md, section 3)."""

import numpy as np
import pandas as pd
import pytest

from components.routing.crossfit import cross_fit, top_share, tradeoff_curve
from components.routing.holdout import take_share


def _queries(n_per_cat=40, intents_per_hard=12, seed=0, with_intent=True):
    rng = np.random.default_rng(seed)
    rows = []
    for cat in ("plain", "qa", "alternative", "negative", "knowledge"):
        for j in range(n_per_cat):
            row = {"query_id": f"{cat[:2]}{j:03d}", "category": cat, "text": f"{cat} {j}"}
            if with_intent:
                row["intent"] = f"{cat}-i{rng.integers(intents_per_hard)}" if cat in ("qa", "alternative", "knowledge") \
                    else row["text"]
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("share", [0.15, 0.5])
def test_take_share_is_per_category_by_whole_intent_and_deterministic(share):
    q = _queries()
    mask = take_share(q, share, seed=3)
    for cat, group in q.groupby("category"):
        taken = mask[group.index]
        assert abs(taken.sum() - round(share * len(group))) <= 4, (cat, taken.sum())
        if cat in ("qa", "alternative", "knowledge"):  # no intent on both sides
            assert not set(group.loc[taken, "intent"]) & set(group.loc[~taken, "intent"])
        assert 0 < taken.sum() < len(group)
    np.testing.assert_array_equal(mask, take_share(q, share, seed=3))
    # independent of the row order
    shuffled = q.sample(frac=1.0, random_state=1)
    again = take_share(shuffled, share, seed=3)
    assert set(shuffled.loc[again, "query_id"]) == set(q.loc[mask, "query_id"])
    assert set(q.loc[take_share(q, share, seed=4), "query_id"]) != set(q.loc[mask, "query_id"])


def test_take_share_without_intents_splits_by_query():
    q = _queries(with_intent=False)
    mask = take_share(q, 0.25, seed=0)
    assert all(mask[g.index].sum() == 10 for _, g in q.groupby("category"))
    assert not take_share(q, 0.0).any()


def _measured(n=300, seed=0):
    """Reasoning helps exactly the queries whose close probability (last scalar) is low."""
    rng = np.random.default_rng(seed)
    scalars = rng.normal(size=(n, 4))
    helps = scalars[:, 3] < -0.3
    hd = rng.uniform(0.2, 0.6, size=n)
    hr = np.where(helps, hd + 0.3, hd - rng.uniform(0, 0.02, size=n))
    cats = np.array(["plain", "qa", "alternative", "negative", "knowledge"])[np.arange(n) % 5]
    return {"direct": rng.normal(size=(n, 6)), "scalars": scalars, "hit_direct": hd, "hit_reason": hr,
            "category": cats, "qids": [f"q{i}" for i in range(n)]}, helps


def test_cross_fit_routes_each_fold_with_the_router_of_the_other():
    m, helps = _measured()
    fold = np.arange(len(helps)) % 2 == 0
    res = cross_fit(m, fold, tolerance=0.0, folds=5)
    assert res["routers"]["A"].stats["n_queries"] == (~fold).sum()  # A is routed by the router fitted on B
    assert res["routers"]["B"].stats["n_queries"] == fold.sum()
    np.testing.assert_array_equal(res["reason"][fold], res["routers"]["A"].decide(m["direct"][fold], m["scalars"][fold]))
    # a router that never saw a query still finds who gains
    assert (res["reason"] == helps).mean() > 0.85 and res["reason"].mean() < 0.6
    # refitting on B with A's labels scrambled changes nothing on A's decisions
    m2 = {**m, "hit_reason": m["hit_reason"].copy()}
    m2["hit_reason"][fold] = m["hit_direct"][fold]
    np.testing.assert_array_equal(cross_fit(m2, fold, tolerance=0.0, folds=5)["reason"][fold], res["reason"][fold])


def test_tradeoff_curve_runs_from_direct_to_always_reasoning():
    m, _ = _measured()
    fold = np.arange(len(m["qids"])) % 2 == 0
    res = cross_fit(m, fold, tolerance=0.0, folds=5)
    curve = tradeoff_curve(m, res["score"], fold, [0.0, 0.3, 1.0], n_boot=200)
    assert curve[0]["reason_share"] == 0.0 and curve[0]["hit_rate_routed"] == pytest.approx(m["hit_direct"].mean())
    assert curve[-1]["reason_share"] == 1.0 and curve[-1]["diff_routed_minus_always"] == pytest.approx(0.0)
    assert curve[1]["hit_rate_routed"] > curve[0]["hit_rate_routed"]
    reason = top_share(res["score"], fold, 0.3)
    assert reason[fold].sum() == round(0.3 * fold.sum()) and reason[~fold].sum() == round(0.3 * (~fold).sum())
