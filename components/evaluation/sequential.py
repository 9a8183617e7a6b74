"""Sequential evidence across nights: an always-valid test of the online primary metric.

A challenger that one night neither vetoes nor shows clearly better can be kept as
challenger and compared again the next night with more traffic. Testing the growing
evidence again every night with a fixed-sample test would inflate the error (each look is
another chance of a false veto). The mixture sequential probability ratio test (mSPRT,
Robbins 1970; as an always-valid p-value: Johari, Koomen, Pekelis and Walsh, "Always Valid
Inference", Operations Research 2022) keeps it: with the effect estimate after n nights
``d_n`` (inverse-variance-weighted over the nights) and its variance ``V_n``, and a normal
mixture N(0, tau^2) over the effect under the alternative,

    Lambda_n = sqrt(V_n / (V_n + tau^2)) * exp(tau^2 * (d_n + tolerance)^2 / (2 V_n (V_n + tau^2)))

and the always-valid p-value ``p_n = min(p_{n-1}, 1 / Lambda_n)``: under H0 (effect = -tolerance)
P(p_n <= alpha for some n) <= alpha, however many nights are looked at (the normal
approximation of each night's estimate assumed). The mixture is two-sided; a veto also
needs the estimate below -tolerance, which keeps the one-sided error below alpha. tau is the
margin (``gate.online_margin``): the mixture puts its weight on regressions of the size
that matters. The ledger of nights is a JSON file per (champion, challenger) pair in the
state dir. Tested: ``tests/evaluation/test_gate_sequential.py`` (error under repeated looks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def combine_nights(effects: Sequence[float], variances: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative inverse-variance-weighted effect and its variance after each night."""
    e = np.asarray(effects, float)
    w = 1.0 / np.asarray(variances, float)
    cw = np.cumsum(w)
    return np.cumsum(w * e) / cw, 1.0 / cw


def always_valid_p(effects: Sequence[float], variances: Sequence[float], tau: float,
                   tolerance: float = 0.0) -> list[float]:
    """The mSPRT always-valid p-value after each night (two-sided normal mixture of scale ``tau``)."""
    d, v = combine_nights(effects, variances)
    z = d + tolerance
    log_lr = 0.5 * np.log(v / (v + tau ** 2)) + tau ** 2 * z ** 2 / (2 * v * (v + tau ** 2))
    p = np.minimum(1.0, np.exp(-log_lr))
    return np.minimum.accumulate(p).tolist()


def sequential_row(nights: Sequence[Mapping[str, float]], row: Mapping[str, Any], tau: float) -> dict[str, Any]:
    """The online row of tonight's family with the evidence of every night so far: the always-valid
    p replaces the one-night p (0.5 when the pooled estimate is not below -tolerance)."""
    tol = float(row.get("tolerance", 0.0) or 0.0)
    effects = [n["effect"] for n in nights]
    variances = [n["se"] ** 2 for n in nights]
    d, v = combine_nights(effects, variances)
    p = always_valid_p(effects, variances, tau, tol)[-1]
    out = dict(row)
    out.update(effect=float(d[-1]), se=float(np.sqrt(v[-1])), one_night_p=row.get("p_value"),
               p_value=p if d[-1] < -tol else max(p, 0.5), nights=len(nights),
               ci_low=float(d[-1] - 1.96 * np.sqrt(v[-1])), ci_high=float(d[-1] + 1.96 * np.sqrt(v[-1])),
               test=f"mSPRT always-valid p over {len(nights)} nights (tau {tau:g}), user-level effects")
    return out


class Ledger:
    """The nights of one (champion, challenger) comparison, kept across pipeline runs."""

    def __init__(self, root: Path, champion: str, challenger: str):
        self.path = Path(root) / f"champion-v{champion}_challenger-v{challenger}.json"
        self.nights: list[dict[str, Any]] = json.loads(self.path.read_text()) if self.path.exists() else []

    def add(self, run_key: str, effect: float, se: float) -> list[dict[str, Any]]:
        """Record tonight (a retried run replaces its own night) and return every night."""
        self.nights = [n for n in self.nights if n["run_key"] != run_key]
        self.nights.append({"run_key": run_key, "effect": float(effect), "se": float(se)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.nights, indent=2))
        return list(self.nights)


def clearly_better(offline_overall: Mapping[str, Any]) -> bool:
    """The challenger's offline overall effect has its whole 95% CI above 0."""
    low = offline_overall.get("ci_low")
    return low is not None and low > 0
