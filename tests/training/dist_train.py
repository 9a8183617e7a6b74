"""Run by ``test_distributed.py`` under ``accelerate launch --multi_gpu --num_processes N`` (CPU: gloo):
the library trainers on a tiny saved model; each process writes what it saw to JSON files.

    dist_train.py cold_start MODEL_DIR TRIPLETS_JSON OUT_DIR CONFIG_JSON RUNS [KILL_AT_STEP]
    dist_train.py grpo MODEL_DIR TRIPLETS_JSON OUT_DIR CONFIG_JSON [RUNS [KILL_AT_STEP]]

For each name in the comma-separated ``RUNS`` (GRPO: default ``grpo``), a fresh copy of the model
trains in ``OUT_DIR/<name>`` (resuming from a checkpoint there, if any); ``<name>.rank<R>.json``
records it. ``KILL_AT_STEP``: rank 0 dies (``os._exit``) when it logs that step, as a lost worker
would; the launcher then stops the other process. Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from components.config import ColdStartConfig, GRPOStageConfig
from components.model.lrem import LREMModel


def weights_digest(model: LREMModel) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.lm.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def cold_start(model_dir: str, rows: list[dict], out: Path, config: dict, runs: str, kill_at: int | None) -> None:
    from components.training.cold_start import train_cold_start

    rank = int(os.environ.get("RANK", "0"))
    for name in runs.split(","):
        model = LREMModel.load(model_dir)
        initial = weights_digest(model)
        logged: list[dict] = []

        def log_metrics(metrics: dict, step: int) -> None:
            logged.append({"step": step, "lr": metrics["cold_start/lr"]})
            if kill_at is not None and step == kill_at:
                os._exit(17)

        result = train_cold_start(model, rows, ColdStartConfig(**config), out / name, log_metrics=log_metrics,
                                  show_progress=False)
        (out / f"{name}.rank{rank}.json").write_text(json.dumps({
            "initial": initial, "final": weights_digest(model), "logged": logged,
            **{k: result[k] for k in ("steps", "num_processes", "per_device_batch_size", "examples_this_process")},
        }))


def grpo(model_dir: str, rows: list[dict], out: Path, config: dict, runs: str, kill_at: int | None) -> None:
    from components.training.grpo import train_grpo

    rank = int(os.environ.get("RANK", "0"))
    titles = {r["item_id"]: r["item_title"] for r in rows}
    for name in runs.split(","):
        model = LREMModel.load(model_dir)
        initial = weights_digest(model)
        logged: list[int] = []

        def log_metrics(metrics: dict, step: int) -> None:
            logged.append(step)
            if kill_at is not None and step == kill_at:
                os._exit(17)

        result = train_grpo(model, rows, titles, GRPOStageConfig(**config), out / name, log_metrics=log_metrics,
                            show_progress=False)
        (out / f"{name}.rank{rank}.json").write_text(json.dumps({
            "initial": initial, "final": weights_digest(model), "logged": logged,
            "saved": (out / name / "model" / "lrem_config.json").exists(),
            **{k: result[k] for k in ("steps", "resumed_from_step", "num_processes", "per_device_batch_size",
                                      "generation_batch_size")},
        }))


if __name__ == "__main__":
    mode, model_dir, triplets, out = sys.argv[1:5]
    rows = json.loads(Path(triplets).read_text())
    config = json.loads(sys.argv[5])
    if mode == "cold_start":
        cold_start(model_dir, rows, Path(out), config, sys.argv[6], int(sys.argv[7]) if len(sys.argv) > 7 else None)
    else:
        grpo(model_dir, rows, Path(out), config, sys.argv[6] if len(sys.argv) > 6 else "grpo",
             int(sys.argv[7]) if len(sys.argv) > 7 else None)
