"""nDCG@K and Recall@K: hand-computed, then cross-checked against ir-measures (trec_eval) to 1e-6."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from components.evaluation.metrics import ndcg_at_k, retrieval_metrics

ir_measures = pytest.importorskip("ir_measures", reason="ir-measures is in requirements.lock; run `make env`")

SCIFACT_QRELS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "beir-scifact" / "qrels" / "test.tsv"


def test_ndcg_hand_computed_graded():
    grades = {"a": 3, "b": 1, "c": 2}
    # ranking b, x, a: DCG = 1/log2(2) + 0 + 3/log2(4); ideal a, c, b: 3 + 2/log2(3) + 1/log2(4)
    dcg = 1 + 3 / 2
    idcg = 3 + 2 / math.log2(3) + 1 / 2
    assert ndcg_at_k(["b", "x", "a"], grades, 10) == pytest.approx(dcg / idcg)
    # cut at 2: ideal is a, c only
    assert ndcg_at_k(["b", "x", "a"], grades, 2) == pytest.approx(1 / (3 + 2 / math.log2(3)))
    assert ndcg_at_k(["a", "c", "b"], grades, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x"], {}, 10) == 0.0


def test_binary_sets_and_graded_mappings_agree_on_binary_metrics():
    ranked = {"q": ["a", "x", "b", "y"]}
    binary = retrieval_metrics(ranked, {"q": {"a", "b", "c"}}, {}, hit_ks=(2, 4), precision_k=2, recall_ks=(2, 4))
    graded = retrieval_metrics(ranked, {"q": {"a": 2, "b": 1, "c": 3, "z": 0}}, {}, hit_ks=(2, 4), precision_k=2,
                               recall_ks=(2, 4))
    for key in ("hit_rate@2", "hit_rate@4", "precision@2", "recall@2", "recall@4"):
        assert binary["overall"][key] == pytest.approx(graded["overall"][key])  # grade 0 is not relevant
    assert binary["overall"]["recall@4"] == pytest.approx(2 / 3)
    assert binary["overall"]["ndcg@10"] != pytest.approx(graded["overall"]["ndcg@10"])


def _reference(qrels: dict[str, dict[str, int]], ranked: dict[str, list[str]], measures) -> dict:
    # Scores strictly decreasing with rank, so trec_eval's sort reproduces our order exactly.
    run = {q: {d: float(len(items) - r) for r, d in enumerate(items)} for q, items in ranked.items()}
    return {str(m): v for m, v in ir_measures.calc_aggregate(measures, qrels, run).items()}


def _compare(qrels: dict[str, dict[str, int]], ranked: dict[str, list[str]]) -> None:
    ks = (1, 5, 10, 100)
    ours = retrieval_metrics(ranked, qrels, {}, hit_ks=(10,), precision_k=10, ndcg_ks=ks, recall_ks=ks)["overall"]
    measures = [ir_measures.nDCG @ k for k in ks] + [ir_measures.R @ k for k in ks] + [ir_measures.P @ 10]
    ref = _reference(qrels, ranked, measures)
    for k in ks:
        assert ours[f"ndcg@{k}"] == pytest.approx(ref[f"nDCG@{k}"], abs=1e-6), f"nDCG@{k}"
        assert ours[f"recall@{k}"] == pytest.approx(ref[f"R@{k}"], abs=1e-6), f"R@{k}"
    assert ours["precision@10"] == pytest.approx(ref["P@10"], abs=1e-6)


def test_matches_ir_measures_on_random_graded_runs():
    rng = random.Random(13)
    docs = [f"d{i}" for i in range(400)]
    qrels, ranked = {}, {}
    for q in range(60):
        judged = rng.sample(docs, rng.randint(1, 30))
        # graded 0..3, at least one relevant per query (both sides then score the same queries)
        grades = {d: rng.randint(0, 3) for d in judged}
        grades[judged[0]] = rng.randint(1, 3)
        qrels[f"q{q}"] = grades
        pool = judged + rng.sample(docs, 150)
        rng.shuffle(pool)
        ranked[f"q{q}"] = list(dict.fromkeys(pool))[: rng.randint(5, 120)]
    _compare(qrels, ranked)


def test_matches_ir_measures_on_scifact_qrels():
    if not SCIFACT_QRELS.exists():
        pytest.skip(f"real data sample {SCIFACT_QRELS} is absent (../shared/data is not checked out)")
    qrels: dict[str, dict[str, int]] = {}
    for line in SCIFACT_QRELS.read_text().splitlines()[1:]:
        qid, did, score = line.strip().split("\t")
        qrels.setdefault(qid, {})[did] = int(score)
    all_docs = sorted({d for grades in qrels.values() for d in grades})
    rng = random.Random(5)
    # a noisy ranking: the relevant docs at random depths among distractors
    ranked = {}
    for qid, grades in qrels.items():
        items = rng.sample(all_docs, 100)
        for d in grades:
            if rng.random() < 0.8:
                items.insert(rng.randint(0, 30), d)
        ranked[qid] = list(dict.fromkeys(items))
    _compare(qrels, ranked)
