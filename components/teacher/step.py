"""Step `generate_triplets`: the teacher writes Query-CoT-Item triplets for training queries."""

from __future__ import annotations

from pathlib import Path

import mlflow

from components import tracking
from components.artifacts import DataSnapshot, TripletSet
from components.config import PipelineConfig
from components.paths import run_dir


def run(cfg: PipelineConfig, snapshot: DataSnapshot) -> TripletSet:
    from components.teacher.triplets import generate_triplets

    out = run_dir(snapshot.run_key) / "triplets.jsonl"
    stats = generate_triplets(Path(snapshot.data_uri), cfg.teacher, out)
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        flat = {}
        for key, value in stats.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"triplets/{key}"] = float(value)
            elif isinstance(value, dict):
                flat.update({f"triplets/{key}/{k}": float(v) for k, v in value.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)})
        mlflow.log_metrics(flat)
        mlflow.set_tag("n_triplets", str(stats.get("n_triplets")))
        mlflow.log_artifact(str(out), "triplets")
    return TripletSet(triplets_uri=str(out), n_triplets=int(stats.get("n_triplets", 0)))
