"""The experiment's data: the world, the teacher's triplets, the eval queries, and each hard query's intent."""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.experiment.config import ExperimentConfig
from components.paths import REPO_ROOT, state_path


@dataclass
class ExperimentData:
    data_dir: Path
    triplets: list
    item_ids: np.ndarray
    item_titles: list
    eval_ids: list
    eval_texts: list
    eval_categories: list
    relevant: dict
    corpus: Any  # the backbone's pre-training corpus (WorldCorpus), built as the pipeline builds it
    teacher_eval_cots: list  # the teacher's CoT of each eval query (the ceiling ablation only)
    n_train_queries: int
    n_eval_queries_total: int
    catalog: list = field(default_factory=list)  # catalog rows (hard-negative mining, item types)
    # hard eval query id -> whether a training query has its intent (intent_of); absent: none found
    intent_seen: dict = field(default_factory=dict)

    @functools.cached_property
    def item_types(self) -> dict[str, str]:
        """Item id -> product type ({} when the catalog has none)."""
        return {r["item_id"]: r["product_type"] for r in self.catalog if r.get("product_type")}

    @property
    def categories(self) -> dict[str, str]:
        return dict(zip(self.eval_ids, self.eval_categories))


def _stratified(frame, n: int):
    """The first rows of each category (by query id), about ``n`` in all."""
    frame = frame.sort_values("query_id")
    groups = sorted(frame["category"].unique())
    per = math.ceil(n / max(1, len(groups)))
    parts = [frame[frame["category"] == g].head(per) for g in groups]
    import pandas as pd

    return pd.concat(parts).sort_values("query_id").head(n).reset_index(drop=True)


def prepare_data(cfg: ExperimentConfig, work_dir: Path) -> ExperimentData:
    """Load (or generate) the world, write the teacher's triplets, pick the eval queries."""
    from components.data import schema
    from components.data.generate import generate_world
    from components.data.io import load_world, read_jsonl
    from components.teacher import generate_triplets

    if cfg.data_dir is None:
        data_dir = state_path("experiment", "data")
        stamp = data_dir / "world_config.json"  # regenerate when the world config changed
        wanted = json.dumps(asdict(cfg.world), sort_keys=True)
        if not (data_dir / schema.CATALOG_FILE).exists() or not stamp.exists() or stamp.read_text() != wanted:
            generate_world(cfg.world, data_dir)
            stamp.write_text(wanted)
    else:
        data_dir = Path(cfg.data_dir)
        if not data_dir.is_absolute() and not data_dir.exists():
            data_dir = REPO_ROOT / data_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    triplets_path = work_dir / "triplets.jsonl"
    generate_triplets(data_dir, cfg.teacher, triplets_path)
    world = load_world(data_dir)
    train = world.split("train")
    train_ids = set(train["query_id"])
    triplets = [t for t in read_jsonl(triplets_path) if t["query_id"] in train_ids]
    if not triplets:
        raise ValueError(f"{data_dir}: the teacher produced no triplets for the train queries")
    eval_all = world.split("eval")
    eval_q = eval_all if not cfg.max_eval_queries or cfg.max_eval_queries >= len(eval_all) \
        else _stratified(eval_all, cfg.max_eval_queries)
    from components.data.io import load_knowledge
    from components.teacher import Teacher
    from components.training.pretrain import render_world_corpus

    knowledge = load_knowledge(data_dir)
    from components.training.pretrain import cot_documents

    corpus = render_world_corpus(world.catalog.to_dict(orient="records"), train["text"].tolist(), knowledge,
                                 cfg.backbone.heldout_fraction, seed=cfg.backbone.seed,
                                 paraphrases=cfg.backbone.knowledge_paraphrases,
                               knowledge_repeats=cfg.backbone.knowledge_repeats,
                                 train_cots=cot_documents(triplets, cfg.model) if cfg.backbone.train_cots else None)
    teacher = Teacher(knowledge, cfg.teacher)
    teacher_cots = [teacher.cot(q, c)[0] for q, c in zip(eval_q["text"], eval_q["category"])]
    return ExperimentData(
        data_dir=data_dir, triplets=triplets,
        item_ids=world.catalog["item_id"].to_numpy(), item_titles=world.catalog["title"].tolist(),
        eval_ids=eval_q["query_id"].tolist(), eval_texts=eval_q["text"].tolist(),
        eval_categories=eval_q["category"].tolist(), relevant=world.relevant(), corpus=corpus,
        teacher_eval_cots=teacher_cots,
        n_train_queries=len(train), n_eval_queries_total=len(eval_all),
        catalog=world.catalog.to_dict(orient="records"),
        intent_seen=intent_seen(eval_q, train, knowledge),
    )


def _padded(text: str) -> str:
    """The text's words between spaces, so a phrase matches whole words only."""
    from components.data.generate import words

    return f" {' '.join(words(text))} "


def _phrase_in(phrase: str, text: str) -> bool:
    return _padded(phrase) in _padded(text)


def intent_of(text: str, category: str, knowledge: dict) -> str | None:
    """What a hard query asks about, from the world's knowledge: its use (qa), its fact
    (knowledge) or its premium brand (alternative); the longest one the query names."""
    if category == "qa":
        candidates = [u["use"] for u in knowledge.get("uses", [])]
    elif category == "knowledge":
        candidates = [f["fact"] for f in knowledge.get("facts", [])]
    elif category == "alternative":
        candidates = list(knowledge.get("premium_brands", {}))
    else:
        return None
    found = [c for c in candidates if _phrase_in(c, text)]
    return max(found, key=len) if found else None


def intent_seen(eval_q, train, knowledge: dict) -> dict[str, bool]:
    """Hard eval query id -> whether some training query names the same intent. Queries whose
    intent is new test what the backbone knows rather than what the training pairs taught."""
    out: dict[str, bool] = {}
    train_texts = [_padded(t) for t in train["text"]]
    cache: dict[str, bool] = {}
    # a varied-phrasing world records each query's intent: a reworded or misspelt query may not name it
    recorded = eval_q["intent"] if "intent" in eval_q.columns else [None] * len(eval_q)
    for qid, text, category, known in zip(eval_q["query_id"], eval_q["text"], eval_q["category"], recorded):
        intent = intent_of(text, category, knowledge)
        if isinstance(known, str) and category in ("qa", "knowledge", "alternative"):
            intent = known.lower() if category == "alternative" else known
        if intent is None:
            continue
        if intent not in cache:
            cache[intent] = any(_padded(intent) in t for t in train_texts)
        out[qid] = cache[intent]
    return out


INTENT_SEEN, INTENT_NEW = "hard, intent in training", "hard, intent new"


def intent_groups(data: ExperimentData) -> dict[str, list[str]]:
    """Hard eval queries by whether a training query has their intent (``intent_seen``)."""
    if not data.intent_seen:
        return {}
    return {INTENT_SEEN: [q for q, seen in data.intent_seen.items() if seen],
            INTENT_NEW: [q for q, seen in data.intent_seen.items() if not seen]}
