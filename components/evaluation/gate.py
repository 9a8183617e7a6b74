"""The promotion gate: the challenger replaces the champion only if HitRate does not regress."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.special import ndtr, ndtri, stdtr, stdtrit  # the normal and Student t cdf and quantile as ufuncs: the
# calibration runs these thousands of times, scipy.stats' distribution objects cost ~1 ms a call

from components.artifacts import GateDecision
from components.config import GateConfig
from components.evaluation.metrics import OVERALL
from components.evaluation.sequential import clearly_better

# Metrics computed the same way on the same queries compare equal; this only absorbs
# float noise so that "equal" always promotes.
_EPS = 1e-12


def _value(metrics: Mapping[str, Mapping[str, Any]], group: str, metric: str, who: str) -> float:
    try:
        return float(metrics[group][metric])
    except KeyError:
        have = sorted(metrics.get(group, {})) if isinstance(metrics, Mapping) else []
        raise KeyError(f"{who} metrics have no {group!r}/{metric!r} (have {have})") from None


def decide(challenger: Mapping[str, Mapping[str, Any]], champion: Mapping[str, Mapping[str, Any]] | None,
           cfg: GateConfig) -> GateDecision:
    """Promote when challenger overall[cfg.metric] >= champion overall[cfg.metric] - cfg.tolerance.

    With no champion the challenger is promoted. Per-category regressions of the gate
    metric are named in the reason but do not block promotion.
    """
    metric = cfg.metric
    chal = _value(challenger, OVERALL, metric, "challenger")
    if not champion:
        return GateDecision(True, f"no champion yet: challenger {metric} = {chal:.4f}", metric, chal,
                            None, cfg.tolerance)

    champ = _value(champion, OVERALL, metric, "champion")
    regressions: dict[str, dict[str, float]] = {}
    for group, values in challenger.items():
        if group == OVERALL or metric not in values or metric not in champion.get(group, {}):
            continue
        c, p = float(values[metric]), float(champion[group][metric])
        if c < p - _EPS:
            regressions[group] = {"challenger": c, "champion": p}

    promote = chal >= champ - cfg.tolerance - _EPS
    tol = f" - tolerance {cfg.tolerance:.4f}" if cfg.tolerance else ""
    if promote:
        reason = f"challenger {metric} {chal:.4f} >= champion {champ:.4f}{tol}"
    else:
        reason = f"challenger {metric} {chal:.4f} < champion {champ:.4f}{tol}: regression"
    if regressions:
        listed = ", ".join(f"{g} {v['challenger']:.4f} vs {v['champion']:.4f}" for g, v in regressions.items())
        reason += f"; per-category regressions: {listed}"
    return GateDecision(promote, reason, metric, chal, champ, cfg.tolerance, regressions)


# ------------------------------------------------------------------ the gate on evidence
# One night's decision is one family of one-sided tests, each of the form
#     H0: effect >= -tolerance   (the challenger is no worse than the champion, beyond the tolerance)
#     H1: effect <  -tolerance   (a regression)
# where effect = challenger - champion on the test's metric. The challenger is vetoed when
# Holm's step-down procedure rejects any H0 at the family-wise level ``gate.alpha``, or when
# the online split fails its sample-ratio check (the online data cannot be trusted). The
# margin (the smallest regression that matters) does not move the null: it is the
# alternative at which each test's power and the minimum detectable effect are stated,
# and what the calibration (``lrem gate calibrate``) holds the gate to. A category's null
# may have a tolerance of its own (``gate.category_tolerance``). docs/gate.md.

TESTED, TOO_FEW, UNDERPOWERED, DEGENERATE = "tested", "too few queries", "underpowered: reported, not tested", \
    "no spread"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979): reject H0_i at level a iff adjusted_i < a.

    Controls the family-wise error rate under any dependence between the tests.
    """
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def _one_sided_level(alpha: float, family_size: int) -> float:
    """The level a test of a family of ``family_size`` needs in the worst case (Holm's first step)."""
    return alpha / max(1, family_size)


def normal_power(margin: float, tolerance: float, se: float, level: float) -> float:
    """P(reject H0: effect >= -tolerance | effect = -margin) for a one-sided z-test with standard error ``se``."""
    if not se > 0:
        return float("nan")
    return float(ndtr((margin - tolerance) / se - ndtri(1 - level)))


def normal_mde(tolerance: float, se: float, level: float, power: float) -> float:
    """The regression a one-sided z-test at ``level`` detects with probability ``power``."""
    if not se > 0:
        return float("nan")
    return float(tolerance + (ndtri(1 - level) + ndtri(power)) * se)


def paired_test(challenger: Sequence[float], champion: Sequence[float], tolerance: float = 0.0,
                alpha: float = 0.05) -> dict[str, float]:
    """One-sided paired t-test of H0: mean(challenger - champion) >= -tolerance, and a two-sided t CI.

    Per-query differences of identical models are all 0: no evidence of a regression (p = 1).
    """
    a, b = np.asarray(challenger, float), np.asarray(champion, float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"need two equal-length per-query vectors of at least 2 queries, got {a.shape}, {b.shape}")
    d = a - b
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    se = sd / np.sqrt(n)
    if se > 0:
        t = (mean + tolerance) / se
        p = float(stdtr(n - 1, t))
        half = float(stdtrit(n - 1, 1 - alpha / 2) * se)
    else:  # every query moved by the same amount (0 for identical models)
        p = 0.0 if mean < -tolerance else 1.0
        half = 0.0
    return {"n": int(n), "challenger": float(a.mean()), "champion": float(b.mean()), "effect": mean,
            "ci_low": mean - half, "ci_high": mean + half, "se": float(se), "p_value": p}


def group_members(qids: Sequence[str], categories: Mapping[str, str]) -> dict[str, list[str]]:
    """Overall and one group per category (sorted), each a list of query ids."""
    groups: dict[str, list[str]] = {OVERALL: list(qids)}
    for q in qids:
        groups.setdefault(categories.get(q, "unknown"), []).append(q)
    return {OVERALL: groups.pop(OVERALL), **dict(sorted(groups.items()))}


def margin_of(cfg: GateConfig, group: str) -> float:
    return float(cfg.category_margins.get(group, cfg.margin))


def tolerance_of(cfg: GateConfig, group: str) -> float:
    """The null's tolerance of an offline group: ``gate.tolerance`` overall, ``gate.category_tolerance`` (when set)
    for a category."""
    if group == OVERALL or cfg.category_tolerance is None:
        return float(cfg.tolerance)
    return float(cfg.category_tolerance)


def offline_tests(per_query_challenger: Mapping[str, float], per_query_champion: Mapping[str, float],
                  categories: Mapping[str, str], cfg: GateConfig) -> dict[str, dict[str, Any]]:
    """The offline members of the family: a paired t-test of the gate metric per group.

    Categories with fewer than ``cfg.min_queries`` eval queries are reported (``status`` "too
    few queries") and left out of the family; overall is tested from 2 queries on.
    ``power`` is the power at the group's margin at the worst-case Holm level (alpha /
    family size), from the observed spread of the paired differences.
    """
    qids = sorted(set(per_query_challenger) & set(per_query_champion))
    return offline_tests_arrays(np.array([per_query_challenger[q] for q in qids], float),
                                np.array([per_query_champion[q] for q in qids], float),
                                np.array([categories.get(q, "unknown") for q in qids], dtype=object), cfg)


def offline_tests_arrays(challenger: np.ndarray, champion: np.ndarray, categories: np.ndarray,
                         cfg: GateConfig, family_extra: int = 0) -> dict[str, dict[str, Any]]:
    """:func:`offline_tests` on aligned arrays (one entry per eval query; the calibration's nights)."""
    out: dict[str, dict[str, Any]] = {}
    groups = [(OVERALL, np.ones(len(challenger), bool))]
    groups += [(c, categories == c) for c in sorted(set(categories.tolist()))]
    for group, mask in groups:
        n = int(mask.sum())
        margin, tolerance = margin_of(cfg, group), tolerance_of(cfg, group)
        row: dict[str, Any] = {"source": "offline", "metric": cfg.metric, "group": group, "n": n,
                               "margin": margin, "tolerance": tolerance,
                               "test": "paired t-test, one-sided"}
        a, b = challenger[mask], champion[mask]
        if n < (2 if group == OVERALL else max(2, cfg.min_queries)):
            row.update(status=TOO_FEW, challenger=float(a.mean()) if n else None,
                       champion=float(b.mean()) if n else None, effect=float(a.mean() - b.mean()) if n else None)
        else:
            row.update(paired_test(a, b, tolerance, cfg.alpha))
            row["status"] = TESTED
        out[group] = row
    _state_power(out.values(), cfg, sum(r["status"] == TESTED for r in out.values()) + family_extra or None)
    return out


def _state_power(rows, cfg: GateConfig, family_size: int | None = None) -> None:
    rows = list(rows)
    size = family_size or sum(r["status"] == TESTED for r in rows) or 1
    level = _one_sided_level(cfg.alpha, size)
    for r in rows:
        se = r.get("se")
        if r["status"] == TESTED and se:
            r["power"] = normal_power(r["margin"], r["tolerance"], se, level)
            r["mde"] = normal_mde(r["tolerance"], se, level, cfg.power)
        else:
            r["power"] = None
            r["mde"] = None


def family_decision(tests: Mapping[str, Mapping[str, Any]], cfg: GateConfig,
                    srm: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Holm over the tests whose ``status`` is "tested"; the veto, the deciding test, every row.

    ``tests``: name -> row with ``p_value`` and ``status``. Returns ``{"veto", "deciding",
    "family_size", "rows"}``; each row gains ``p_holm`` and ``rejected``.
    """
    names = [n for n, t in tests.items() if t.get("status") == TESTED and t.get("p_value") is not None]
    adjusted = holm([tests[n]["p_value"] for n in names]) if names else []
    rows = {n: dict(t) for n, t in tests.items()}
    for n, adj in zip(names, adjusted):
        rows[n]["p_holm"] = adj
        rows[n]["rejected"] = bool(adj < cfg.alpha)
    rejected = sorted((n for n in names if rows[n]["rejected"]), key=lambda n: rows[n]["p_holm"])
    untrusted = bool(srm and srm.get("mismatch"))
    deciding = rejected[0] if rejected else (min(names, key=lambda n: rows[n]["p_holm"]) if names else None)
    return {"veto": bool(rejected) or untrusted, "untrusted": untrusted, "rejected": rejected,
            "deciding": deciding, "family_size": len(names), "alpha": cfg.alpha, "rows": rows}


def _describe(name: str, row: Mapping[str, Any]) -> str:
    ci = ""
    if row.get("ci_low") is not None:
        ci = f", 95% CI [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
    return (f"{row.get('metric', name)} {row.get('group', '')}: challenger {row.get('challenger', float('nan')):.4f} vs "
            f"champion {row.get('champion', float('nan')):.4f}, effect {row.get('effect', float('nan')):+.4f}{ci} "
            f"({row.get('test', '?')}, H0 effect >= -{row.get('tolerance', 0.0):g}, p={row.get('p_value', float('nan')):.3g}, "
            f"Holm p={row.get('p_holm', float('nan')):.3g})").replace("  ", " ")


def decide_on_evidence(decision: GateDecision, tests: Mapping[str, Mapping[str, Any]], cfg: GateConfig,
                       srm: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None) -> GateDecision:
    """Re-decide ``decision`` (point estimates of :func:`decide`) on the family of tests.

    The reason names the metric, the group and the test that decided; ``evidence`` keeps
    every row (effect, CI, margin, power, raw and Holm-adjusted p), the family size, alpha
    and whatever ``extra`` carries (the replay seed).
    """
    if decision.champion_value is None or not tests:
        return decision
    fam = family_decision(tests, cfg, srm)
    kept = False  # gate.sequential: inconclusive, kept as challenger (components/evaluation/retest.py)
    reported = [n for n, t in fam["rows"].items() if t.get("status") != TESTED]
    note = f" (family of {fam['family_size']} tests, Holm at alpha {cfg.alpha:g}"
    note += f"; reported, not tested: {', '.join(reported)})" if reported else ")"
    if fam["rejected"]:
        first = fam["deciding"]
        reason = "significant regression: " + "; ".join(_describe(n, fam["rows"][n]) for n in fam["rejected"]) + note
        promote = False
    elif fam["untrusted"]:
        reason = (f"online split untrusted: sample-ratio mismatch (users {srm.get('observed')}, "
                  f"chi-square p={srm.get('p_value', float('nan')):.3g} < {srm.get('alpha', 0.001)})" + note)
        promote, first = False, None
    else:
        first = fam["deciding"]
        closest = f"; closest: {_describe(first, fam['rows'][first])}" if first else ""
        reason = "no significant regression" + closest + note
        promote = True
        overall = fam["rows"].get(f"offline/{OVERALL}", {})
        if cfg.sequential and not clearly_better(overall):  # inconclusive: keep it and pool more nights
            promote, kept = False, True
            reason = ("inconclusive, kept as challenger (gate.sequential): no significant regression and the "
                      f"offline {cfg.metric} overall CI [{overall.get('ci_low', float('nan')):+.4f}, "
                      f"{overall.get('ci_high', float('nan')):+.4f}] is not above 0; the online evidence is pooled "
                      f"over the nights it is compared (mSPRT)" + closest + note)
    evidence = {"family": fam["rows"], "family_size": fam["family_size"], "alpha": cfg.alpha,
                "deciding": first, "untrusted": fam["untrusted"], "kept": kept, **(extra or {})}
    return dataclasses.replace(decision, promote=promote, reason=reason, evidence=json_safe(evidence))


def json_safe(value: Any) -> Any:
    """NaN and infinities become None, numpy scalars plain numbers (artefacts travel as JSON)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value
