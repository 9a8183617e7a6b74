"""The calibration's model pair: one recipe, trained once per seed, on one fixed data snapshot.

`lrem --config RECIPE gate train-pair --data DIR --seeds 0,1` runs the pipeline's own steps
(``generate_triplets``, ``prepare_backbone``, ``train_cold_start``, ``train_grpo``,
``train_router``, ``register_challenger``; :func:`components.pipeline.run_step`, the functions
the DAG's tasks call) once per seed, on the folder ``DIR`` as it is (no ``pull_data``: the
snapshot cannot change under the runs), with the fine-tuning's seeds (``cold_start``, ``grpo``;
``--vary`` names others, e.g. ``model,backbone,routing`` too) set to that seed. Nothing else
differs between the runs: by default they share the pre-trained backbone (its cache) and the
router's held-out queries, as the paper's recipe fine-tunes one pretrained LLM on one data set. The models are registered under their own name (``lrem-gate-pair`` unless
``--model-name``), so that registering them never moves the serving model's ``challenger``
alias; the data's content hash and the versions go to ``--out`` (JSON), which
`lrem gate calibrate --model ... --twin ...` then takes. Each run keeps its context after every
step (``<run dir>/gate_pair_ctx.json``): the same command again goes on after the last finished
step. ``--reuse PAIR.json`` starts each member from the training of an earlier pair's member of the
same seed (its triplets, backbone, cold start and GRPO) and redoes only the router and the
registration: allowed only when the two recipes differ in nothing but the router's fitting settings
(:data:`ROUTER_FIT_KEYS`, read by ``train_router`` alone), so the reused models are the ones this
recipe would train. The protocol is in docs/gate.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

from components.config import PipelineConfig, load_config

log = logging.getLogger(__name__)

PAIR_STEPS = ("generate_triplets", "prepare_backbone", "train_cold_start", "train_grpo", "train_router",
              "register_challenger")
SEEDED = ("model", "backbone", "cold_start", "grpo", "routing")  # every config section with a training seed
# what a pair varies by default: the fine-tuning's seeds. The pre-trained backbone (``model.seed``,
# ``backbone.seed``) stands in for the paper's pretrained LLM, which the recipe fine-tunes and never
# re-initialises: it is the recipe's fixed input, trained once (cached) and shared by the pair.
# ``routing.seed`` also picks the training queries held out for the router (routing.holdout_share),
# i.e. the data every stage and the backbone's corpus see: varied, it changes the data, not a seed
VARIED = ("cold_start", "grpo")
DEFAULT_MODEL_NAME = "lrem-gate-pair"
# the steps a member may take over from an earlier pair (--reuse), and the settings only the steps after them read:
# how the router is fitted. routing.enabled, holdout_share and seed are not among them: they pick the training
# queries held out of the triplets, the backbone's corpus, the cold start and GRPO
REUSABLE_STEPS = ("generate_triplets", "prepare_backbone", "train_cold_start", "train_grpo")
ROUTER_FIT_KEYS = ("use_dev", "reason_share", "reference_features", "reference_items", "direct_embedding", "hit_k",
                   "tolerance", "max_queries", "folds", "c", "threshold_bags", "threshold_quantile",
                   "bootstrap_samples", "traffic_budget", "traffic_days", "traffic_min_queries")


def seeded_config(config: str | None, seed: int, model_name: str = DEFAULT_MODEL_NAME,
                  vary: Sequence[str] = VARIED) -> PipelineConfig:
    """The recipe ``config`` with the seeds of the sections ``vary`` set to ``seed`` and its own registered
    model name (the other sections' seeds stay the config's)."""
    unknown = sorted(set(vary) - set(SEEDED))
    if unknown:
        raise ValueError(f"no training seed in {unknown}; sections with one: {', '.join(SEEDED)}")
    overrides: dict[str, Any] = {section: {"seed": int(seed)} for section in vary}
    overrides["tracking"] = {"model_name": model_name}
    return load_config(config, overrides)


def snapshot_context(cfg: PipelineConfig, data_dir: str, run_key: str) -> dict[str, dict[str, Any]]:
    """The ``pull_data`` artefact of a run on the folder ``data_dir`` as it is (its content hash as the data md5)."""
    import mlflow

    from components import tracking
    from components.artifacts import DataSnapshot
    from components.data.versioning import content_hash

    data = str(Path(data_dir).resolve())
    digest = content_hash(Path(data))
    run_id = tracking.start_pipeline_run(cfg, run_key)
    with tracking.resume(cfg, run_id):
        mlflow.set_tags({"data_content_sha256": digest, "data_uri": data, "gate_pair": "true"})
        mlflow.log_params(cfg.flat())
        mlflow.log_text(json.dumps(cfg.to_dict(), indent=2), "config.json")
    snap = DataSnapshot(run_key=run_key, mlflow_run_id=run_id, data_uri=data, full_data_uri=data,
                        dvc_rev="snapshot", data_md5=f"sha256:{digest}", git_commit=_git_commit())
    return {"pull_data": snap.to_dict()}


def _git_commit() -> str:
    import subprocess

    from components.paths import REPO_ROOT

    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:  # noqa: BLE001 - lineage only
        return "unknown"


def _training_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """``recipe`` without the router's fitting settings (what the reusable steps do not read)."""
    out = json.loads(json.dumps(recipe))
    for key in ROUTER_FIT_KEYS:
        out.get("routing", {}).pop(key, None)
    return out


def reused_context(recipe: dict[str, Any], data: str, seed: int, earlier: Sequence[dict[str, Any]]
                   ) -> dict[str, Any]:
    """The artefacts of :data:`REUSABLE_STEPS` of the earlier member trained with ``seed`` (``earlier``: ``--out``
    JSONs of :func:`train_pair`, the last one with that seed counts), after checking that it was trained on ``data``
    by this recipe up to the router's fitting."""
    found = [(pair, m) for pair in earlier for m in pair.get("models", []) if int(m["seed"]) == int(seed)]
    if not found:
        have = sorted(int(m["seed"]) for pair in earlier for m in pair.get("models", []))
        raise ValueError(f"--reuse: the earlier pair has no member of seed {seed} (it has {have})")
    pair, member = found[-1]
    if str(Path(pair.get("data", "")).resolve()) != data:
        raise ValueError(f"--reuse: the earlier pair was trained on {pair.get('data')}, not {data}")
    before = json.loads(json.dumps(pair.get("recipe", {}), default=str))
    before.setdefault("routing", {})
    for section in pair.get("varied_seeds", []):  # the recipe of this seed's member
        before.setdefault(section, {})["seed"] = int(seed)
    before.setdefault("tracking", {})["model_name"] = recipe.get("tracking", {}).get("model_name")
    a, b = _training_recipe(before), _training_recipe(recipe)
    diff = sorted(f"{s}.{k}" for s in set(a) | set(b) for k in set(a.get(s, {})) | set(b.get(s, {}))
                  if isinstance(a.get(s, {}), dict) and a.get(s, {}).get(k) != b.get(s, {}).get(k)
                  and not (s == "tracking" and k == "mlflow_uri"))
    diff += sorted(s for s in set(a) | set(b) if not isinstance(a.get(s, {}), dict) and a.get(s) != b.get(s)
                   and s != "name")
    if diff:
        raise ValueError("--reuse: the earlier pair's recipe differs from this one in settings its training read: "
                         + ", ".join(diff) + f" (only routing.{{{','.join(ROUTER_FIT_KEYS)}}} may differ)")
    ctx = member["context"]
    missing = [s for s in REUSABLE_STEPS if s not in ctx]
    if missing:
        raise ValueError(f"--reuse: seed {seed}'s earlier run did not finish {missing}")
    return {s: ctx[s] for s in REUSABLE_STEPS} | {"reused_from": {"run_key": member["run_key"],
                                                                   "model_uri": member["model_uri"]}}


def train_one(config: str | None, data_dir: str, seed: int, model_name: str = DEFAULT_MODEL_NAME,
              run_key: str | None = None, vary: Sequence[str] = VARIED,
              reuse: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One member of the pair: the pipeline's steps in order on ``data_dir``; returns its artefacts and times.
    ``reuse`` (earlier :func:`train_pair` results): take their training of this seed, redo the router on."""
    from components.pipeline import run_step

    from components.paths import run_dir

    cfg = seeded_config(config, seed, model_name, vary)
    data = str(Path(data_dir).resolve())
    recipe = json.loads(json.dumps(cfg.to_dict(), default=str))
    reused = reused_context(recipe, data, seed, reuse) if reuse is not None else None
    key = hashlib.sha256(json.dumps([recipe, data] + ([reused["reused_from"]] if reused else []),
                                    sort_keys=True).encode()).hexdigest()[:8]
    run_key = run_key or f"gate-pair-{cfg.name}-{key}-seed{seed}"  # one run per recipe, seed and snapshot
    # a rerun of the same run (same recipe, seed and data) goes on after its last finished step
    saved = run_dir(run_key) / "gate_pair_ctx.json"
    state = json.loads(saved.read_text()) if saved.exists() else {}
    if state and (state.get("config"), state.get("data")) != (recipe, data):
        raise ValueError(f"run key {run_key} was used for another recipe or snapshot ({saved}): give another one")
    if not state:
        state = {"config": recipe, "data": data, "ctx": snapshot_context(cfg, data_dir, run_key), "seconds": {}}
        if reused:
            state["reused_from"] = reused["reused_from"]
            state["ctx"].update({s: reused[s] for s in REUSABLE_STEPS})
            _tag_reuse(cfg, state["ctx"]["pull_data"]["mlflow_run_id"], reused)
    ctx, seconds = state["ctx"], state["seconds"]
    for name in PAIR_STEPS:
        if name in ctx:
            log.info("gate pair, seed %d: %s already done in this run (%s)", seed, name, saved)
            continue
        t0 = time.perf_counter()
        log.info("gate pair, seed %d: step %s", seed, name)
        ctx[name] = run_step(name, cfg, ctx).to_dict()
        seconds[name] = round(time.perf_counter() - t0, 1)
        saved.write_text(json.dumps(state, indent=2, default=str))
        log.info("gate pair, seed %d: %s done in %.0f s", seed, name, seconds[name])
    reg = ctx["register_challenger"]
    extra = {"reused_from": state["reused_from"]} if state.get("reused_from") else {}
    return extra | {"seed": seed, "run_key": run_key, "model_uri": reg["model_uri"], "model_version": reg["model_version"],
            "data_md5": ctx["pull_data"]["data_md5"], "seconds": seconds, "context": ctx,
            "seeds": {s: getattr(cfg, s).seed for s in SEEDED}}


def _tag_reuse(cfg: PipelineConfig, run_id: str, reused: dict[str, Any]) -> None:
    """Lineage: the new run names the run whose training it took over."""
    import mlflow

    from components import tracking

    with tracking.resume(cfg, run_id):
        mlflow.set_tags({"gate_pair.reused_run_key": reused["reused_from"]["run_key"],
                         "gate_pair.reused_model_uri": reused["reused_from"]["model_uri"],
                         "gate_pair.reused_steps": ",".join(REUSABLE_STEPS)})


def train_pair(config: str | None, data_dir: str, seeds: Sequence[int], out: Path | None = None,
               model_name: str = DEFAULT_MODEL_NAME, vary: Sequence[str] = VARIED,
               reuse: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every seed in turn; ``out`` (JSON) is rewritten after each, so a finished member is never lost.
    ``reuse``: earlier pairs' ``--out`` JSONs whose training (up to GRPO) each seed takes over."""
    cfg = load_config(config)
    result: dict[str, Any] = {"config": str(config), "recipe": dataclasses.asdict(cfg), "data": str(data_dir),
                              "model_name": model_name, "varied_seeds": list(vary), "models": []}
    if reuse is not None:
        result["reused_pairs"] = [{"config": p.get("config"), "models": [m["model_uri"] for m in p["models"]]}
                                  for p in reuse]
    for seed in seeds:
        result["models"].append(train_one(config, data_dir, int(seed), model_name, vary=vary, reuse=reuse))
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, default=str))
    return result
