"""The second lane: a process of its own (``workers > 1``) that trains the MiniLM rows and the direct
embedders and hands back their embeddings; ``workers=1`` runs the same functions in this process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from components.experiment.config import LABELS, ExperimentConfig
from components.experiment.data import ExperimentData
from components.experiment.minilm import embed_minilm, load_minilm, train_minilm
from components.experiment.tiny_llm import _n_params, train_tiny_llm


class _InlineLane:
    """The lane interface run in this process, one task after another (``workers=1``)."""

    class _Done:
        def __init__(self, fn: Callable, args: tuple) -> None:
            self._value, self._error = None, None
            try:
                self._value = fn(*args)
            except Exception as exc:  # noqa: BLE001 - re-raised by get()
                self._error = exc

        def get(self) -> Any:
            if self._error is not None:
                raise self._error
            return self._value

    def apply_async(self, fn: Callable, args: tuple = ()) -> "_InlineLane._Done":
        return self._Done(fn, args)

    def close(self) -> None:
        return None

    def join(self) -> None:
        return None

    def terminate(self) -> None:
        return None


def _open_lane(cfg: ExperimentConfig):
    """A second process for the MiniLM rows and the direct embedders (``Pool.apply_async``)."""
    if cfg.workers <= 1:
        return _InlineLane()
    import multiprocessing

    return multiprocessing.get_context("spawn").Pool(processes=1)


def _lane_setup(cfg: ExperimentConfig) -> None:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def lane_minilm(data: ExperimentData, cfg: ExperimentConfig, wanted: Sequence[str]) -> dict:
    """MiniLM zero-shot and + InfoNCE; returns embeddings and training records (no MLflow here)."""
    _lane_setup(cfg)
    minilm = load_minilm()
    out: dict[str, Any] = {"params": _n_params(minilm)}
    if "minilm_zeroshot" in wanted:
        items, item_s = _timed(lambda: embed_minilm(minilm, data.item_titles))
        queries, query_s = _timed(lambda: embed_minilm(minilm, data.eval_texts))
        out["minilm_zeroshot"] = {"items": items, "queries": queries, "item_s": item_s, "query_s": query_s}
    if "minilm_infonce" in wanted:
        print("[experiment] MiniLM-L6 + InfoNCE: training", flush=True)
        t0 = time.perf_counter()
        summary = train_minilm(minilm, data.triplets, cfg, catalog=data.catalog, relevant=data.relevant)
        train_s = time.perf_counter() - t0
        items, item_s = _timed(lambda: embed_minilm(minilm, data.item_titles))
        queries, query_s = _timed(lambda: embed_minilm(minilm, data.eval_texts))
        out["minilm_infonce"] = {"items": items, "queries": queries, "item_s": item_s, "query_s": query_s,
                                 "steps": summary["steps"], "train_seconds": train_s, "bf16": summary["bf16"],
                                 "final_loss": summary["final_loss"], "history": summary["history"]}
    return out


def lane_direct(data: ExperimentData, cfg: ExperimentConfig, backbone_dir: str, model_id: str, pooling: str,
                out_dir: Path) -> dict:
    """The backbone fine-tuned as a direct embedder; returns embeddings and its training record."""
    _lane_setup(cfg)
    print(f"[experiment] {LABELS[model_id]}: training", flush=True)
    t0 = time.perf_counter()
    model, summary = train_tiny_llm(data, cfg, backbone_dir, pooling, False, out_dir)
    train_s = time.perf_counter() - t0
    items, item_s = _timed(lambda: model.embed_items(data.item_titles, batch_size=cfg.eval_batch_size * 2))
    queries, query_s = _timed(lambda: model.embed_queries(data.eval_texts, reasoning=False,
                                                          batch_size=cfg.eval_batch_size)[0])
    return {"items": items, "queries": queries, "item_s": item_s, "query_s": query_s, "params": _n_params(model),
            "steps": summary["steps"], "train_seconds": train_s, "final_loss": summary["final_loss"],
            "history": summary["history"]}
