"""The promotion gate."""

from __future__ import annotations

import dataclasses
import json

import pytest

from components.config import GateConfig
from components.evaluation.gate import decide


def _metrics(overall: float, **per_category: float) -> dict:
    out = {"overall": {"hit_rate@100": overall, "hit_rate@10": overall / 2, "n_queries": 10}}
    for cat, value in per_category.items():
        out[cat] = {"hit_rate@100": value, "n_queries": 5}
    return out


def test_no_champion_promotes():
    d = decide(_metrics(0.3), None, GateConfig())
    assert d.promote is True
    assert "no champion" in d.reason
    assert d.champion_value is None and d.challenger_value == 0.3


def test_better_promotes():
    d = decide(_metrics(0.52), _metrics(0.50), GateConfig())
    assert d.promote is True
    assert d.metric == "hit_rate@100"
    assert (d.challenger_value, d.champion_value) == (0.52, 0.50)


def test_equal_promotes():
    value = 0.1 + 0.2  # the same number computed the same way
    assert decide(_metrics(value), _metrics(value), GateConfig()).promote is True


def test_worse_does_not_promote_and_names_both_values():
    d = decide(_metrics(0.48), _metrics(0.50), GateConfig())
    assert d.promote is False
    assert "0.4800" in d.reason and "0.5000" in d.reason


def test_tolerance_and_other_metric():
    assert decide(_metrics(0.48), _metrics(0.50), GateConfig(tolerance=0.03)).promote is True
    d = decide(_metrics(0.6), _metrics(0.5), GateConfig(metric="hit_rate@10"))
    assert d.promote is True and d.challenger_value == 0.3


def test_category_regressions_are_reported_not_blocking():
    d = decide(_metrics(0.55, qa=0.40, plain=0.70), _metrics(0.50, qa=0.45, plain=0.60), GateConfig())
    assert d.promote is True
    assert d.regressions == {"qa": {"challenger": 0.40, "champion": 0.45}}
    assert "qa" in d.reason and "plain" not in d.reason
    json.dumps(dataclasses.asdict(d))  # travels between pipeline tasks as plain data


def test_missing_metric_is_a_clear_error():
    with pytest.raises(KeyError, match="hit_rate@5"):
        decide(_metrics(0.5), None, GateConfig(metric="hit_rate@5"))
