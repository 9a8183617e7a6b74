"""Sequential evidence across nights: the always-valid test keeps its error under repeated looks."""

from __future__ import annotations

import numpy as np

from components.evaluation.sequential import Ledger, always_valid_p, clearly_better, combine_nights, sequential_row


def _ever_rejected(effect: float, nights: int, runs: int, tau: float, alpha: float, seed: int):
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.03, 0.08, size=(runs, nights))  # each night's own standard error
    est = effect + rng.normal(size=(runs, nights)) * se
    sequential = naive = 0
    for e, s in zip(est, se):
        d, v = combine_nights(e, s ** 2)
        p = always_valid_p(e, s ** 2, tau)
        sequential += any(pi <= alpha and di < 0 for pi, di in zip(p, d))
        naive += any(di / np.sqrt(vi) < -1.6449 for di, vi in zip(d, v))  # a fixed-sample one-sided test every night
    return sequential / runs, naive / runs


def test_repeated_looks_keep_the_error_with_msprt_and_inflate_it_without():
    seq, naive = _ever_rejected(0.0, nights=10, runs=3000, tau=0.1, alpha=0.05, seed=0)
    assert seq <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 3000), seq  # always valid: at most alpha, however many looks
    assert naive > 0.12, naive  # looking every night with a one-night test: well above 5%


def test_msprt_detects_a_regression_as_nights_accumulate():
    # one night's SE is 0.03-0.08: a regression of 0.08 is caught within 10 nights in > 80% of the runs
    # (measured 97%; at 0.05, 60%: the price of validity under every look)
    seq, _ = _ever_rejected(-0.08, nights=10, runs=1000, tau=0.1, alpha=0.05, seed=1)
    assert seq > 0.8, seq


def test_sequential_row_and_ledger(tmp_path):
    ledger = Ledger(tmp_path, "1", "2")
    ledger.add("night-1", -0.04, 0.02)
    nights = ledger.add("night-2", -0.06, 0.02)
    assert len(Ledger(tmp_path, "1", "2").nights) == 2
    assert len(ledger.add("night-2", -0.06, 0.02)) == 2  # a retried run replaces its own night
    row = sequential_row(nights, {"p_value": 0.2, "tolerance": 0.0, "metric": "hit_rate_judged@10"}, tau=0.1)
    assert row["nights"] == 2 and abs(row["effect"] + 0.05) < 1e-12 and row["one_night_p"] == 0.2
    assert 0 < row["p_value"] < 0.05 and "mSPRT" in row["test"]  # -0.05 with a pooled SE of 0.014
    up = sequential_row([{"effect": 0.05, "se": 0.01}], {"p_value": 0.9}, tau=0.1)
    assert up["p_value"] >= 0.5  # an improvement is never evidence of a regression
    assert clearly_better({"ci_low": 0.01}) and not clearly_better({"ci_low": -0.01})


def test_gate_keeps_an_inconclusive_challenger_when_sequential():
    from components.artifacts import GateDecision
    from components.config import GateConfig
    from components.evaluation.gate import decide_on_evidence

    rng = np.random.default_rng(0)
    champ = rng.random(300)
    same = champ + rng.normal(0, 0.05, 300)
    better = champ + 0.05 + rng.normal(0, 0.05, 300)
    from components.evaluation.gate import offline_tests_arrays

    cats = np.array(["plain"] * 300, dtype=object)
    base = GateDecision(True, "", "hit_rate@100", 0.5, 0.5)
    for sequential, chal, promote, word in ((False, same, True, "no significant regression"),
                                            (True, same, False, "kept as challenger"),
                                            (True, better, True, "no significant regression")):
        rows = {f"offline/{g}": r for g, r in offline_tests_arrays(chal, champ, cats, GateConfig()).items()}
        out = decide_on_evidence(base, rows, GateConfig(sequential=sequential))
        assert out.promote is promote and word in out.reason
