"""The gate on offline (paired bootstrap per category) and online evidence together."""

from __future__ import annotations

import numpy as np

from components.artifacts import GateDecision, OnlineReport
from components.service.gate import combine, offline_comparison, paired_bootstrap


def test_paired_bootstrap_interval_covers_the_true_difference():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    better = np.clip(base + 0.05 + rng.normal(0, 0.05, 400), 0, 1)
    out = paired_bootstrap(better, base, n_boot=2000, seed=1)
    assert out["ci_low"] > 0 and out["ci_low"] < out["diff"] < out["ci_high"]
    same = paired_bootstrap(base, base, n_boot=500)
    assert same["diff"] == same["ci_low"] == same["ci_high"] == 0.0


def test_offline_comparison_flags_only_the_regressing_category():
    rng = np.random.default_rng(2)
    qids = [f"q{i}" for i in range(600)]
    cats = {q: ("plain", "qa", "negative")[i % 3] for i, q in enumerate(qids)}
    champ = {q: float(rng.random()) for q in qids}
    chal = {q: (max(0.0, champ[q] - 0.3) if cats[q] == "qa" else champ[q] + float(rng.normal(0, 0.01)))
            for q in qids}
    out = offline_comparison(chal, champ, cats, margin=0.02, n_boot=1000)
    assert "qa" in out["regressions"]
    assert "plain" not in out["regressions"] and "negative" not in out["regressions"]
    # the same models, no effect anywhere: nothing flagged
    assert offline_comparison(champ, champ, cats, margin=0.0, n_boot=500)["regressions"] == []


def _decision(champion_value=0.5):
    return GateDecision(promote=False, reason="point estimate lower", metric="hit_rate@100", challenger_value=0.49,
                        champion_value=champion_value)


def test_combine_promotes_without_significant_regression_and_names_the_numbers():
    ci = {"overall": {"diff": -0.01, "ci_low": -0.04, "ci_high": 0.02, "challenger": 0.49, "champion": 0.5, "n": 500}}
    online = OnlineReport(model_version="2", champion_version="1", compared=True, regression=False,
                          reason="no significant online regression: hit_rate_judged 0.31 vs champion 0.30",
                          report_uri="", offline_ci=ci)
    out = combine(_decision(), online, "hit_rate@100")
    assert out.promote and "0.4900 vs champion 0.5000" in out.reason and "-0.0400" in out.reason
    assert "hit_rate_judged 0.31" in out.reason


def test_combine_blocks_offline_category_and_online_regressions():
    ci = {"overall": {"diff": -0.01, "ci_low": -0.03, "ci_high": 0.01, "challenger": 0.49, "champion": 0.5, "n": 500},
          "qa": {"diff": -0.2, "ci_low": -0.3, "ci_high": -0.1, "challenger": 0.3, "champion": 0.5, "n": 100}}
    offline_bad = OnlineReport(model_version="2", champion_version="1", compared=True, regression=False,
                               reason="no significant online regression", report_uri="", offline_ci=ci,
                               offline_regressions=["qa"])
    out = combine(_decision(), offline_bad, "hit_rate@100")
    assert not out.promote and "qa 0.3000 vs 0.5000" in out.reason
    online_bad = OnlineReport(model_version="2", champion_version="1", compared=True, regression=True,
                              reason="online regression: hit_rate_judged 0.20 vs champion 0.30 (Fisher p=0.001)",
                              report_uri="", offline_ci={"overall": ci["overall"]})
    out = combine(GateDecision(True, "ok", "hit_rate@100", 0.6, 0.5), online_bad, "hit_rate@100")
    assert not out.promote and "Fisher p=0.001" in out.reason


def test_combine_without_champion_keeps_the_offline_decision():
    none = OnlineReport(model_version="1", champion_version=None, compared=False, regression=False,
                        reason="no champion yet", report_uri="")
    first = GateDecision(True, "no champion yet: challenger hit_rate@100 = 0.4", "hit_rate@100", 0.4)
    assert combine(first, none, "hit_rate@100") == first


def test_combine_with_the_family_of_tests_decides_by_holm_and_records_the_seed():
    from components.config import GateConfig
    from components.evaluation.gate import offline_tests
    from components.service.analysis import online_rows, preference_test, user_level_test

    rng = np.random.default_rng(7)
    qids = [f"q{i}" for i in range(300)]
    cats = {q: ("plain", "qa")[i % 2] for i, q in enumerate(qids)}
    champ = {q: float(rng.random()) for q in qids}
    chal = {q: champ[q] + float(rng.normal(0, 0.01)) for q in qids}
    cfg = GateConfig()
    family = {f"offline/{g}": r for g, r in offline_tests(chal, champ, cats, cfg).items()}
    users = np.full(100, 2.0)
    online = {"user_level": {"hit_rate_judged": user_level_test(rng.binomial(2, 0.5, 100), users,
                                                                rng.binomial(2, 0.2, 100), users)},
              "interleaving": {"queries": 200, "decided": 100,
                               "user_level": preference_test(rng.binomial(1, 0.5, 100), np.ones(100))}}
    family.update(online_rows(online, cfg, 10, offline_tested=3))
    report = OnlineReport(model_version="2", champion_version="1", compared=True, regression=True,
                          reason="online regression", report_uri="",
                          tests={"family": family, "srm": {"mismatch": False}, "replay_seed": 99})
    out = combine(_decision(), report, cfg)
    assert not out.promote and out.evidence["deciding"] == "online/hit_rate_judged@10"
    assert "hit_rate_judged@10" in out.reason and "user-level delta method" in out.reason
    assert out.evidence["replay_seed"] == 99 and out.evidence["family_size"] == 4  # interleaving: reported only
    assert out.evidence["family"]["online/interleaving"]["status"].startswith("underpowered")
