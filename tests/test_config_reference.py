"""docs/config.md is the generated reference of every config field, and stays so.

It fails when a field has no description (give it ``metadata={"help": ...}`` or a comment), when
docs/config.md is stale (regenerate: ``.venv/bin/lrem config --reference > docs/config.md``), or
when the reference claims a bound that ``check_config`` does not enforce.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from components.config import CHOICES, ConfigError, PipelineConfig, load_config
from components.config_reference import RANGES, REGENERATE, markdown, reference, undocumented

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "config.md"


def test_every_field_has_a_description():
    missing = undocumented()
    assert not missing, (f"config fields without a description: {missing}; give each a "
                         f"field(..., metadata={{'help': ...}}) or a comment, then run {REGENERATE}")


def test_docs_config_md_is_up_to_date():
    assert DOC.exists(), f"docs/config.md is missing: run {REGENERATE}"
    assert DOC.read_text() == markdown() + "\n", f"docs/config.md is stale: run {REGENERATE}"


def test_the_reference_lists_every_field_once():
    keys = [fd.key for section in reference() for fd in section.fields]
    cfg, expected = PipelineConfig(), []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        expected += ([f"{f.name}.{g.name}" for g in dataclasses.fields(value)] if dataclasses.is_dataclass(value)
                     else [f.name])
    assert sorted(keys) == sorted(expected) and len(keys) == len(set(keys))
    text = markdown()
    assert all(f"| `{k}` |" in text for k in keys)
    for key, allowed in CHOICES.items():  # every validated choice is shown with its values
        row = next(line for line in text.splitlines() if line.startswith(f"| `{key}` |"))
        assert all(f"`{v}`" in row for v in allowed), key


def _with(key: str, value) -> PipelineConfig:
    section, name = key.split(".")
    base = PipelineConfig()
    return PipelineConfig(**{f.name: getattr(base, f.name) for f in dataclasses.fields(PipelineConfig)}
                          | {section: dataclasses.replace(getattr(base, section), **{name: value})})


@pytest.mark.parametrize("key", sorted(k for k, v in RANGES.items() if re.match(r"^(>= -?[\d.]+|[\d.]+ to [\d.]+)", v)))
def test_each_stated_bound_is_enforced(key):
    text = RANGES[key]
    m = re.match(r"^>= (-?[\d.]+)", text)
    low, high = (float(m.group(1)), None) if m else map(float, re.match(r"^([\d.]+) to ([\d.]+)", text).groups())
    is_int = isinstance(getattr(getattr(PipelineConfig(), key.split(".")[0]), key.split(".")[1]), int)
    cast = int if is_int else float
    step = 1 if is_int else 0.001
    _with(key, cast(low))  # on the bound: accepted
    with pytest.raises(ConfigError):
        _with(key, cast(low - step))
    if high is not None:
        _with(key, cast(high))
        with pytest.raises(ConfigError):
            _with(key, cast(high + step))


def test_relevance_and_reward_weight_bounds_are_enforced():
    with pytest.raises(ConfigError):
        _with("validation.min_relevance", 0)
    with pytest.raises(ConfigError):
        _with("validation.max_relevance", 0)
    with pytest.raises(ConfigError):
        _with("grpo.reward_weights", [1.0])


def test_lrem_config_prints_the_reference_and_the_resolved_config(capsys):
    from components.cli import main

    assert main(["config", "--reference"]) == 0
    assert capsys.readouterr().out == markdown() + "\n"
    assert main(["--config", "configs/demo.yaml", "config", "--show"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == load_config(ROOT / "configs" / "demo.yaml").to_dict()
