"""The gate on offline and online evidence together.

:func:`combine` is what the `gate` step calls. With the GateConfig and an OnlineReport that
carries its family of tests (``OnlineReport.tests``, written by `evaluate_online`), it
decides with :func:`components.evaluation.gate.decide_on_evidence`: one family of one-sided
tests (offline per group, online user-level, interleaving when powered) under Holm at
``gate.alpha``; docs/gate.md.

An OnlineReport written before the family of tests existed (no ``tests``) is decided the
old way, kept so that such a context can still be re-gated: a paired bootstrap per group
(:func:`offline_comparison`) vetoes when the upper end of a group's 95% interval lies below
``-offline_margin``, and the online verdict of that report vetoes when it says regression.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np


def paired_bootstrap(challenger: Sequence[float], champion: Sequence[float], n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """Mean of (challenger - champion) over paired queries and its percentile bootstrap interval."""
    a, b = np.asarray(challenger, float), np.asarray(champion, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal-length, non-empty per-query vectors, got {a.shape} and {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(axis=1)
    lo, hi = np.percentile(means, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return {"diff": float(diff.mean()), "ci_low": float(lo), "ci_high": float(hi), "n": int(len(diff)),
            "challenger": float(a.mean()), "champion": float(b.mean())}


def offline_comparison(per_query_challenger: Mapping[str, float], per_query_champion: Mapping[str, float],
                       categories: Mapping[str, str], margin: float = 0.0, n_boot: int = 2000,
                       seed: int = 0) -> dict[str, Any]:
    """Paired bootstrap per group (overall and each category); which groups regress significantly."""
    qids = sorted(set(per_query_challenger) & set(per_query_champion))
    groups: dict[str, list[str]] = {"overall": qids}
    for q in qids:
        groups.setdefault(categories.get(q, "unknown"), []).append(q)
    out: dict[str, Any] = {"groups": {}, "regressions": [], "margin": margin, "n_boot": n_boot}
    for i, (group, ids) in enumerate(groups.items()):
        stats = paired_bootstrap([per_query_challenger[q] for q in ids], [per_query_champion[q] for q in ids],
                                 n_boot, seed + i)
        stats["regression"] = stats["ci_high"] < -margin
        out["groups"][group] = stats
        if stats["regression"]:
            out["regressions"].append(group)
    return out


def combine(decision, online: Any, metric: Any):
    """The offline gate's decision, re-decided on significance with the online evidence.

    ``decision``: the GateDecision of :func:`components.evaluation.gate.decide` (its
    values are kept); ``online``: an OnlineReport; ``metric``: the GateConfig (or, for an
    OnlineReport written before the family of tests existed, the metric name). With a
    GateConfig and an OnlineReport that carries its family of tests, the decision is
    :func:`components.evaluation.gate.decide_on_evidence` (Holm over every test; docs/gate.md).
    Returns a new GateDecision.
    """
    if decision.champion_value is None or online is None or not online.compared:
        return decision
    if not isinstance(metric, str) and online.tests.get("family"):
        from components.evaluation.gate import decide_on_evidence

        return decide_on_evidence(decision, online.tests["family"], metric, online.tests.get("srm"),
                                  {"replay_seed": online.tests.get("replay_seed"),
                                   "expected_online_from_offline": online.tests.get("expected_online_from_offline")})
    metric = metric if isinstance(metric, str) else metric.metric
    parts = []
    regress = list(online.offline_regressions)
    for group in regress:
        g = online.offline_ci[group]
        parts.append(f"offline {metric} {group} {g['challenger']:.4f} vs {g['champion']:.4f} "
                     f"(paired bootstrap 95% CI of the difference [{g['ci_low']:+.4f}, {g['ci_high']:+.4f}] "
                     f"below -{online.offline_margin:g})")
    if online.regression:
        parts.append(online.reason)
    if parts:
        return dataclasses.replace(decision, promote=False, reason="significant regression: " + "; ".join(parts))
    overall = online.offline_ci.get("overall", {})
    ok = (f"no significant regression: offline {metric} {overall.get('challenger', float('nan')):.4f} vs champion "
          f"{overall.get('champion', float('nan')):.4f} (paired bootstrap 95% CI [{overall.get('ci_low', 0):+.4f}, "
          f"{overall.get('ci_high', 0):+.4f}], no category below -{online.offline_margin:g}); {online.reason}")
    return dataclasses.replace(decision, promote=True, reason=ok)
