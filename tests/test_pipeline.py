"""The step registry: every step function takes exactly the artefacts the registry hands it."""

from __future__ import annotations

import inspect

import pytest

from components.pipeline import STEPS


@pytest.mark.parametrize("name", list(STEPS))
def test_step_function_signature_matches_the_registry(name):
    step = STEPS[name]
    params = list(inspect.signature(step.function()).parameters.values())
    assert params[0].name == "cfg"
    if not step.inputs:
        assert [p.name for p in params[1:]] == ["run_key"]
    else:
        assert {p.name for p in params[1:]} == set(step.inputs)
        for p in params[1:]:  # annotated with the producing step's artefact type (optional allowed)
            produced = STEPS[step.inputs[p.name]].produces.__name__
            assert str(getattr(p.annotation, "__name__", p.annotation)) in (produced, f"{produced} | None",
                                                                            f"Optional[{produced}]"), (name, p)
    ret = inspect.signature(step.function()).return_annotation
    assert ret in (step.produces, step.produces.__name__), f"{name} returns {ret}, registry says {step.produces}"


def test_readme_lists_the_registry_in_order():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    flow = readme.split("`dags/lrem_nightly.py`", 1)[1].split("```", 2)[1]
    assert re.findall(r"[a-z_]+", flow) == list(STEPS), "README's pipeline flow differs from components/pipeline.py"
