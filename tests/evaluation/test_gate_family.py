"""The gate's family of tests: Holm, the offline groups, the online user-level tests, the decision."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from components.artifacts import GateDecision
from components.config import GateConfig
from components.evaluation.gate import (TESTED, TOO_FEW, UNDERPOWERED, decide_on_evidence, family_decision, holm,
                                        normal_mde, normal_power, offline_tests, paired_test)
from components.service.analysis import (expected_judged_hit, interleaving_queries_needed, online_rows,
                                         preference_test, user_level_test)
from components.service.clicks import ClickModel
from components.service.replay import replay_seed


def test_holm_matches_the_step_down_definition():
    # p sorted 0.01, 0.02, 0.03, 0.5 with m = 4: 4*0.01, max(.04, 3*.02), max(.06, 2*.03), max(.06, .5)
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # 2 * 0.8 capped at 1, then monotone
    assert holm([0.3, 0.01]) == pytest.approx([0.3, 0.02])
    assert holm([1.0, 1.0, 1.0]) == [1.0, 1.0, 1.0]


def test_paired_test_one_sided_and_identical_models():
    rng = np.random.default_rng(0)
    champ = rng.random(400)
    worse = np.clip(champ - 0.05 + rng.normal(0, 0.05, 400), 0, 1)
    out = paired_test(worse, champ)
    assert out["p_value"] < 1e-6 and out["ci_high"] < 0 < out["ci_high"] - out["ci_low"]
    assert paired_test(champ, champ)["p_value"] == 1.0  # no spread, no evidence
    # the tolerance moves the null: a 0.05 regression is not significantly beyond a 0.2 tolerance
    assert paired_test(worse, champ, tolerance=0.2)["p_value"] > 0.99


def test_power_and_mde_are_consistent():
    se, level = 0.01, 0.05 / 6
    mde = normal_mde(0.0, se, level, 0.8)
    assert normal_power(mde, 0.0, se, level) == pytest.approx(0.8)
    assert normal_power(0.0, 0.0, se, level) == pytest.approx(level)


def _offline(n=600, qa_drop=0.0, seed=2, n_small=10):
    rng = np.random.default_rng(seed)
    qids = [f"q{i}" for i in range(n)]
    cats = {q: ("plain", "qa", "negative")[i % 3] for i, q in enumerate(qids)}
    for i in range(n_small):
        cats[f"s{i}"] = "rare"
    champ = {q: float(rng.random()) for q in cats}
    chal = {q: max(0.0, champ[q] - qa_drop) if cats[q] == "qa" else champ[q] + float(rng.normal(0, 0.01))
            for q in cats}
    return chal, champ, cats


def test_offline_tests_report_small_categories_and_state_power():
    chal, champ, cats = _offline()
    rows = offline_tests(chal, champ, cats, GateConfig(min_queries=30, margin=0.03, category_margins={"qa": 0.1}))
    assert list(rows)[0] == "overall" and rows["rare"]["status"] == TOO_FEW and "p_value" not in rows["rare"]
    assert {r["status"] for g, r in rows.items() if g != "rare"} == {TESTED}
    assert rows["qa"]["margin"] == 0.1 and rows["plain"]["margin"] == 0.03
    assert 0 < rows["plain"]["power"] <= 1 and rows["plain"]["mde"] > 0


def test_decision_names_the_metric_group_and_test_that_decided():
    chal, champ, cats = _offline(qa_drop=0.3)
    cfg = GateConfig()
    rows = {f"offline/{g}": r for g, r in offline_tests(chal, champ, cats, cfg).items()}
    base = GateDecision(True, "point estimate", "hit_rate@100", 0.5, 0.5)
    out = decide_on_evidence(base, rows, cfg, extra={"replay_seed": 1234})
    assert not out.promote and out.evidence["deciding"] == "offline/qa"
    assert "hit_rate@100 qa" in out.reason and "paired t-test" in out.reason and "Holm" in out.reason
    assert "rare" in out.reason  # reported, not tested
    assert out.evidence["replay_seed"] == 1234 and out.evidence["family_size"] == 4
    assert GateDecision.from_json(out.to_json()) == out
    json.dumps(dataclasses.asdict(out))
    # no effect anywhere: promoted, and the reason still names the closest test
    chal, champ, cats = _offline(qa_drop=0.0)
    rows = {f"offline/{g}": r for g, r in offline_tests(chal, champ, cats, cfg).items()}
    ok = decide_on_evidence(base, rows, cfg)
    assert ok.promote and "no significant regression" in ok.reason and "closest" in ok.reason


def test_sample_ratio_mismatch_vetoes_as_untrusted():
    chal, champ, cats = _offline()
    cfg = GateConfig()
    rows = {f"offline/{g}": r for g, r in offline_tests(chal, champ, cats, cfg).items()}
    out = decide_on_evidence(GateDecision(True, "", "hit_rate@100", 0.5, 0.5), rows, cfg,
                             srm={"mismatch": True, "observed": [10, 90], "p_value": 1e-9, "alpha": 0.001})
    assert not out.promote and "sample-ratio mismatch" in out.reason and out.evidence["untrusted"]


def test_no_champion_keeps_the_first_decision():
    first = GateDecision(True, "no champion yet", "hit_rate@100", 0.4)
    assert decide_on_evidence(first, {"offline/overall": {"status": TESTED, "p_value": 0.0}}, GateConfig()) is first


def test_user_level_test_accounts_for_users():
    """Users whose searches all succeed or all fail: 2000 searches but only 40 independent users."""
    rng = np.random.default_rng(3)
    per_user = 50
    champ_users = rng.random(20) < 0.5
    chal_users = rng.random(20) < 0.5
    num0, den0 = champ_users * per_user, np.full(20, per_user)
    num1, den1 = chal_users * per_user, np.full(20, per_user)
    user = user_level_test(num0, den0, num1, den1)
    # the search-level standard error would be sqrt(2 * .25 / 1000) = 0.022; the user-level one is ~7x that
    assert user["se"] > 0.1


def test_interleaving_counts_only_when_powered():
    cfg = GateConfig(alpha=0.05, interleaving_margin=0.05, power=0.8)
    needed = interleaving_queries_needed(0.05, 0.05 / 3, 0.8)
    assert 700 < needed < 1500
    few = {"interleaving": {"queries": 200, "decided": 150, "preference": 0.3,
                            "user_level": preference_test(np.r_[np.zeros(100), np.ones(50)], np.ones(150))}}
    rows = online_rows(few, cfg, k=10, offline_tested=1)
    assert rows["online/interleaving"]["status"] == UNDERPOWERED and rows["online/interleaving"]["needed"] == needed
    assert not family_decision(rows, cfg)["veto"]  # a strong loss on too few queries is reported, not a veto
    n = needed + 10
    many = {"interleaving": {"queries": n, "decided": n, "preference": 0.3,
                             "user_level": preference_test((np.arange(n) % 10 < 3).astype(float), np.ones(n))}}
    rows = online_rows(many, cfg, k=10, offline_tested=1)
    assert rows["online/interleaving"]["status"] == TESTED and family_decision(rows, cfg)["veto"]


def test_expected_judged_hit_follows_the_click_model():
    model = ClickModel(decay=1.0, click_relevant=0.9)
    out = expected_judged_hit({"q": ["a", "rel", "b"], "none": ["a"]}, {"q": {"rel"}, "none": {"x"}}, 10, model)
    assert out["q"] == pytest.approx(0.45) and out["none"] == 0.0  # examine rank 2 with 1/2, click 0.9


def test_replay_seed_is_fixed_by_the_run_and_fresh_per_night():
    assert replay_seed("scheduled__2026-12-01", "abc.dir") == replay_seed("scheduled__2026-12-01", "abc.dir")
    seeds = {replay_seed(f"scheduled__2026-12-{d:02d}", "abc.dir") for d in range(1, 31)}
    assert len(seeds) == 30 and replay_seed("r", "a") != replay_seed("r", "b")


def test_gate_report_shows_effect_ci_margin_power_and_the_deciding_test(tmp_path):
    from components.evaluation.report import write_gate_report

    chal, champ, cats = _offline(qa_drop=0.3)
    cfg = GateConfig()
    rows = {f"offline/{g}": r for g, r in offline_tests(chal, champ, cats, cfg).items()}
    out = decide_on_evidence(GateDecision(True, "", "hit_rate@100", 0.5, 0.5), rows, cfg,
                             extra={"replay_seed": 4242})
    page = write_gate_report(tmp_path, out).read_text()
    qa = out.evidence["family"]["offline/qa"]
    assert "KEEP CHAMPION" in page and "4242" in page
    for header in ("effect", "95% CI", "margin", "power at margin", "test used", "Holm p", "decided"):
        assert f"<th>{header}</th>" in page
    row = next(line for line in page.split("<tr>") if line.startswith("<td>offline/qa</td>"))
    assert f"{qa['effect']:+.4f}" in row and f"{qa['ci_low']:+.4f}" in row and "0.0300" in row
    assert "paired t-test" in row and "REJECTED" in row and "decided" in row
    rare = next(line for line in page.split("<tr>") if line.startswith("<td>offline/rare</td>"))
    assert "too few queries" in rare


@pytest.mark.parametrize("bad", [{"alpha": 0.0}, {"power": 1.0}, {"interleaving_margin": 0.5}, {"min_queries": 1},
                                 {"margin": -0.01}, {"category_margins": {"qa": -0.1}}])
def test_gate_config_bounds_are_checked(bad):
    from components.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="gate: need"):
        load_config("configs/demo.yaml", {"gate": bad})


def test_category_tolerance_moves_only_the_categories_null():
    """gate.category_tolerance: a category vetoes only a regression shown to exceed it; overall keeps gate.tolerance."""
    rng = np.random.default_rng(3)
    n = 400
    cats = {f"q{i}": ("plain" if i < 200 else "qa") for i in range(n)}
    champ = {q: float(rng.uniform(0.3, 0.9)) for q in cats}
    noise = {q: float(rng.normal(0, 0.02)) for q in cats}
    for drop, vetoed_at_margin in ((0.03, False), (0.25, True)):  # qa worse by `drop`, plain as good
        chal = {q: champ[q] + noise[q] - (drop if cats[q] == "qa" else 0.0) for q in cats}
        plain_rule = offline_tests(chal, champ, cats, GateConfig(category_tolerance=None))
        at_margin = offline_tests(chal, champ, cats, GateConfig(category_tolerance=0.03))
        assert plain_rule["qa"]["tolerance"] == 0.0 and at_margin["qa"]["tolerance"] == 0.03
        assert at_margin["overall"]["tolerance"] == plain_rule["overall"]["tolerance"] == 0.0
        assert at_margin["overall"]["p_value"] == plain_rule["overall"]["p_value"]  # overall untouched
        assert plain_rule["qa"]["p_value"] < 0.01  # tolerance 0: the 0.03 drop is a clear regression
        assert (at_margin["qa"]["p_value"] < 0.01) is vetoed_at_margin
        assert at_margin["qa"]["p_value"] > plain_rule["qa"]["p_value"]
        # power at the margin is at most the level when the null sits at the margin
        assert at_margin["qa"]["power"] <= 0.05 < plain_rule["qa"]["power"]
    with pytest.raises(Exception, match="category_tolerance"):
        from components.config import load_config

        load_config("configs/smoke.yaml", {"gate": {"category_tolerance": -0.1}})


def test_categories_are_tested_against_their_margin_by_default():
    assert GateConfig().category_tolerance == GateConfig().margin == 0.03
