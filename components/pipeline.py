"""The one registry of the nightly pipeline's steps: their order, inputs and outputs.

Each step is a plain function ``fn(cfg, **inputs) -> Artifact`` (``pull_data`` takes the
run key instead): ``inputs`` names, per parameter, the step whose artefact it receives;
``produces`` is the artefact type it returns (:mod:`components.artifacts`). The Airflow
DAG (one task per step, chained in this order, each task pulling the XComs of the steps
named in its inputs), ``lrem step`` / ``lrem pipeline`` and the tests all read
:data:`STEPS`. Nothing in memory crosses a step boundary, so any task can be retried alone.

Adding a step is one line in :data:`STEPS` (and the function it names).
"""

from __future__ import annotations

import importlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from components.artifacts import (Artifact, ArtifactError, Backbone, CacheWarmup, DataSnapshot, EvalReport, GateDecision,
                                  ItemIndex, OnlineReport, PromotionResult, RegisteredModel, RetentionReport,
                                  TrainedModel, TripletSet, ValidationReport)
from components.config import PipelineConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    name: str  # task id and `lrem step` name
    target: str  # "module:function", imported lazily so that DAG parsing stays fast
    produces: type[Artifact]
    inputs: Mapping[str, str] = field(default_factory=dict)  # parameter -> step whose artefact it gets
    gpu: bool = False  # a GPU in production (KubernetesPodOperator)
    trigger_rule: str = "all_success"  # Airflow trigger rule of its task
    # runs under `accelerate launch`, one process a GPU, when its pod has several (compute.gpus)
    multi_process: bool = False
    # A step split into parallel shards: the config field holding their number ("index.shards")
    # and "module:function" running one, fn(cfg, shard=i, **inputs) -> JSON-safe dict. The DAG
    # maps one task over the shards before the step's own task; `lrem pipeline` runs them in
    # order first; the step's own function then gathers their output (failing on a missing one).
    shards: str | None = None
    shard_target: str | None = None

    def num_shards(self, cfg: PipelineConfig) -> int:
        if not self.shards:
            return 0
        section, name = self.shards.split(".")
        return int(getattr(getattr(cfg, section), name))

    def shard_function(self) -> Callable[..., dict[str, Any]]:
        module, func = str(self.shard_target).split(":")
        return getattr(importlib.import_module(module), func)

    @property
    def upstream(self) -> list[str]:
        return list(dict.fromkeys(self.inputs.values()))

    def function(self) -> Callable[..., Artifact]:
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


_SNAP = {"snapshot": "pull_data"}

# In order. The first step takes the run key; every other one the artefacts named here.
STEPS: dict[str, Step] = {s.name: s for s in (
    Step("pull_data", "components.data.step:run", DataSnapshot),
    Step("validate_raw", "components.validation.step:run_validate_raw", ValidationReport, _SNAP),
    Step("generate_triplets", "components.teacher.step:run", TripletSet, _SNAP),
    Step("validate_triplets", "components.validation.step:run_validate_triplets", ValidationReport,
         {**_SNAP, "triplets": "generate_triplets"}),
    Step("prepare_backbone", "components.training.step:run_prepare_backbone", Backbone,
         {**_SNAP, "triplets": "generate_triplets"}, gpu=True),
    Step("train_cold_start", "components.training.step:run_cold_start", TrainedModel,
         {**_SNAP, "triplets": "generate_triplets", "backbone": "prepare_backbone"}, gpu=True, multi_process=True),
    Step("train_grpo", "components.training.step:run_grpo", TrainedModel,
         {**_SNAP, "triplets": "generate_triplets", "cold_start": "train_cold_start"}, gpu=True, multi_process=True),
    # the reasoning router, learned on tonight's world; registered with the model (its router.json)
    Step("train_router", "components.routing.step:run_train_router", TrainedModel,
         {**_SNAP, "trained": "train_grpo"}, gpu=True),
    Step("register_challenger", "components.registry.step:run_register", RegisteredModel,
         {**_SNAP, "triplets": "generate_triplets", "trained": "train_router"}),
    Step("build_index", "components.index.step:run", ItemIndex,
         {**_SNAP, "model": "register_challenger"}, gpu=True,
         shards="index.shards", shard_target="components.index.step:run_encode_shard"),
    Step("warm_cache", "components.service.cache:run_warm_cache", CacheWarmup,
         {**_SNAP, "model": "register_challenger", "index": "build_index"}, gpu=True),
    Step("evaluate_offline", "components.evaluation.step:run_evaluate", EvalReport,
         {**_SNAP, "model": "register_challenger", "index": "build_index", "backbone": "prepare_backbone"}, gpu=True),
    Step("evaluate_online", "components.service.step:run_evaluate_online", OnlineReport,
         {**_SNAP, "model": "register_challenger", "index": "build_index"}),
    Step("gate", "components.evaluation.step:run_gate", GateDecision,
         {**_SNAP, "report": "evaluate_offline", "online": "evaluate_online"}),
    Step("promote", "components.registry.step:run_promote", PromotionResult,
         {**_SNAP, "model": "register_challenger", "decision": "gate"}),
    Step("clean_up", "components.index.retention:run_clean_up", RetentionReport,
         {**_SNAP, "promotion": "promote"}),
)}

FIRST = next(iter(STEPS))


def _check_registry(steps: Mapping[str, Step]) -> None:
    """Every input comes from an earlier step; only the first step takes no artefact."""
    seen: list[str] = []
    for name, step in steps.items():
        late = [up for up in step.inputs.values() if up not in seen]
        if late:
            raise RuntimeError(f"step {name} takes artefacts of {late}, which do not run before it")
        if not step.inputs and seen:
            raise RuntimeError(f"step {name} takes no artefact; only {seen[0]} starts from the run key")
        seen.append(name)


_check_registry(STEPS)


def get_step(name: str) -> Step:
    if name not in STEPS:
        raise KeyError(f"unknown step {name!r}; steps: {', '.join(STEPS)}")
    return STEPS[name]


def run_key_from(run_id: str) -> str:
    """A file- and tag-safe key from an Airflow run id (``manual__2026-11-24T02:00:00+00:00``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", run_id).strip("-")


def run_conf_overrides(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """Config overrides from a DAG run conf (or ``lrem --allow-drift``): ``dvc_rev`` pins the data;
    ``allow_drift`` (true: every drift bound; a list or comma-separated names: those bounds) lets
    this run's data exceed the raw-data gate's drift bounds for an intended change. It becomes
    ``validation.allow_drift``, logged as an MLflow param and the ``drift_allowed`` tag."""
    overrides: dict[str, Any] = {}
    if params.get("dvc_rev"):
        overrides["data"] = {"dvc_rev": params["dvc_rev"]}
    allow = params.get("allow_drift")
    if allow:
        names = ["all"] if allow is True else allow.split(",") if isinstance(allow, str) else list(allow)
        overrides["validation"] = {"allow_drift": [str(n).strip() for n in names if str(n).strip()]}
    return overrides or None


def step_inputs(name: str, ctx: Mapping[str, Any]) -> dict[str, Artifact]:
    """The typed inputs of step ``name`` from ``ctx`` (step name -> artefact, or its JSON dict).

    Fails naming the step, the missing producer or the bad field.
    """
    step = get_step(name)
    inputs: dict[str, Artifact] = {}
    for param, producer in step.inputs.items():
        if producer not in ctx or ctx[producer] is None:
            raise ArtifactError(f"step {name} needs the {STEPS[producer].produces.__name__} of step {producer} "
                                f"(as {param!r}); the context has {sorted(k for k in ctx if ctx[k] is not None)}")
        inputs[param] = STEPS[producer].produces.from_dict(ctx[producer], producer)
    return inputs


def run_step(name: str, cfg: PipelineConfig, ctx: Mapping[str, Any] | None = None,
             run_key: str | None = None) -> Artifact:
    """Run one step: its inputs are read from ``ctx`` (step name -> artefact); returns its artefact."""
    step = get_step(name)
    fn = step.function()
    if not step.inputs:
        if not run_key:
            raise RuntimeError(f"{name} needs a run key")
        result = fn(cfg, run_key_from(run_key))
    else:
        result = fn(cfg, **step_inputs(name, ctx or {}))
    if not isinstance(result, step.produces):
        raise TypeError(f"step {name} returned {type(result).__name__}, not {step.produces.__name__}")
    return result


def run_shard(name: str, cfg: PipelineConfig, shard: int, ctx: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run shard ``shard`` of a sharded step (:attr:`Step.shards`); returns its JSON-safe summary."""
    step = get_step(name)
    if not step.shards:
        raise ValueError(f"step {name} is not sharded")
    return step.shard_function()(cfg, shard=int(shard), **step_inputs(name, ctx or {}))


def run_all(cfg: PipelineConfig, run_key: str, ctx_file: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every step in order, in this process (the same functions the DAG's tasks call).

    Returns the context (step name -> artefact dict); ``ctx_file`` gets it after each step,
    so that a single step can be rerun by hand with ``lrem step NAME --ctx ctx_file``.
    Holds the pipeline's run lock for the whole run (:mod:`components.runlock`): it fails at
    once, before any step, while another run (the DAG's or another ``lrem pipeline``) is active.

    As the DAG's branch: with ``gate.sequential`` on and a kept challenger pending
    (:mod:`components.evaluation.retest`), after ``validate_raw`` it skips training, registration
    and the index build and runs ``evaluate_online``, ``gate`` and ``promote`` on the kept pair.
    """
    from components.evaluation import retest
    from components.runlock import holding_run_lock

    ctx: dict[str, dict[str, Any]] = {}

    def save() -> None:
        if ctx_file is not None:
            ctx_file.write_text(json.dumps(ctx, indent=2))

    with holding_run_lock(run_key, "lrem pipeline", last=True, final_try=True):
        for name in STEPS:
            log.info("step %s", name)
            for shard in range(STEPS[name].num_shards(cfg)):  # what the DAG's mapped tasks run
                log.info("step %s, shard %d", name, shard)
                run_shard(name, cfg, shard, ctx)
            ctx[name] = run_step(name, cfg, ctx, run_key=run_key).to_dict()
            save()
            if name == retest.BRANCH_AFTER:
                kept = retest.kept_pair(cfg)
                if kept is not None:  # re-test the kept pair tonight instead of training (the DAG's branch)
                    log.info("kept challenger v%s pending against champion v%s: re-tested, no training",
                             kept["challenger_version"], kept["champion_version"])
                    ctx.update(retest.kept_context(cfg, kept))
                    for step in retest.RETEST_STEPS:
                        log.info("step %s (re-test)", step)
                        ctx[step] = run_step(step, cfg, ctx, run_key=run_key).to_dict()
                        save()
                    break
    return ctx
