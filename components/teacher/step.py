"""Step `generate_triplets`: the teacher writes Query-CoT-Item triplets for training queries
(all but the ones held out for the reasoning router: ``routing.holdout_share``)."""

from __future__ import annotations

from pathlib import Path

import mlflow

from components import tracking
from components.artifacts import DataSnapshot, TripletSet
from components.config import PipelineConfig
from components.paths import run_dir


def write_triplets(cfg: PipelineConfig, data_uri: str, out: Path) -> dict:
    """The teacher's triplets for the run's training queries but the router's held-out ones
    (``routing.holdout_share``, :func:`components.routing.holdout.holdout_query_ids`): every
    trainer reads this file, so no held-out query reaches a trainer. Returns the stats."""
    from components.data.io import load_world
    from components.routing.holdout import holdout_query_ids
    from components.teacher.triplets import generate_triplets

    held = holdout_query_ids(cfg, load_world(data_uri).queries)
    return generate_triplets(Path(data_uri), cfg.teacher, out, exclude=held)


def run(cfg: PipelineConfig, snapshot: DataSnapshot) -> TripletSet:
    out = run_dir(snapshot.run_key) / "triplets.jsonl"
    stats = write_triplets(cfg, snapshot.data_uri, out)
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
