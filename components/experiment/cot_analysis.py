"""What the LREM's chain of thought says: statistics against the teacher's CoT, the product type it
names, and how well the cold start learned the teacher's CoT."""

from __future__ import annotations

import json
from typing import Callable, Sequence

import numpy as np

from components.config import CATEGORIES
from components.experiment.config import ExperimentConfig
from components.experiment.data import ExperimentData


def _cot_stats(data: ExperimentData, cots: list[str], count_tokens: Callable[[str], int]) -> dict:
    words = [len(c.split()) for c in cots]
    tokens = [count_tokens(c) for c in cots]
    examples, seen = [], set()
    for text, cat, cot in zip(data.eval_texts, data.eval_categories, cots):
        if cat not in seen:
            seen.add(cat)
            examples.append({"category": cat, "query": text, "cot": cot})
    order = {c: i for i, c in enumerate(CATEGORIES)}
    examples.sort(key=lambda e: order.get(e["category"], len(order)))
    return {"mean_words": float(np.mean(words)) if words else 0.0,
            "mean_tokens": float(np.mean(tokens)) if tokens else 0.0,
            "empty_share": float(np.mean([t == 0 for t in tokens])) if tokens else 0.0,
            "distinct_share": len(set(cots)) / len(cots) if cots else 0.0,
            "examples": examples}


def _samples(data: ExperimentData, ranked: dict, cots: list[str], per_category: int = 2) -> list[dict]:
    from components.evaluation.report import sample_rows

    return sample_rows(data.eval_ids, data.eval_texts, data.eval_categories, cots, ranked, data.relevant,
                       dict(zip(data.item_ids.tolist(), data.item_titles)), per_category)


def _words(text: str) -> set[str]:
    return set(text.replace(",", " ").split())


def type_phrases(knowledge: dict) -> dict[str, str]:
    """Lower-cased product-type names and synonyms -> product type (from ``knowledge.json``)."""
    out: dict[str, str] = {}
    for name, info in (knowledge.get("product_types") or {}).items():
        for phrase in [name, *info.get("synonyms", [])]:
            out.setdefault(phrase.lower(), name)
    return out


def first_named_type(cot: str, phrases: dict[str, str]) -> str | None:
    """The product type of the first comma-separated CoT phrase that names one (None: none does)."""
    for part in cot.split(","):
        kind = phrases.get(part.strip().lower())
        if kind is not None:
            return kind
    return None


def type_accuracy(cots: Sequence[str], query_ids: Sequence[str], relevant: dict, item_type: dict[str, str],
                  phrases: dict[str, str]) -> list[float]:
    """Per query: 1 when the first product type the CoT names is the type of a relevant item.

    The probes found the LREM embedding follows the product type its CoT names almost
    entirely (HitRate@100 near 1 when it is right, near 0 when it is wrong), so this is the
    CoT statistic that predicts retrieval; a CoT that names no type counts as wrong."""
    out = []
    for cot, qid in zip(cots, query_ids):
        kind = first_named_type(cot, phrases)
        wanted = {item_type.get(i) for i in relevant.get(qid, ())}
        out.append(1.0 if kind is not None and kind in wanted else 0.0)
    return out


def keyword_f1(generated: str, teacher: str) -> float:
    """Word-level F1 of a generated CoT against the teacher's (1.0 when both are empty)."""
    g, t = _words(generated), _words(teacher)
    if not g and not t:
        return 1.0
    common = len(g & t)
    if not common:
        return 0.0
    p, r = common / len(g), common / len(t)
    return 2 * p * r / (p + r)


def _train_cot_fit(model, data: ExperimentData, n: int = 300) -> dict:
    """How well the cold start learned the teacher's CoT on training queries: teacher-forced
    next-token accuracy on the CoT tokens, and the greedy CoT's keyword F1 and exact-match rate."""
    import torch

    first: dict[str, str] = {}
    for t in data.triplets:
        first.setdefault(t["query"], t["cot"])
    queries = list(first)[:n]
    cots = [first[q] for q in queries]
    correct = total = 0
    with torch.no_grad():
        was = model.lm.training
        model.lm.eval()
        for start in range(0, len(queries), 64):
            batch = model.query_batch(queries[start:start + 64], cots[start:start + 64]).to(model.device)
            logits = model.lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]
            target = batch.sft_labels[:, 1:]
            where = target != -100
            correct += int((logits.argmax(-1)[where] == target[where]).sum())
            total += int(where.sum())
        model.lm.train(was)
    greedy = model.generate_cots(queries)
    return {"n_queries": len(queries), "token_accuracy": correct / max(total, 1),
            "greedy_keyword_f1": float(np.mean([keyword_f1(g, c) for g, c in zip(greedy, cots)])),
            "greedy_exact": float(np.mean([g.strip() == c.strip() for g, c in zip(greedy, cots)]))}


def _evaluate_generated(rec: dict, model, data: ExperimentData, cfg: ExperimentConfig, evaluate) -> tuple:
    """Evaluate with the model's own greedy CoT; CoT statistics against the teacher go into ``rec``."""
    import mlflow

    cots: list[str] = []

    def queries_fn():
        emb, generated = model.embed_queries(data.eval_texts, reasoning=True, max_cot_tokens=cfg.max_cot_tokens,
                                             batch_size=cfg.eval_batch_size)
        cots.extend(generated)
        return emb

    ranked = evaluate(rec, lambda: model.embed_items(data.item_titles, batch_size=cfg.eval_batch_size * 2),
                      queries_fn)
    stats = _cot_stats(data, cots, lambda c: len(model.cot_ids(c)))
    f1 = [keyword_f1(g, t) for g, t in zip(cots, data.teacher_eval_cots)]
    stats["teacher_keyword_f1"] = float(np.mean(f1)) if f1 else 0.0
    stats["teacher_keyword_f1_by_category"] = {
        c: float(np.mean([v for v, cat in zip(f1, data.eval_categories) if cat == c]))
        for c in dict.fromkeys(data.eval_categories)}
    from components.data.io import load_knowledge

    try:
        phrases = type_phrases(load_knowledge(data.data_dir))
    except FileNotFoundError:  # real data: no product-type vocabulary
        phrases = {}
    if phrases:
        acc = type_accuracy(cots, data.eval_ids, data.relevant, data.item_types, phrases)
        stats["type_accuracy"] = float(np.mean(acc)) if acc else 0.0
        stats["type_accuracy_by_category"] = {
            c: float(np.mean([v for v, cat in zip(acc, data.eval_categories) if cat == c]))
            for c in dict.fromkeys(data.eval_categories)}
    for ex in stats["examples"]:
        ex["teacher"] = data.teacher_eval_cots[data.eval_texts.index(ex["query"])]
    rec["cot"] = stats
    mlflow.log_text(json.dumps([{"query": q, "category": c, "cot": t, "teacher": tc} for q, c, t, tc in
                                zip(data.eval_texts, data.eval_categories, cots, data.teacher_eval_cots)], indent=1),
                    "generated_cots.json")
    mlflow.log_metrics({"cot_mean_tokens": stats["mean_tokens"], "cot_distinct_share": stats["distinct_share"],
                        "cot_mean_words": stats["mean_words"], "cot_empty_share": stats["empty_share"],
                        "cot_teacher_keyword_f1": stats["teacher_keyword_f1"],
                        **({"cot_type_accuracy": stats["type_accuracy"]} if "type_accuracy" in stats else {})})
    return ranked, _samples(data, ranked, cots)
