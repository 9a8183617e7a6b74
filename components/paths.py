"""Where the project lives and where the embedded default keeps its state.

Everything the embedded stack writes (Airflow home, MLflow store, Milvus Lite data,
DVC cache and local remote, logs, per-run scratch) goes under one git-ignored folder,
``.lrem/`` at the repository root, so ``make clean`` resets it. ``LREM_HOME`` moves it
(tests point it at a temporary directory).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Root of all embedded state (``$LREM_HOME`` or ``<repo>/.lrem``)."""
    path = Path(os.environ.get("LREM_HOME", REPO_ROOT / ".lrem")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_path(*parts: str) -> Path:
    """A folder under the state dir, created on first use."""
    path = state_dir().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(run_key: str) -> Path:
    """Scratch folder of one pipeline run (triplets, checkpoints, reports)."""
    return state_path("runs", run_key)


def default_mlflow_uri() -> str:
    """``$LREM_MLFLOW_URI`` (production: the tracking server), else the embedded SQLite store."""
    return os.environ.get("LREM_MLFLOW_URI") or "sqlite:///" + str(state_path("mlflow") / "mlflow.db")


def default_mlflow_artifacts() -> Path:
    return state_path("mlflow", "artifacts")


def default_milvus_uri() -> str:
    """``$LREM_MILVUS_URI`` (production: Milvus standalone/distributed), else the embedded server."""
    return os.environ.get("LREM_MILVUS_URI", "http://127.0.0.1:19530")
