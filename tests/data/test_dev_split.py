"""The dev split (``world.dev_fraction``): training intents said again as the traffic says them,
drawn last from streams of their own, so no train or eval row changes; never trained on; checked
by the raw-data suite like the other splits."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.config import CATEGORIES, WorldConfig
from components.data import schema
from components.data.generate import generate_world, words
from components.data.io import read_jsonl
from components.validation import DataValidationError, validate_raw, validate_triplets
from components.validation.text_rules import normalized_query

STRICT = ("qa", "alternative", "knowledge")


def _read(out):
    queries = read_jsonl(out / schema.QUERIES_FILE)
    relevant: dict[str, list[str]] = {}
    for row in read_jsonl(out / schema.JUDGMENTS_FILE):
        relevant.setdefault(row["query_id"], []).append(row["item_id"])
    return queries, relevant


@settings(max_examples=6)
@given(seed=st.integers(0, 10_000), n_queries=st.integers(40, 160), dev_fraction=st.sampled_from([0.1, 0.25, 0.5, 1.0]))
def test_dev_split_leaves_train_and_eval_alone(tmp_path_factory, seed, n_queries, dev_fraction):
    """Any seed, size and dev share: the train and eval rows (and catalog, knowledge, their
    judgments) are those of the world without dev, byte for byte; the dev queries are new texts
    (after normalisation), each a training query's intent and relevant items said again, with the
    hard categories' overlap rule kept, about ``dev_fraction`` of each category's training queries."""
    base, dev = tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("dev")
    common = dict(seed=seed, n_items=150, n_queries=n_queries)
    generate_world(WorldConfig(**common, dev_fraction=0.0), base)
    stats = generate_world(WorldConfig(**common, dev_fraction=dev_fraction), dev)
    for name in (schema.CATALOG_FILE, schema.KNOWLEDGE_FILE):
        assert (base / name).read_bytes() == (dev / name).read_bytes()
    for name in (schema.QUERIES_FILE, schema.JUDGMENTS_FILE):
        before = (base / name).read_text().splitlines()
        assert (dev / name).read_text().splitlines()[:len(before)] == before  # dev rows come after, nothing else moves

    queries, relevant = _read(dev)
    catalog = {r["item_id"]: r for r in read_jsonl(dev / schema.CATALOG_FILE)}
    train = [q for q in queries if q["split"] == "train"]
    dev_rows = [q for q in queries if q["split"] == "dev"]
    assert dev_rows and not {q["query_id"] for q in dev_rows} & {q["query_id"] for q in train}
    keys = Counter(normalized_query(q["text"]) for q in queries)
    assert all(keys[normalized_query(q["text"])] == 1 for q in dev_rows)
    per_cat = Counter(q["category"] for q in train)
    got = Counter(q["category"] for q in dev_rows)
    for category in CATEGORIES:
        target = min(per_cat[category], round(per_cat[category] * dev_fraction))
        assert target - stats.get("dev_shortfall", {}).get(category, 0) == got[category]
    by_intent = {}
    for q in train:
        by_intent.setdefault((q["category"], q["intent"]), []).append(sorted(relevant[q["query_id"]]))
    for q in dev_rows:
        assert sorted(relevant[q["query_id"]]) in by_intent[(q["category"], q["intent"])]
        if q["category"] in STRICT:
            title_words = set().union(*(set(words(catalog[i]["title"])) for i in relevant[q["query_id"]]))
            assert not set(words(q["text"])) & title_words
    assert stats["queries_per_split"]["dev"] == len(dev_rows)


def test_dev_split_is_phrased_as_the_traffic(tmp_path):
    """Dev queries draw the eval split's phrasing (held-out patterns and wordings at its share);
    with phrasing "fixed" (one wording per core) there is no dev split."""
    generate_world(WorldConfig(n_items=300, n_queries=400, dev_fraction=1.0), tmp_path / "varied")
    queries, _ = _read(tmp_path / "varied")
    dev = [q for q in queries if q["split"] == "dev"]
    share = sum(q["heldout_phrasing"] for q in dev) / len(dev)
    assert 0.35 < share < 0.65
    assert not any(q["heldout_phrasing"] for q in queries if q["split"] == "train")
    stats = generate_world(WorldConfig(n_items=300, n_queries=400, phrasing="fixed"), tmp_path / "fixed")
    assert "dev" not in stats["queries_per_split"]
    assert {q["split"] for q in read_jsonl(tmp_path / "fixed" / schema.QUERIES_FILE)} == set(schema.SPLITS)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    generate_world(WorldConfig(n_items=200, n_queries=120), out)
    return out


def test_a_world_with_dev_passes_the_raw_suite(small_world, tmp_path):
    summary = validate_raw(small_world, tmp_path / "docs")
    assert summary["success"] is True


def _rewrite_queries(src, dst, change):
    import shutil

    shutil.copytree(src, dst)
    queries = read_jsonl(dst / schema.QUERIES_FILE)
    change(queries)
    from components.data.io import write_jsonl

    write_jsonl(dst / schema.QUERIES_FILE, queries)
    return queries


def test_a_dev_text_equal_to_a_training_text_is_refused(small_world, tmp_path):
    def change(queries):
        train = next(q for q in queries if q["split"] == "train")
        dev = next(q for q in queries if q["split"] == "dev")
        dev["text"] = train["text"].upper() + " "

    _rewrite_queries(small_world, tmp_path / "data", change)
    with pytest.raises(DataValidationError) as info:
        validate_raw(tmp_path / "data", tmp_path / "docs")
    assert "splits_of_normalized_text" in str(info.value) and "queries.jsonl" in str(info.value)


def test_an_unknown_split_is_refused(small_world, tmp_path):
    def change(queries):
        next(q for q in queries if q["split"] == "dev")["split"] = "validation"

    _rewrite_queries(small_world, tmp_path / "data", change)
    with pytest.raises(DataValidationError) as info:
        validate_raw(tmp_path / "data", tmp_path / "docs")
    assert "split is train, eval or dev" in str(info.value)


def test_triplets_of_a_dev_query_are_refused(small_world, tmp_path):
    """Dev queries are never trained on: a triplet naming one fails like one naming an eval query."""
    queries, relevant = _read(small_world)
    q = next(q for q in queries if q["split"] == "dev")
    catalog = {r["item_id"]: r for r in read_jsonl(small_world / schema.CATALOG_FILE)}
    item = relevant[q["query_id"]][0]
    from components.data.io import write_jsonl

    write_jsonl(tmp_path / "triplets.jsonl", [{"query_id": q["query_id"], "query": q["text"], "category": q["category"],
                                               "cot": "a, b", "item_id": item, "item_title": catalog[item]["title"]}])
    with pytest.raises(DataValidationError) as info:
        validate_triplets(tmp_path / "triplets.jsonl", small_world, 8, tmp_path / "docs")
    assert "query_id is not an eval-split (or dev-split) query" in str(info.value)
