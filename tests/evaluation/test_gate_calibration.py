"""The gate on synthetic nights with known effects: the error it states is the error it makes.

Seeded and fast: each simulates a few hundred nights with the calibration's own night
(:func:`components.evaluation.calibrate.simulate_night`: resampled eval set, user-level
split A/B, interleaving, the gate's family and Holm).
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from components.config import PipelineConfig
from components.evaluation import calibrate as cal
from components.evaluation.gate import normal_power
from components.service.clicks import ClickModel
from components.service.interleave import credit, team_draft

CATS = ("plain", "qa", "negative", "knowledge", "alternative")


def _world(n=500, seed=0):
    rng = np.random.default_rng(seed)
    cats = np.array([CATS[i % 5] for i in range(n)], dtype=object)
    return cal.World([f"q{i}" for i in range(n)], cats, [set() for _ in range(n)], 0), rng


def _scored(name, hit, p_hit):
    return cal.Scored(name, np.zeros((len(hit), 1), dtype=np.int64), np.asarray(hit, float), np.asarray(p_hit, float))


def _rate(champion, challenger, world, cfg, traffic, nights, no_interleaving_effect=True, seed=0):
    inter = np.tile([0.3, 0.3], (len(world.qids), 1))  # a fair interleaving: no preference
    arms = cal.user_arms(cfg, traffic.n_users)
    vetoes = 0
    for night in range(nights):
        rng = np.random.default_rng([seed, night])
        vetoes += cal.simulate_night(rng, champion, challenger, inter, world, cfg, traffic, arms)["veto"]
    return vetoes / nights


def test_no_effect_vetoes_within_alpha():
    """Two different models of equal quality in every category (the challenger's per-query values are
    the champion's shuffled within each category): true effect 0 everywhere, offline and online."""
    world, rng = _world()
    hit = rng.beta(2, 2, len(world.qids))
    p_hit = rng.uniform(0.2, 0.8, len(world.qids))
    perm = np.arange(len(world.qids))
    for c in CATS:
        idx = np.flatnonzero(world.categories == c)
        perm[idx] = rng.permutation(idx)
    champion, challenger = _scored("A", hit, p_hit), _scored("A'", hit[perm], p_hit[perm])
    cfg = PipelineConfig()
    rate = _rate(champion, challenger, world, cfg, cal.Traffic("demo", 200, 400), 300)
    # stated error: at most alpha + srm_alpha = 5.1%; 300 nights at 5.1% exceed 8.7% with p < 0.01
    assert rate <= 0.087, rate


def test_stated_offline_effect_is_detected_at_the_stated_power():
    """A challenger worse by the effect whose stated power (at the worst-case Holm level) is 80%."""
    world, rng = _world()
    n = len(world.qids)
    hit = rng.beta(2, 2, n)
    noise = rng.normal(0, 0.2, n)
    cfg = PipelineConfig()
    family = 1 + 5 + 1  # overall, five categories, the online split (interleaving: underpowered here)
    level = cfg.gate.alpha / family
    se = np.std(noise, ddof=1) / np.sqrt(n)
    # the effect with 80% stated power for the overall test: (z(1 - level) + z(0.8)) * SE
    from scipy.stats import norm
    effect = (norm.ppf(1 - level) + norm.ppf(0.8)) * se
    assert normal_power(effect, 0.0, se, level) == pytest.approx(0.8)
    worse = hit - effect + noise - noise.mean()
    champion, challenger = _scored("A", hit, np.full(n, 0.5)), _scored("worse", worse, np.full(n, 0.5))
    rate = _rate(champion, challenger, world, cfg, cal.Traffic("demo", 200, 400), 300)
    # Holm's later steps and the category tests only add power: at least 80%, less 3 standard errors
    assert rate >= 0.8 - 3 * np.sqrt(0.8 * 0.2 / 300), rate


def test_stated_online_effect_is_detected_at_the_stated_power():
    """Offline identical, online judged-click HitRate lower by the effect the online row states 80% power for."""
    world, rng = _world()
    n = len(world.qids)
    hit = rng.beta(2, 2, n)
    p_hit = np.full(n, 0.5)
    cfg = PipelineConfig()
    traffic = cal.Traffic("large", 4000, 8000)
    level = cfg.gate.alpha / 2  # the offline rows of identical models have no spread: p = 1, Holm over 2 + online
    se = np.sqrt(2 * 0.25 / (traffic.n_requests / 2 / 2))  # two arms of 2000 searches, ~1 search a user
    from scipy.stats import norm
    effect = (norm.ppf(1 - cfg.gate.alpha / 7) + norm.ppf(0.8)) * se  # stated at the worst-case Holm level
    champion, challenger = _scored("A", hit, p_hit), _scored("worse", hit, p_hit - effect)
    rate = _rate(champion, challenger, world, cfg, traffic, 200)
    assert rate >= 0.8 - 3 * np.sqrt(0.8 * 0.2 / 200), (rate, effect, level)


def test_exact_interleaving_probabilities_match_simulated_clicks():
    clicks = ClickModel()
    champ = ["a", "r1", "b", "c", "d", "e", "f", "g", "h", "i"]
    chal = ["r2", "x", "r1", "y", "z", "w", "v", "u", "t", "s"]
    relevant = {"r1", "r2"}
    ids = {item: i for i, item in enumerate(sorted(set(champ + chal)))}
    p_chal, p_champ = cal.interleaving_probabilities([ids[x] for x in champ], [ids[x] for x in chal],
                                                     {ids[x] for x in relevant}, 10, clicks)
    rng = random.Random(0)
    wins = {"champion": 0, "challenger": 0, "tie": 0}
    trials = 20000
    for _ in range(trials):
        items, teams = team_draft(champ, chal, 10, rng)
        wins[credit([i for i, e in clicks.simulate(items, relevant, rng) if e == "click"], items, teams)] += 1
    assert wins["challenger"] / trials == pytest.approx(p_chal, abs=0.015)
    assert wins["champion"] / trials == pytest.approx(p_champ, abs=0.015)


def _synthetic_world(seed: int, n: int = 100, m: int = 300, d: int = 16):
    """A seeded embedding world: ``m`` random unit items, ``n`` queries with 3 relevant items each,
    every query at the mean of its items (categories in turn). Returns the generator (to draw
    more noise from), the world, the query embeddings and the item embeddings."""
    rng = np.random.default_rng(seed)
    items = cal._unit(rng.normal(size=(m, d)).astype(np.float32))
    rel = [set(rng.choice(m, 3, replace=False).tolist()) for _ in range(n)]
    q = cal._unit(np.stack([items[list(r)].mean(0) for r in rel]))
    world = cal.World([f"q{i}" for i in range(n)], np.array([CATS[i % 5] for i in range(n)], dtype=object), rel, m)
    return rng, world, q, items


def test_calibration_report_on_a_small_synthetic_world():
    """The whole calibration (scenarios, nights, summary, report) on a synthetic embedding world."""
    rng, world, q, items = _synthetic_world(0)
    base = cal.Embedded(q, cal._unit(q + 0.5 * rng.normal(size=q.shape).astype(np.float32)), items)
    plan = cal.Plan(nights=20, overall_shares=(0.2, 0.6), empty_cot_shares=(1.0,), category_shares=(1.0,),
                    traffics=(cal.Traffic("demo", 50, 100),), extra_overall=())
    out = cal.calibrate(base, None, world, PipelineConfig(), plan)
    names = [r["scenario"] for r in out["scenarios"]]
    assert names[0] == "A/A (same model)" and len(names) == 5
    aa = out["scenarios"][0]
    assert aa["true_offline_effect"] == 0.0 and aa["by_traffic"]["demo"]["nights"] == 20
    worst = out["scenarios"][2]  # noise on 60% of the queries: top 100 of 300 items, a real but small loss
    assert worst["true_offline_effect"] < -0.03 and worst["by_traffic"]["demo"]["veto_rate"] > 0.5, worst
    text = cal.format_report(out)
    assert "A/A (same model)" in text and "power at margin" in text
    null_only = cal.calibrate(base, None, world, PipelineConfig(), dataclasses.replace(plan, kinds=("null",)))
    assert [r["scenario"] for r in null_only["scenarios"]] == ["A/A (same model)"]
    assert null_only["scenarios"][0]["by_traffic"] == aa["by_traffic"]  # the same nights, the same figures


def test_the_extended_ladder_brackets_the_margin():
    """The ladder's (share, noise scale) extension: named by its scale, and the power at the margin
    read between the two steps whose true effects bracket -margin."""
    _, world, q, items = _synthetic_world(1)
    base = cal.Embedded(q, q, items)
    plan = cal.Plan(nights=20, overall_shares=(0.05,), extra_overall=((0.5, 2.0), (1.0, 4.0)), empty_cot_shares=(),
                    kinds=("overall",),
                    traffics=(cal.Traffic("demo", 50, 100),))
    out = cal.calibrate(base, None, world, PipelineConfig(), plan)
    names = [r["scenario"] for r in out["scenarios"]]
    assert names == ["A/A (same model)", "noise on 5% of queries", "noise x2 on 50% of queries",
                     "noise x4 on 100% of queries"]
    effects = [-r["true_offline_effect"] for r in out["scenarios"][1:]]
    assert min(effects) < 0.03 < max(effects), effects
    summary = out["summary"]["demo"]
    (x0, y0), (x1, y1) = summary["margin_bracket"]
    assert x0 <= 0.03 <= x1 and min(y0, y1) <= summary["power_at_margin"] <= max(y0, y1)
    ci = out["scenarios"][1]["true_offline_effect_ci95"]
    assert ci[0] <= out["scenarios"][1]["true_offline_effect"] <= ci[1]
