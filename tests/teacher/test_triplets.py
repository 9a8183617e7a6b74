"""The teacher's Query-CoT-Item triplets on the default demo world."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from components.config import CATEGORIES, TeacherConfig, WorldConfig
from components.data import schema
from components.data.generate import generate_world, words
from components.data.io import load_knowledge, read_jsonl
from components.teacher import LexicalRetriever, Teacher, generate_triplets

TRIPLET_KEYS = {"query_id", "query", "category", "cot", "item_id", "item_title"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(WorldConfig(), out)
    return out


@pytest.fixture(scope="module")
def world(data_dir):
    relevant: dict[str, set[str]] = {}
    for row in read_jsonl(data_dir / schema.JUDGMENTS_FILE):
        relevant.setdefault(row["query_id"], set()).add(row["item_id"])
    return {"catalog": {r["item_id"]: r for r in read_jsonl(data_dir / schema.CATALOG_FILE)},
            "queries": {q["query_id"]: q for q in read_jsonl(data_dir / schema.QUERIES_FILE)},
            "relevant": relevant, "knowledge": load_knowledge(data_dir)}


@pytest.fixture(scope="module")
def default_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "triplets.jsonl"
    stats = generate_triplets(data_dir, TeacherConfig(), out)
    return {"path": out, "rows": read_jsonl(out), "stats": stats}


def test_rows_have_the_triplet_columns(default_run):
    assert default_run["rows"]
    assert all(set(r) == TRIPLET_KEYS for r in default_run["rows"])


def test_cot_is_non_empty_and_bounded(default_run):
    limit = TeacherConfig().max_cot_tokens
    for row in default_run["rows"]:
        assert row["cot"].strip()
        assert len(row["cot"].split()) <= limit, row["cot"]
        assert all(kw.strip() for kw in row["cot"].split(","))


def test_only_train_queries_with_their_own_text(default_run, world):
    for row in default_run["rows"]:
        query = world["queries"][row["query_id"]]
        assert query["split"] == "train"
        assert row["query"] == query["text"] and row["category"] == query["category"]


def test_items_exist_and_are_judged_relevant(default_run, world):
    per_query = Counter(r["query_id"] for r in default_run["rows"])
    for row in default_run["rows"]:
        assert row["item_id"] in world["catalog"]
        assert row["item_title"] == world["catalog"][row["item_id"]]["title"]
        assert row["item_id"] in world["relevant"][row["query_id"]]
    assert max(per_query.values()) <= TeacherConfig().max_items_per_query
    pairs = [(r["query_id"], r["item_id"]) for r in default_run["rows"]]
    assert len(set(pairs)) == len(pairs)


def test_no_keyword_overlaps_the_query(default_run):
    for row in default_run["rows"]:
        qwords = set(words(row["query"]))
        keywords = [kw.strip() for kw in row["cot"].split(",")]
        assert len(set(keywords)) == len(keywords), row["cot"]
        for kw in keywords:
            assert not qwords.intersection(words(kw)), (row["query"], kw)


def test_no_banned_terms_and_no_other_brands(default_run, world):
    banned = {" ".join(words(t)) for t in TeacherConfig().banned_terms}
    brands = {b.lower() for b in world["knowledge"]["brands"]}
    for row in default_run["rows"]:
        keywords = [" ".join(words(kw)) for kw in row["cot"].split(",")]
        assert not banned.intersection(keywords), row["cot"]
        if brands.intersection(words(row["query"])):  # the query names a brand: no other brand in the CoT
            assert not brands.intersection(words(row["cot"])), (row["query"], row["cot"])


def test_stats_are_consistent(default_run, world):
    stats, rows = default_run["stats"], default_run["rows"]
    n_train = sum(q["split"] == "train" for q in world["queries"].values())
    assert stats["n_triplets"] == len(rows)
    assert stats["n_train_queries"] == n_train
    assert stats["n_queries"] == len({r["query_id"] for r in rows})
    assert stats["n_queries"] + stats["n_queries_dropped"] == n_train
    assert stats["triplets_per_category"] == {c: sum(r["category"] == c for r in rows) for c in CATEGORIES}
    assert all(stats["triplets_per_category"][c] > 0 for c in CATEGORIES)
    assert sum(stats["filter_paths"].values()) <= n_train
    assert stats["filter_paths"]["retriever"] > 0 and stats["filter_paths"]["judged"] == 0
    cot_words = {r["query_id"]: len(r["cot"].split()) for r in rows}
    assert stats["mean_cot_words"] == pytest.approx(sum(cot_words.values()) / len(cot_words), abs=1e-3)
    assert stats["seconds"] < 30
    # most training queries keep at least one triplet
    assert stats["n_queries"] >= 0.95 * n_train


def test_deterministic(default_run, data_dir, tmp_path):
    out = tmp_path / "again.jsonl"
    generate_triplets(data_dir, TeacherConfig(), out)
    assert out.read_bytes() == default_run["path"].read_bytes()


def test_retriever_items_are_found_only_with_the_keywords(default_run, data_dir, world):
    """On the retriever path, kept items are in B (query + keywords) and not in A (query alone),
    taken in turns over their product types (teacher.item_select: spread)."""
    from components.teacher.triplets import spread_over_types

    catalog = list(world["catalog"].values())
    retriever = LexicalRetriever([i["item_id"] for i in catalog], [i["title"] for i in catalog])
    k = TeacherConfig().retriever_top_k
    by_query: dict[str, list[dict]] = {}
    for row in default_run["rows"]:
        by_query.setdefault(row["query_id"], []).append(row)
    checked = 0
    for qid in sorted(by_query)[:150]:
        rows = by_query[qid]
        a = set(retriever.search(rows[0]["query"], k))
        b = retriever.search(f"{rows[0]['query']} ({rows[0]['cot']})", k)
        b_minus_a = [i for i in b if i not in a and i in world["relevant"][qid]]
        if b_minus_a:
            checked += 1
            types = {i: world["catalog"][i]["product_type"] for i in b_minus_a}
            assert [r["item_id"] for r in rows] == spread_over_types(b_minus_a, types, TeacherConfig().max_items_per_query)
    assert checked > 50


def test_item_filter_policies(data_dir, world, tmp_path):
    judged = generate_triplets(data_dir, TeacherConfig(item_filter="judged"), tmp_path / "judged.jsonl")
    assert judged["filter_paths"]["judged"] == judged["n_queries"] > 0
    assert judged["filter_paths"]["retriever"] == judged["filter_paths"]["judged_fallback"] == 0

    strict = generate_triplets(data_dir, TeacherConfig(item_filter="retriever"), tmp_path / "strict.jsonl")
    assert strict["filter_paths"]["judged_fallback"] == 0
    assert strict["filter_paths"]["retriever"] == strict["n_queries"]
    assert strict["n_queries_dropped"] >= strict["filter_paths"]["dropped"]

    with pytest.raises(ValueError):
        generate_triplets(data_dir, TeacherConfig(item_filter="nope"), tmp_path / "bad.jsonl")


def test_short_cot_budget(data_dir, tmp_path):
    out = tmp_path / "short.jsonl"
    stats = generate_triplets(data_dir, TeacherConfig(max_cot_tokens=4, max_items_per_query=1), out)
    rows = read_jsonl(out)
    assert rows and all(1 <= len(r["cot"].split()) <= 4 for r in rows)
    assert Counter(r["query_id"] for r in rows).most_common(1)[0][1] == 1
    assert stats["max_cot_words"] <= 4


def test_teacher_reasoning_uses_the_knowledge(world):
    teacher = Teacher(world["knowledge"], TeacherConfig())
    kn = world["knowledge"]
    premium = sorted(kn["premium_brands"])[0]
    ptype = kn["premium_brands"][premium]["product_type"]
    cot, reasoning = teacher.cot(f"affordable alternative to {premium.lower()}", "alternative")
    assert reasoning.kind == "premium_brand" and ptype.lower() in cot
    assert "affordable" not in cot.split(", ") and "cheap" not in cot.split(", ")
    cot, reasoning = teacher.cot("gear for the sport played at wimbledon", "knowledge")
    assert reasoning.kind == "fact" and cot.startswith("tennis, tennis racket")
    cot, reasoning = teacher.cot("running shoes not leather", "negative")
    assert reasoning.kind == "negation"
    assert "mesh" in cot and "leather" not in cot and "running shoes" not in cot


def test_lexical_retriever_ranks_by_bm25():
    retriever = LexicalRetriever(["a", "b", "c"], ["Red Wool Beanie", "Blue Wool Sweater", "Red Rain Jacket"])
    assert retriever.search("red beanie", 10) == ["a", "c"]
    assert retriever.search("wool", 1) == ["a"]  # ties keep catalog order
    assert retriever.search("nothing matches", 5) == []


def test_spread_over_types_takes_turns_between_types():
    from components.teacher.triplets import spread_over_types

    types = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "c1": "C", "x": None}
    assert spread_over_types(["a1", "a2", "a3", "b1", "c1"], types, 4) == ["a1", "b1", "c1", "a2"]
    assert spread_over_types(["a1", "a2", "x"], types, 2) == ["a1", "x"]
    assert spread_over_types(["a1", "a2"], types, 5) == ["a1", "a2"]


def test_spread_selection_trains_multi_type_queries_toward_every_type(data_dir, world, tmp_path):
    """A query whose relevant items span several product types gets triplets of each (the
    'top' selection, in the retriever's order, nearly always keeps one type only)."""
    def coverage(cfg: TeacherConfig) -> float:
        out = tmp_path / f"{cfg.item_select}_{cfg.retriever_top_k}.jsonl"
        generate_triplets(data_dir, cfg, out)
        kept: dict[str, set[str]] = {}
        for r in read_jsonl(out):
            kept.setdefault(r["query_id"], set()).add(world["catalog"][r["item_id"]]["product_type"])
        multi = [q for q in kept if len({world["catalog"][i]["product_type"] for i in world["relevant"][q]}) > 1]
        assert len(multi) > 50
        return sum(len(kept[q]) > 1 for q in multi) / len(multi)

    assert coverage(TeacherConfig(item_select="top", retriever_top_k=50)) < 0.1
    assert coverage(TeacherConfig(item_select="spread", retriever_top_k=200)) > 0.95
    with pytest.raises(ValueError):
        generate_triplets(data_dir, TeacherConfig(item_select="nope"), tmp_path / "bad.jsonl")
