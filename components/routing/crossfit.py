"""Cross-fitting the router on queries the model never trained on (docs/serving-cost.md, section 3).

Diagnostic, not a pipeline step: the measured queries (``components.routing.step.measure_queries``)
are cut in two folds (:func:`components.routing.holdout.take_share`); the router is fitted on
one fold with the nightly rule (:func:`components.routing.router.fit_router`: threshold on that
fold's out-of-fold scores) and decides on the other, and the other way round, so every query is
routed by a router that never saw it. :func:`tradeoff_curve` gives routed HitRate against the
share that reasons when the cut is moved along each fold's held-out scores.
"""

from __future__ import annotations

import numpy as np


def cross_fit(m: dict, fold: np.ndarray, **fit_kwargs) -> dict:
    """Route each fold's queries with a router fitted on the other fold only.

    ``m``: measured queries (direct, scalars, hit_direct, hit_reason); ``fold``: boolean mask
    (fold A True, fold B False). Returns ``reason`` (decisions), ``score`` (P(reasoning helps)
    from the router that did not see the query) and ``routers`` ({"A": fitted on B, "B": fitted on A}).
    """
    from components.routing.router import fit_router

    fold = np.asarray(fold, dtype=bool)
    reason = np.zeros(len(fold), dtype=bool)
    score = np.zeros(len(fold))
    routers = {}
    for name, scored in (("A", fold), ("B", ~fold)):
        fit = ~scored
        router = fit_router(m["direct"][fit], m["scalars"][fit], m["hit_direct"][fit], m["hit_reason"][fit],
                            **fit_kwargs)
        reason[scored] = router.decide(m["direct"][scored], m["scalars"][scored])
        score[scored] = router.scores(m["direct"][scored], m["scalars"][scored])
        routers[name] = router
    return {"reason": reason, "score": score, "routers": routers}


def top_share(score: np.ndarray, fold: np.ndarray, share: float) -> np.ndarray:
    """Reason on the ``share`` highest-scored queries of each fold (scores of different routers are
    not compared across folds); ties broken by position."""
    reason = np.zeros(len(score), dtype=bool)
    for sel in (np.asarray(fold, bool), ~np.asarray(fold, bool)):
        idx = np.flatnonzero(sel)
        n = int(round(share * len(idx)))
        order = idx[np.lexsort((idx, -score[idx]))]
        reason[order[:n]] = True
    return reason


def tradeoff_curve(m: dict, score: np.ndarray, fold: np.ndarray, shares, n_boot: int = 2000,
                   seed: int = 0) -> list[dict]:
    """Routed HitRate against the share that reasons (held-out scores, each fold cut at its own
    quantile), with the paired bootstrap CI of routed minus always-reasoning, overall."""
    from components.evaluation.bootstrap import paired_bootstrap

    out = []
    for share in shares:
        reason = top_share(score, fold, float(share))
        routed = np.where(reason, m["hit_reason"], m["hit_direct"])
        ci = paired_bootstrap(routed, m["hit_reason"], n_resamples=n_boot, seed=seed)
        out.append({"target_share": float(share), "reason_share": float(reason.mean()),
                    "hit_rate_routed": float(routed.mean()), "diff_routed_minus_always": ci["diff"],
                    "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
                    "zero_in_ci": bool(ci["ci_low"] <= 0.0 <= ci["ci_high"])})
    return out
