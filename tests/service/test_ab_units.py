"""The A/B building blocks: split, click model, team-draft interleaving, analysis, event store."""

from __future__ import annotations

import random
import uuid

import numpy as np
import pandas as pd
import pytest

from components.service.analysis import analyze, proportion_test, srm_check
from components.service.clicks import ClickModel
from components.service.interleave import credit, team_draft
from components.service.split import CHALLENGER, CHAMPION, assign_arm, bucket


# ------------------------------------------------------------------------------ split
def test_split_is_stable_and_salted():
    users = [f"u{i}" for i in range(2000)]
    first = [assign_arm(u, "exp-1", 0.3) for u in users]
    assert first == [assign_arm(u, "exp-1", 0.3) for u in users]  # same user, same arm, every time
    other = [assign_arm(u, "exp-2", 0.3) for u in users]
    moved = sum(a != b for a, b in zip(first, other)) / len(users)
    assert 0.3 < moved < 0.5  # a new salt reshuffles (expected 2 * 0.3 * 0.7 = 0.42)
    # growing the share only moves champion users into the challenger arm
    wider = [assign_arm(u, "exp-1", 0.5) for u in users]
    assert all(w == CHALLENGER for f, w in zip(first, wider) if f == CHALLENGER)


@pytest.mark.parametrize("share", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_split_shares_within_tolerance(share):
    n = 20000
    got = sum(assign_arm(f"user-{i}", "salt", share) == CHALLENGER for i in range(n)) / n
    # 4 binomial standard errors (plus a hair for the exact ends)
    assert abs(got - share) <= 4 * np.sqrt(share * (1 - share) / n) + 1e-9


def test_bucket_is_uniform():
    from scipy.stats import kstest

    values = [bucket(str(i), "s") for i in range(5000)]
    assert kstest(values, "uniform").pvalue > 0.001
    with pytest.raises(ValueError):
        assign_arm("u", "s", 1.5)


# ------------------------------------------------------------------------ click model
def test_click_model_is_position_biased_and_follows_judgments():
    model = ClickModel(decay=1.0, click_relevant=0.9, click_irrelevant=0.05, purchase_given_click=0.5)
    rng = random.Random(0)
    items = [f"i{r}" for r in range(10)]
    n = 20000
    clicks = np.zeros(10)
    purchases = 0
    for _ in range(n):
        for item, event in model.simulate(items, {"i0", "i4"}, rng):
            if event == "click":
                clicks[int(item[1:])] += 1
            else:
                purchases += 1
                assert item in {"i0", "i4"}  # purchases only of relevant items
    rate = clicks / n
    assert abs(rate[0] - 0.9) < 0.015  # rank 1, relevant: examined always
    assert abs(rate[4] - 0.9 / 5) < 0.015  # rank 5, relevant: examined 1/5
    assert abs(rate[1] - 0.05 / 2) < 0.006  # rank 2, irrelevant: noise
    assert rate[0] > rate[4] > rate[1] and rate[1] > rate[9]
    assert abs(purchases / n - 0.5 * (0.9 + 0.18)) < 0.02


# ----------------------------------------------------------------------- interleaving
def test_team_draft_takes_turns_without_duplicates():
    a = ["a1", "s1", "a2", "a3", "a4"]
    b = ["b1", "s1", "b2", "b3", "b4"]
    for seed in range(50):
        items, teams = team_draft(a, b, 6, random.Random(seed))
        assert len(items) == 6 and len(set(items)) == 6
        assert abs(teams.count("champion") - teams.count("challenger")) <= 1
        # each team's items keep their own ranking order
        for team, ranking in (("champion", a), ("challenger", b)):
            mine = [i for i, t in zip(items, teams) if t == team]
            assert mine == sorted(mine, key=ranking.index)
    # identical rankings: the shown list is the ranking itself
    items, _ = team_draft(a, a, 5, random.Random(1))
    assert items == a
    # one ranking runs out: the other fills in
    items, teams = team_draft(["x"], b, 4, random.Random(2))
    assert len(items) == 4 and teams.count("champion") == 1


def test_interleaving_credit_and_sensitivity():
    assert credit(["b1"], ["a1", "b1"], ["champion", "challenger"]) == "challenger"
    assert credit([], ["a1", "b1"], ["champion", "challenger"]) == "tie"
    assert credit(["a1", "b1"], ["a1", "b1"], ["champion", "challenger"]) == "tie"
    # a challenger that ranks the relevant item first wins under the click model
    model, rng, wins = ClickModel(), random.Random(0), {"champion": 0, "challenger": 0, "tie": 0}
    champ = [f"n{i}" for i in range(10)] + ["rel"]
    chal = ["rel"] + [f"m{i}" for i in range(10)]
    for _ in range(300):
        items, teams = team_draft(champ, chal, 10, rng)
        wins[credit([i for i, e in model.simulate(items, {"rel"}, rng) if e == "click"], items, teams)] += 1
    assert wins["challenger"] > 5 * wins["champion"]


# --------------------------------------------------------------------------- analysis
def synthetic_logs(n_users: int, p_champion: float, p_challenger: float, share: float, rng: np.random.Generator,
                   searches_per_user: int = 2):
    """Split-mode logs where a search's click lands on a judged item with the arm's probability."""
    rows, fb = [], []
    for u in range(n_users):
        user = f"user{u}"
        arm = assign_arm(user, "synthetic", share)
        p = p_challenger if arm == CHALLENGER else p_champion
        for s in range(searches_per_user):
            rid = uuid.uuid4().hex
            q = f"q{(u + s) % 5}"
            rows.append({"request_id": rid, "user_id": user, "mode": "split", "arm": arm, "query": q,
                         "latency_ms": float(rng.gamma(4, 5)), "item_ids": ["rel", "x"], "teams": None})
            if rng.random() < p:
                fb.append({"request_id": rid, "item_id": "rel", "event": "click"})
            elif rng.random() < 0.1:
                fb.append({"request_id": rid, "item_id": "x", "event": "click"})
    searches = pd.DataFrame(rows)
    feedback = pd.DataFrame(fb, columns=["request_id", "item_id", "event"])
    relevant = {f"q{i}": {"rel"} for i in range(5)}
    categories = {f"q{i}": ("plain", "qa")[i % 2] for i in range(5)}
    return searches, feedback, relevant, categories


def test_analysis_detects_a_known_regression():
    rng = np.random.default_rng(1)
    result = analyze(*synthetic_logs(1500, 0.40, 0.30, 0.5, rng), challenger_share=0.5, alpha=0.05)
    primary = result["tests"]["overall/hit_rate_judged"]
    assert primary["regression"] and primary["significant"]
    assert abs(primary["challenger"] - 0.30) < 0.03 and abs(primary["champion"] - 0.40) < 0.03
    assert result["regression"] and "hit_rate_judged" in result["reason"]
    assert not result["srm"]["mismatch"]
    assert set(result["table"]) == {"overall", "plain", "qa"}
    assert result["table"]["overall"][CHAMPION]["latency_p95_ms"] > result["table"]["overall"][CHAMPION]["latency_p50_ms"]


def test_analysis_without_effect_rejects_at_most_alpha():
    """A/A: the one-sided test at alpha 0.05 must flag at most ~5% of experiments."""
    rng = np.random.default_rng(2)
    trials, flagged = 200, 0
    for _ in range(trials):
        searches, feedback, relevant, categories = synthetic_logs(300, 0.35, 0.35, 0.5, rng, searches_per_user=1)
        out = proportion_test(*_counts(searches, feedback), alpha=0.05)
        flagged += out["regression"]
    # Fisher's exact test is conservative: expected <= 10 of 200; 17 is the 99.5% binomial bound at 0.05
    assert flagged <= 17, f"{flagged}/{trials} A/A experiments flagged at alpha 0.05"


def _counts(searches, feedback):
    hit = set(feedback[feedback["item_id"] == "rel"]["request_id"])
    champ = searches[searches["arm"] == CHAMPION]
    chal = searches[searches["arm"] == CHALLENGER]
    return (int(champ["request_id"].isin(hit).sum()), len(champ), int(chal["request_id"].isin(hit).sum()), len(chal))


def test_analysis_no_effect_is_not_a_regression():
    rng = np.random.default_rng(3)
    result = analyze(*synthetic_logs(1500, 0.35, 0.35, 0.5, rng), challenger_share=0.5, alpha=0.05)
    assert not result["regression"], result["reason"]


def test_sample_ratio_mismatch():
    assert srm_check(5000, 5000, 0.5)["mismatch"] is False
    assert srm_check(5300, 4700, 0.5)["mismatch"] is True  # 3% off at n=10,000
    rng = np.random.default_rng(4)
    searches, feedback, relevant, categories = synthetic_logs(1000, 0.3, 0.3, 0.5, rng)
    result = analyze(searches, feedback, relevant, categories, challenger_share=0.2)  # told the wrong share
    assert result["srm"]["mismatch"] and result["regression"] and "sample-ratio" in result["reason"]


def test_interleaving_analysis_detects_preference():
    rng = random.Random(5)
    model = ClickModel()
    rows, fb = [], []
    champ = [f"n{i}" for i in range(10)]
    chal = ["rel"] + [f"m{i}" for i in range(9)]
    for i in range(200):
        items, teams = team_draft(champ, chal, 10, rng)
        rid = f"r{i}"
        rows.append({"request_id": rid, "user_id": f"u{i}", "mode": "interleave", "arm": "interleaved",
                     "query": "q", "latency_ms": 1.0, "item_ids": items, "teams": teams})
        fb += [{"request_id": rid, "item_id": it, "event": ev} for it, ev in model.simulate(items, {"rel"}, rng)]
    result = analyze(pd.DataFrame(rows), pd.DataFrame(fb), {"q": {"rel"}}, {"q": "plain"}, challenger_share=0.5)
    inter = result["interleaving"]
    assert inter["preference"] > 0.8 and inter["p_value"] < 1e-6
    assert result["interleaving_by_category"]["plain"]["queries"] == 200
    assert not result["regression"]


def test_event_store_roundtrip(tmp_path):
    from components.service.events import EventStore

    store = EventStore(f"sqlite:///{tmp_path / 'events.db'}")
    store.log_search({"request_id": "r1", "ts": 1.0, "user_id": "u", "experiment": "e", "mode": "split",
                      "arm": CHAMPION, "model_version": "1", "collection": "c", "query": "q", "k": 2,
                      "reasoning": True, "cot": "x", "item_ids": ["a", "b"], "scores": [0.9, 0.8], "teams": None,
                      "latency_ms": 3.0, "queue_ms": 1.0})
    store.log_feedback({"ts": 2.0, "request_id": "r1", "item_id": "b", "event": "click", "arm": CHAMPION,
                        "team": None, "position": 2})
    assert store.get_search("r1")["item_ids"] == ["a", "b"]
    assert store.get_search("nope") is None
    assert store.counts() == {"search_events": 1, "feedback_events": 1}
    searches, feedback = store.frames(experiment="e")
    assert list(searches["item_ids"]) == [["a", "b"]] and len(feedback) == 1
    store.close()
