"""Exact cosine top-k in memory: what a FLAT index returns, for models without a collection."""

from __future__ import annotations

import numpy as np


def exact_top_k(query_emb: np.ndarray, item_emb: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Indices of each query's top ``k`` items by cosine, best first (exact, as a FLAT index)."""
    def _unit(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    q, items = _unit(query_emb), _unit(item_emb)
    k = min(k, items.shape[0])
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], chunk):
        scores = q[start:start + chunk] @ items.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[start:start + chunk] = np.take_along_axis(part, order, axis=1)
    return out
