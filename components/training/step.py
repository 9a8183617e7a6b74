"""Steps `prepare_backbone`, `train_cold_start` and `train_grpo`: thin drivers around the library trainers."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import mlflow

from components import tracking
from components.artifacts import Backbone, DataSnapshot, TrainedModel, TripletSet
from components.config import PipelineConfig
from components.data.io import load_world, read_jsonl
from components.paths import run_dir, state_path

log = logging.getLogger(__name__)


def _rank() -> int:
    """This process's rank under `accelerate launch` / torchrun (0 alone)."""
    return int(os.environ.get("RANK", "0"))


def _is_main_process() -> bool:
    return _rank() == 0


def world_corpus(cfg: PipelineConfig, data_uri: str, triplets: list[dict] | None = None):
    """The backbone's pre-training corpus, rendered from this run's data (train queries only, and
    not the router's held-out ones: ``routing.holdout_share``; with ``backbone.train_cots``, their
    teacher CoT from ``triplets``)."""
    from components.data.io import load_knowledge
    from components.routing.holdout import holdout_query_ids
    from components.training.pretrain import cot_documents, render_world_corpus

    world = load_world(data_uri)
    # required by the data contract (docs/data-contract.md): a missing or off-schema file raises
    # DataFileError naming it; `lrem data import` writes a minimal one for real data
    knowledge = load_knowledge(data_uri)
    train = world.split("train")
    held = holdout_query_ids(cfg, world.queries)
    train = train[~train["query_id"].astype(str).isin(held)].reset_index(drop=True)
    docs = None
    if cfg.backbone.train_cots and triplets:
        train_ids = set(train["query_id"])
        docs = cot_documents([t for t in triplets if t["query_id"] in train_ids], cfg.model)
    return render_world_corpus(world.catalog.to_dict(orient="records"), train["text"].tolist(),
                               knowledge, cfg.backbone.heldout_fraction, seed=cfg.backbone.seed,
                               paraphrases=cfg.backbone.knowledge_paraphrases,
                               knowledge_repeats=cfg.backbone.knowledge_repeats, train_cots=docs)


def _direct_stage(cfg: PipelineConfig):
    return dataclasses.replace(cfg.cold_start, reasoning=False, lambda_sft=0.0, sft_warmup_ratio=0.0,
                               self_cot_ratio=0.0, save_every=0, resume=False)  # the LREM's rehearsal too


def direct_baseline_key(cfg: PipelineConfig, backbone_key: str, rows: list[dict]) -> str:
    """Cache key of the direct baseline: backbone, training budget, model config (its prompt
    template and pooling change what it embeds) and the training pairs."""
    h = hashlib.sha256(backbone_key.encode())
    h.update(json.dumps(dataclasses.asdict(_direct_stage(cfg)), sort_keys=True).encode())
    h.update(json.dumps(dataclasses.asdict(cfg.model), sort_keys=True).encode())
    for r in rows:
        h.update(f"{r['query']}\t{r['item_id']}\n".encode())
    return h.hexdigest()[:16]


def _direct_baseline(cfg: PipelineConfig, backbone_dir: str, backbone_key: str, rows: list[dict],
                     replay_docs: list[str] | None = None, data_uri: str | None = None) -> str:
    """The backbone fine-tuned as a direct embedder (last token, empty CoT, InfoNCE only) with the
    cold start's budget: what the LREM must beat. Cached by backbone, triplets and budget."""
    from components.model.lrem import LREMModel
    from components.training.cold_start import train_cold_start

    cs = _direct_stage(cfg)
    target = state_path("baselines") / direct_baseline_key(cfg, backbone_key, rows)
    if (target / "model" / "lrem_config.json").exists():
        log.info("direct baseline: cache hit (%s)", target.name)
        return str(target / "model")
    model = LREMModel.create(dataclasses.replace(cfg.model, pooling="emb_token"), backbone_dir=backbone_dir)
    tmp = target.with_name(target.name + ".tmp")
    mining = {}
    if cs.hard_negatives or cs.mask_judged_negatives:  # the same negatives as the LREM's cold start
        world = load_world(data_uri)
        mining = dict(catalog=world.catalog.to_dict(orient="records"), relevant=world.relevant())
    result = train_cold_start(model, rows, cs, tmp, replay_docs=replay_docs if cs.lm_replay_weight else None,
                              **mining)
    tmp.rename(target)
    log.info("direct baseline: trained %d steps (%s)", result["steps"], target.name)
    return str(target / "model")


def run_prepare_backbone(cfg: PipelineConfig, snapshot: DataSnapshot, triplets: TripletSet) -> Backbone:
    """The pre-trained tiny backbone (cached by data and config; a no-op when cached) and the
    same-backbone direct embedder. A HF checkpoint (``model.base``) needs neither."""
    from components.training.pretrain import prepare_backbone

    if cfg.model.base != "tiny":
        log.info("model.base is %s: a pretrained checkpoint, no backbone stage", cfg.model.base)
        return Backbone(source="checkpoint", model_dir=cfg.model.base, cache_key="")
    tracking.configure(cfg)
    rows = read_jsonl(Path(triplets.triplets_uri))
    corpus = world_corpus(cfg, snapshot.data_uri, rows)
    result = prepare_backbone(cfg.model, cfg.backbone, corpus, state_path("backbones"))
    baseline = _direct_baseline(cfg, result.model_dir, result.cache_key, rows, corpus.train, snapshot.data_uri)
    uri = f"models:/{cfg.backbone.registered_name}/{result.registered_version}" if result.registered_version else None
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        mlflow.set_tags({"backbone.cache_key": result.cache_key, "backbone.source": result.source,
                         "backbone.uri": str(uri)})
    log.info("backbone %s from %s (%s)", result.cache_key, result.source, uri)
    return Backbone(source=result.source, model_dir=result.model_dir, cache_key=result.cache_key,
                    registered_uri=uri, direct_baseline_dir=baseline)


def run_cold_start(cfg: PipelineConfig, snapshot: DataSnapshot, triplets: TripletSet,
                   backbone: Backbone) -> TrainedModel:
    from components.model.lrem import LREMModel
    from components.training.cold_start import train_cold_start
    from components.training.grpo import split_for_rl

    world = load_world(snapshot.data_uri)
    rows = read_jsonl(Path(triplets.triplets_uri))
    if backbone.source == "checkpoint":
        model = LREMModel.create(cfg.model)
    else:
        model = LREMModel.create(cfg.model, backbone_dir=backbone.model_dir)
    out = run_dir(snapshot.run_key) / "cold_start"
    train = dict(catalog=world.catalog.to_dict(orient="records"), relevant=world.relevant())
    cs_cfg = cfg.cold_start
    if cs_cfg.lm_replay_weight:
        if backbone.source == "checkpoint":
            # the rendered world text is not a hub checkpoint's pre-training text: no rehearsal
            log.info("model.base is a checkpoint: cold_start.lm_replay_weight ignored")
            cs_cfg = dataclasses.replace(cs_cfg, lm_replay_weight=0.0)
        else:  # rehearse the backbone's own pre-training text (the corpus its cache key was made from)
            train["replay_docs"] = world_corpus(cfg, snapshot.data_uri, rows).train
    uri = f"runs:/{snapshot.mlflow_run_id}/cold_start_model"
    rows = split_for_rl(rows, cfg.grpo.rl_query_share, cfg.grpo.seed)[0]  # without the queries kept for RL
    if not _is_main_process():  # a worker of `accelerate launch`: train, leave tracking to rank 0
        result = train_cold_start(model, rows, cs_cfg, out, **train)
        return TrainedModel(stage="cold_start", model_uri=uri, steps=int(result["steps"]))
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        mlflow.log_param("cold_start.temperature_used", cfg.cold_start.temperature)
        result = train_cold_start(model, rows, cs_cfg, out, log_metrics=tracking.log_metrics_fn(), **train)
        mlflow.log_artifacts(result["model_dir"], "cold_start_model")
        mlflow.log_text(json.dumps(result["history"], indent=2), "cold_start_history.json")
    return TrainedModel(stage="cold_start", model_uri=uri, steps=int(result["steps"]))


def run_grpo(cfg: PipelineConfig, snapshot: DataSnapshot, triplets: TripletSet,
             cold_start: TrainedModel) -> TrainedModel:
    from components.model.lrem import LREMModel
    from components.training.grpo import split_for_rl, train_grpo

    out = run_dir(snapshot.run_key) / "grpo"
    main = _is_main_process()
    if not main:  # a worker of `accelerate launch`: trains beside rank 0, leaves tracking and saving to it
        tracking.configure(cfg)
    with tracking.resume(cfg, snapshot.mlflow_run_id) if main else contextlib.nullcontext():
        start_dir = tracking.download(cold_start.model_uri, out / ("start" if main else f"start-rank{_rank()}"))
        model = LREMModel.load(start_dir)
        world = load_world(snapshot.data_uri)
        titles = dict(zip(world.catalog["item_id"], world.catalog["title"]))
        all_rows = read_jsonl(Path(triplets.triplets_uri))
        grpo_cfg, replay_docs = cfg.grpo, None
        if grpo_cfg.lm_replay_weight:
            if cfg.model.base != "tiny":  # a hub checkpoint's pre-training text is not at hand
                log.info("model.base is a checkpoint: grpo.lm_replay_weight ignored")
                grpo_cfg = dataclasses.replace(grpo_cfg, lm_replay_weight=0.0)
            else:
                replay_docs = world_corpus(cfg, snapshot.data_uri, all_rows).train
        rows = split_for_rl(all_rows, cfg.grpo.rl_query_share, cfg.grpo.seed)[1]
        result = train_grpo(model, rows, titles, grpo_cfg, out, relevant=world.relevant(),
                            log_metrics=tracking.log_metrics_fn() if main else None, replay_docs=replay_docs)
        if main:
            mlflow.log_artifacts(result["model_dir"], "grpo_model")
            mlflow.log_text(json.dumps(result["history"], indent=2), "grpo_history.json")
    return TrainedModel(stage="grpo", model_uri=f"runs:/{snapshot.mlflow_run_id}/grpo_model",
                        steps=int(result["steps"]))
