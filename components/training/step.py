"""Steps `train_cold_start` and `train_grpo`: thin drivers around the library trainers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow

from components import tracking
from components.artifacts import DataSnapshot, TrainedModel, TripletSet
from components.config import PipelineConfig
from components.data.io import load_world, read_jsonl
from components.paths import run_dir


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def run_cold_start(cfg: PipelineConfig, snapshot: DataSnapshot, triplets: TripletSet) -> TrainedModel:
    from components.model.lrem import LREMModel
    from components.training.cold_start import train_cold_start

    world = load_world(snapshot.data_uri)
    rows = read_jsonl(Path(triplets.triplets_uri))
    corpus = (world.catalog["title"].tolist() + world.split("train")["text"].tolist()
              + [t["cot"] for t in rows])
    model = LREMModel.create(cfg.model, corpus)
    out = run_dir(snapshot.run_key) / "cold_start"
    train = dict(catalog=world.catalog.to_dict(orient="records"), relevant=world.relevant())
    uri = f"runs:/{snapshot.mlflow_run_id}/cold_start_model"
    if not _is_main_process():  # a worker of `accelerate launch`: train, leave tracking to rank 0
        result = train_cold_start(model, rows, cfg.cold_start, out, **train)
        return TrainedModel(stage="cold_start", model_uri=uri, steps=int(result["steps"]))
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        mlflow.log_param("cold_start.temperature_used", cfg.cold_start.temperature)
        result = train_cold_start(model, rows, cfg.cold_start, out, log_metrics=tracking.log_metrics_fn(),
                                  **train)
        mlflow.log_artifacts(result["model_dir"], "cold_start_model")
        mlflow.log_text(json.dumps(result["history"], indent=2), "cold_start_history.json")
    return TrainedModel(stage="cold_start", model_uri=uri, steps=int(result["steps"]))


def run_grpo(cfg: PipelineConfig, snapshot: DataSnapshot, triplets: TripletSet,
             cold_start: TrainedModel) -> TrainedModel:
    from components.model.lrem import LREMModel
    from components.training.grpo import train_grpo

    out = run_dir(snapshot.run_key) / "grpo"
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        start_dir = tracking.download(cold_start.model_uri, out / "start")
        model = LREMModel.load(start_dir)
        world = load_world(snapshot.data_uri)
        titles = dict(zip(world.catalog["item_id"], world.catalog["title"]))
        rows = read_jsonl(Path(triplets.triplets_uri))
        result = train_grpo(model, rows, titles, cfg.grpo, out, log_metrics=tracking.log_metrics_fn())
        mlflow.log_artifacts(result["model_dir"], "grpo_model")
        mlflow.log_text(json.dumps(result["history"], indent=2), "grpo_history.json")
    return TrainedModel(stage="grpo", model_uri=f"runs:/{snapshot.mlflow_run_id}/grpo_model",
                        steps=int(result["steps"]))
