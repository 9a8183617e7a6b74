"""The promotion gate: the challenger replaces the champion only if HitRate does not regress."""

from __future__ import annotations

from typing import Any, Mapping

from components.artifacts import GateDecision
from components.config import GateConfig
from components.evaluation.metrics import OVERALL

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
