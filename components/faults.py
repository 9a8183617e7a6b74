"""Fault injection for drills: off unless ``LREM_FAULT`` is set in the worker's environment.

``LREM_FAULT="<task>:<seconds>[:fail]"``: the task ``<task>`` of every ``lrem_nightly`` run
(embedded execution) waits up to ``<seconds>`` after taking the run lock and before its step
runs, then, with ``:fail``, fails without retries (as a non-transient error does) and without
running its step. The wait ends early once ``$LREM_HOME/faults/<task>.release`` exists (a drill
lets a held task go by creating it; a later task then does not wait at all).
``tests/e2e/test_concurrent_runs.py`` uses ``pull_data:<s>:fail`` to hold a run in its first
task while a second one is triggered. Never set it in production.
"""

from __future__ import annotations

import logging
import os
import time

from components.paths import state_path

log = logging.getLogger(__name__)

ENV = "LREM_FAULT"


class InjectedFault(RuntimeError):
    """The failure ``LREM_FAULT`` asked for (not transient: the task is not retried)."""


def parse(spec: str) -> tuple[str, float, bool]:
    parts = spec.split(":")
    try:
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "fail"):
            raise ValueError
        return parts[0], float(parts[1]), len(parts) == 3
    except ValueError:
        raise ValueError(f"{ENV}={spec!r}: expected '<task>:<seconds>[:fail]'") from None


def inject(task: str) -> None:
    """Hold and/or fail ``task`` as ``$LREM_FAULT`` says; nothing when it is unset or names another task."""
    spec = os.environ.get(ENV, "").strip()
    if not spec:
        return
    name, seconds, fail = parse(spec)
    if name != task:
        return
    release = state_path("faults") / f"{task}.release"
    log.warning("%s: holding task %s for up to %.0f s (or until %s exists)%s", ENV, task, seconds, release,
                ", then failing it" if fail else "")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not release.exists():
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    if fail:
        raise InjectedFault(f"{ENV}: injected failure of task {task}")
