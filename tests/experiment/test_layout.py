"""components/experiment/ stays split by concern: no module over about 400 lines, and the names
probes and tests import from ``components.experiment.baselines`` keep resolving."""

from __future__ import annotations

from pathlib import Path

import components.experiment as package

MAX_LINES = 400


def test_no_module_is_over_the_limit():
    folder = Path(package.__file__).parent
    long = {p.name: n for p in sorted(folder.glob("*.py")) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by concern (at most {MAX_LINES} lines a module): {long}"


def test_the_old_import_surface_still_resolves():
    from components.experiment import baselines

    for name in baselines.__all__:
        assert getattr(baselines, name) is not None, name
    assert {"ExperimentConfig", "prepare_data", "score", "per_query_block", "keyword_f1", "type_phrases",
            "first_named_type", "HARD_CATEGORIES", "run_experiment"} <= set(baselines.__all__)
