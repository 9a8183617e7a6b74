"""Retrieval metrics against hand-computed values."""

from __future__ import annotations

import pytest
from mlflow.utils.validation import _validate_metric_name

from components.evaluation.metrics import flatten_metrics, mlflow_key, retrieval_metrics

RANKED = {
    "q1": ["a", "b", "c", "d", "e"],  # relevant a, c, x
    "q2": ["x", "y", "z"],  # relevant y
    "q3": ["p", "q"],  # relevant r, s: no hit
    "q4": ["a", "b"],  # nothing judged relevant: not scored
    "q5": ["m"],  # relevant m, no category: overall only
}
RELEVANT = {"q1": {"a", "c", "x"}, "q2": {"y"}, "q3": {"r", "s"}, "q4": set(), "q5": {"m"}}
CATEGORIES = {"q1": "qa", "q2": "qa", "q3": "plain", "q4": "negative"}


def test_hand_computed_overall_and_per_category():
    m = retrieval_metrics(RANKED, RELEVANT, CATEGORIES, hit_ks=(2, 5), precision_k=2)

    assert list(m) == ["overall", "plain", "qa"]  # negative only had an unscored query
    # q1: 1/3 of its 3 relevant items in the top 2, 2/3 in the top 5 (the paper's HitRate,
    # not "any hit"); q2: 1, 1; q3: 0, 0; q5: 1, 1
    assert m["qa"]["hit_rate@2"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["qa"]["hit_rate@5"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["qa"]["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert m["qa"]["n_queries"] == 2
    assert m["plain"] == {"hit_rate@2": 0.0, "hit_rate@5": 0.0, "precision@2": 0.0, "ndcg@10": 0.0,
                          "recall@100": 0.0, "n_queries": 1}
    assert m["overall"]["hit_rate@2"] == pytest.approx((1 / 3 + 1 + 0 + 1) / 4)
    assert m["overall"]["hit_rate@5"] == pytest.approx((2 / 3 + 1 + 0 + 1) / 4)
    # precision divides by K even when fewer than K items came back (q5 returned one)
    assert m["overall"]["precision@2"] == pytest.approx((0.5 + 0.5 + 0 + 0.5) / 4)
    assert m["overall"]["n_queries"] == 4


def test_default_ks_and_duplicates_in_a_ranking():
    ranked = {"q": ["a", "a", "b"] + [f"n{i}" for i in range(120)] + ["c"]}
    m = retrieval_metrics(ranked, {"q": {"a", "b", "c"}}, {"q": "knowledge"})
    assert set(m["overall"]) == {"hit_rate@10", "hit_rate@50", "hit_rate@100", "precision@10", "ndcg@10",
                                 "recall@100", "n_queries"}
    assert m["knowledge"]["hit_rate@10"] == pytest.approx(2 / 3)  # a counted once
    assert m["knowledge"]["hit_rate@100"] == pytest.approx(2 / 3)  # c is at rank 124
    assert m["knowledge"]["precision@10"] == pytest.approx(2 / 10)


def test_no_scored_queries():
    m = retrieval_metrics({"q": ["a"]}, {}, {"q": "qa"}, hit_ks=(1,), precision_k=1)
    assert m == {"overall": {"hit_rate@1": 0.0, "precision@1": 0.0, "ndcg@10": 0.0, "recall@100": 0.0,
                             "n_queries": 0}}


def test_flatten_gives_valid_mlflow_names():
    m = retrieval_metrics(RANKED, RELEVANT, CATEGORIES, hit_ks=(2, 100), precision_k=10)
    flat = flatten_metrics(m, "challenger")
    assert flat["challenger.qa.hit_rate_at_100"] == pytest.approx(m["qa"]["hit_rate@100"])
    assert flat["challenger.overall.precision_at_10"] == pytest.approx(m["overall"]["precision@10"])
    assert flat["challenger.plain.n_queries"] == 1.0
    for name in flat:
        _validate_metric_name(name)  # raises on a name MLflow would reject
    assert flatten_metrics({"overall": {"hit_rate@10": 0.5}}) == {"overall.hit_rate_at_10": 0.5}
    assert mlflow_key("offline.hit_rate@100") == "offline.hit_rate_at_100"
    assert mlflow_key("a:b#c") == "a_b_c"


def test_the_gate_may_decide_on_ndcg_or_recall():
    from components.config import ConfigError, load_config
    from components.evaluation.metrics import retrieval_metrics

    computed = set(retrieval_metrics(RANKED, RELEVANT, CATEGORIES)["overall"])
    for metric in ("ndcg@10", "recall@100"):
        assert metric in computed
        assert load_config("configs/demo.yaml", {"gate": {"metric": metric}}).gate.metric == metric
    with pytest.raises(ConfigError):
        load_config("configs/demo.yaml", {"gate": {"metric": "ndcg@11"}})
