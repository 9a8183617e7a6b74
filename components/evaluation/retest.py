"""A kept challenger is re-tested the next night instead of training a new one (``gate.sequential``).

With ``gate.sequential`` on, the gate keeps a challenger that is neither vetoed nor clearly
better (docs/gate.md, "Sequential evidence across nights"). The `gate` step then records it as
**pending** (``$LREM_HOME/gate/sequential/pending.json``: the pair's versions, the night that
kept it and that night's offline evaluation); any other decision clears the record. While a
pair is pending, the nightly run (the DAG's branch ``train_or_retest`` after ``validate_raw``,
and `lrem pipeline`) skips training, registration and the index build, and runs
``evaluate_online``, ``gate`` and ``promote`` again on the kept pair (:data:`RETEST_STEPS`):
tonight's fresh replay adds a night to the pair's ledger and the always-valid test decides on
every night so far. The kept pair's artefacts come from :func:`kept_context`, so the retest
runs the same step functions as a training night.

A pending pair is re-tested only while it is still the pair the registry holds (``champion``
and ``challenger`` aliases on its versions: a rollback or a hand-registered challenger ends
it) and it has been decided on fewer than ``gate.sequential_max_nights`` nights; a pair still
inconclusive on its last night is dropped, the champion stays and the next night trains.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

from components.config import PipelineConfig

log = logging.getLogger(__name__)

PENDING_FILE = "pending.json"
BRANCH_AFTER = "validate_raw"  # the retest decision is taken once the night's raw data passed its gate
RETEST_STEPS = ("evaluate_online", "gate", "promote")  # what a retest night runs, in order
# the artefacts of the kept night a retest night reuses instead of producing them
KEPT_ARTEFACTS = ("register_challenger", "build_index", "evaluate_offline")
BRANCH_TASK = "train_or_retest"  # the DAG's branch task
KEPT_TASK = "kept_challenger"  # the DAG's task returning the kept pair's artefacts


def retest_task_id(step: str) -> str:
    return f"retest_{step}"


def retest_task_ids() -> list[str]:
    """Every task the DAG adds for the retest branch."""
    return [BRANCH_TASK, KEPT_TASK, *(retest_task_id(s) for s in RETEST_STEPS)]


def ledger_dir() -> Path:
    from components.paths import state_path

    return state_path("gate", "sequential")


def pending_path() -> Path:
    return ledger_dir() / PENDING_FILE


def read_pending() -> dict[str, Any] | None:
    path = pending_path()
    return json.loads(path.read_text()) if path.exists() else None


def clear_pending(why: str) -> None:
    path = pending_path()
    if path.exists():
        path.unlink()
        log.info("sequential gate: pending pair cleared (%s)", why)


def record_decision(cfg: PipelineConfig, snapshot, report, online, decision) -> Any:
    """Called by the `gate` step after deciding: a kept challenger becomes pending (or, on its pair's
    last night, is dropped: the reason says so); any other decision clears the pending pair.
    Returns the decision (its reason amended when the pair is dropped)."""
    import dataclasses

    kept = bool(cfg.gate.sequential and decision.evidence.get("kept"))
    if not kept:
        clear_pending("the gate decided: " + ("promoted" if decision.promote else "not kept"))
        return decision
    champion, challenger = str(online.champion_version), str(online.model_version)
    prev = read_pending()
    same = prev is not None and (prev["champion_version"], prev["challenger_version"]) == (champion, challenger)
    runs = list(prev.get("runs", [])) if same else []
    if snapshot.run_key not in runs:  # a retried gate task does not count its night twice
        runs.append(snapshot.run_key)
    nights = len(runs)  # the nights this pair was decided on (the ledger only has those with a tested online row)
    if nights >= cfg.gate.sequential_max_nights:
        clear_pending(f"{nights} nights reached")
        reason = (decision.reason + f"; the pair has been compared on {nights} nights "
                  f"(gate.sequential_max_nights {cfg.gate.sequential_max_nights}): dropped, not re-tested; "
                  "the champion stays and the next night trains a new challenger")
        return dataclasses.replace(decision, reason=reason,
                                   evidence={**decision.evidence, "kept": False, "dropped_after_nights": nights})
    record = {"model_name": cfg.tracking.model_name, "champion_version": champion, "challenger_version": challenger,
              "kept_by_run": runs[0], "runs": runs, "report": (prev["report"] if same else report.to_dict())}
    path = pending_path()
    path.write_text(json.dumps(record, indent=2))
    log.info("sequential gate: v%s kept against champion v%s after %d night(s): re-tested next night", challenger,
             champion, nights)
    return decision


def kept_pair(cfg: PipelineConfig) -> dict[str, Any] | None:
    """The pending kept pair if tonight re-tests it, else None (a stale record is cleared)."""
    if not cfg.gate.sequential:
        return None
    record = read_pending()
    if record is None:
        return None
    from components import tracking
    from components.registry import models

    tracking.configure(cfg)
    name = record["model_name"]
    if name != cfg.tracking.model_name:
        log.info("sequential gate: the pending pair is of %s, this config serves %s: not re-tested", name,
                 cfg.tracking.model_name)
        return None
    champ = models.alias_version(name, models.CHAMPION)
    chal = models.alias_version(name, models.CHALLENGER)
    now = (str(champ.version) if champ is not None else None, str(chal.version) if chal is not None else None)
    if now != (record["champion_version"], record["challenger_version"]):
        clear_pending(f"the registry moved on: champion v{now[0]}, challenger v{now[1]} (kept pair: champion "
                      f"v{record['champion_version']}, challenger v{record['challenger_version']})")
        return None
    if len(record.get("runs", [])) >= cfg.gate.sequential_max_nights:
        clear_pending("the pair's nights are used up")
        return None
    return record


def kept_context(cfg: PipelineConfig, record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The artefacts of the kept night that a retest night reuses (step name -> artefact dict)."""
    from components.artifacts import EvalReport, ItemIndex, RegisteredModel
    from components.serving import collection_of

    name, version = record["model_name"], str(record["challenger_version"])
    model = RegisteredModel(model_name=name, model_version=version, model_uri=f"models:/{name}/{version}")
    index = ItemIndex(collection=collection_of(cfg, version), rows=int(record.get("index_rows", 0)),
                      model_version=version)
    report = EvalReport.from_dict(dict(record["report"]), "evaluate_offline")
    return {"register_challenger": model.to_dict(), "build_index": index.to_dict(),
            "evaluate_offline": report.to_dict()}
