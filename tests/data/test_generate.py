"""The seeded demo world: determinism, sizes, splits, judgments and the no-overlap rule.

These tests read the world in its short templates (``phrasing="fixed"``, split by query: the data
of data.dvc before issue 29); the varied phrasing of the committed world has its own tests in
test_generate_phrasing.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from components.config import CATEGORIES, WorldConfig
from components.data import schema
from components.data.generate import generate_world, words
from components.data.io import load_knowledge, load_world, read_jsonl
from components.paths import REPO_ROOT

FILES = (schema.CATALOG_FILE, schema.QUERIES_FILE, schema.JUDGMENTS_FILE, schema.KNOWLEDGE_FILE)
STRICT = ("qa", "alternative", "knowledge")
FIXED = {"phrasing": "fixed", "hard_split": "query"}
FUNCTION_WORDS = {"for", "with", "the", "and", "a", "an", "of", "to", "in", "on", "not", "no", "without", "but"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    stats = generate_world(WorldConfig(**FIXED), out)
    catalog = {r["item_id"]: r for r in read_jsonl(out / schema.CATALOG_FILE)}
    queries = read_jsonl(out / schema.QUERIES_FILE)
    relevant: dict[str, list[str]] = {}
    for row in read_jsonl(out / schema.JUDGMENTS_FILE):
        relevant.setdefault(row["query_id"], []).append(row["item_id"])
    return {"dir": out, "stats": stats, "catalog": catalog, "queries": queries, "relevant": relevant,
            "knowledge": load_knowledge(out)}


def _contains(haystack: list[str], needle: list[str]) -> bool:
    return any(haystack[i:i + len(needle)] == needle for i in range(len(haystack) - len(needle) + 1))


def test_words_tokenisation():
    assert words("Northpeak Waterproof Nylon Hiking Backpack 30L") == [
        "northpeak", "waterproof", "nylon", "hiking", "backpack", "30l"]
    assert words("bob dylan's early-folk songs!") == ["bob", "dylan", "s", "early", "folk", "songs"]


def test_same_seed_is_byte_identical_across_processes(world, tmp_path):
    # A fresh interpreter with another hash seed: set/dict-hash order must not leak into the files.
    code = ("import sys; from pathlib import Path; from components.config import WorldConfig; "
            "from components.data.generate import generate_world; "
            f"generate_world(WorldConfig(**{FIXED!r}), Path(sys.argv[1]))")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=REPO_ROOT, env=env)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (world["dir"] / name).read_bytes(), name


def test_same_seed_in_process_and_other_seed_differs(tmp_path):
    small = dict(n_items=400, n_queries=150, **FIXED)
    generate_world(WorldConfig(seed=3, **small), tmp_path / "a")
    generate_world(WorldConfig(seed=3, **small), tmp_path / "b")
    generate_world(WorldConfig(seed=4, **small), tmp_path / "c")
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in (schema.CATALOG_FILE, schema.QUERIES_FILE, schema.JUDGMENTS_FILE):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name


def test_writes_exactly_the_schema_files(world):
    assert sorted(p.name for p in world["dir"].iterdir()) == sorted(FILES)
    assert json.loads((world["dir"] / schema.KNOWLEDGE_FILE).read_text(encoding="utf-8")) == world["knowledge"]


def test_default_world_sizes(world):
    catalog, stats = world["catalog"], world["stats"]
    assert len(catalog) >= 5000
    assert len({i["product_type"] for i in catalog.values()}) >= 50
    assert len({i["department"] for i in catalog.values()}) >= 8
    assert len(world["queries"]) >= 2000
    assert stats["n_items"] == len(catalog) and stats["n_queries"] == len(world["queries"])
    assert stats["generation_seconds"] < 10


def test_items_are_well_formed(world):
    ids = list(world["catalog"])
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for item in world["catalog"].values():
        assert set(item) == set(schema.CATALOG_COLUMNS)
        assert item["item_id"].startswith("I")
        assert isinstance(item["price"], float) and item["price"] > 0 and round(item["price"], 2) == item["price"]
        assert item["attributes"] and all(isinstance(v, str) for v in item["attributes"].values())
        title_words = words(item["title"])
        assert words(item["brand"])[0] == title_words[0]
        assert _contains(title_words, words(item["product_type"]))
        for value in item["attributes"].values():
            assert _contains(title_words, words(value)), (item["title"], value)
        assert not FUNCTION_WORDS.intersection(title_words), item["title"]


def test_categories_are_balanced(world):
    counts = Counter(q["category"] for q in world["queries"])
    assert set(counts) == set(CATEGORIES)
    n = len(world["queries"])
    for category in CATEGORIES:
        assert abs(counts[category] - n / len(CATEGORIES)) <= 0.05 * n, counts
    assert world["stats"]["queries_per_category"] == {c: counts[c] for c in CATEGORIES}


def test_split_is_by_query_and_stratified(world):
    queries = world["queries"]
    ids = [q["query_id"] for q in queries]
    assert len(set(ids)) == len(ids)  # one row, so one split, per query
    assert len({q["text"] for q in queries}) == len(queries)  # no text in both splits either
    assert {q["split"] for q in queries} == set(schema.SPLITS)
    for q in queries:
        assert set(q) == set(schema.QUERY_COLUMNS)
    frac = WorldConfig().eval_fraction
    for category in CATEGORIES:
        members = [q for q in queries if q["category"] == category]
        share = sum(q["split"] == "eval" for q in members) / len(members)
        assert abs(share - frac) < 0.02, (category, share)
    world_df = load_world(world["dir"])
    train, eval_ = set(world_df.split("train")["query_id"]), set(world_df.split("eval")["query_id"])
    assert train and eval_ and not train & eval_


def test_judgments(world):
    rows = read_jsonl(world["dir"] / schema.JUDGMENTS_FILE)
    pairs = [(r["query_id"], r["item_id"]) for r in rows]
    assert len(set(pairs)) == len(pairs)
    assert {q for q, _ in pairs} == {q["query_id"] for q in world["queries"]}
    assert all(i in world["catalog"] for _, i in pairs)
    cap = WorldConfig().max_relevant
    for q in world["queries"]:
        assert 1 <= len(world["relevant"][q["query_id"]]) <= cap


def test_no_query_word_in_any_relevant_title(world):
    """The hard categories share no word (by words()) with any title of their relevant items."""
    catalog = world["catalog"]
    violations = []
    checked = 0
    for q in world["queries"]:
        if q["category"] not in STRICT:
            continue
        qwords = set(words(q["text"]))
        for iid in world["relevant"][q["query_id"]]:
            checked += 1
            shared = qwords.intersection(words(catalog[iid]["title"]))
            if shared:
                violations.append((q["text"], catalog[iid]["title"], sorted(shared)))
    assert checked > 10000
    assert not violations, violations[:5]


def test_relevance_follows_the_knowledge(world):
    kn, catalog = world["knowledge"], world["catalog"]
    uses = [(words(u["use"]), u["product_types"]) for u in kn["uses"]]
    facts = [(words(f["fact"]), f["product_types"]) for f in kn["facts"]]
    premium = {b.lower(): info for b, info in kn["premium_brands"].items()}
    for q in world["queries"]:
        qwords = words(q["text"])
        items = [catalog[i] for i in world["relevant"][q["query_id"]]]
        types = {i["product_type"] for i in items}
        if q["category"] == "qa":
            allowed = [t for w, ts in uses if _contains(qwords, w) for t in ts]
            assert allowed and types <= set(allowed), q
        elif q["category"] == "knowledge":
            allowed = [t for w, ts in facts if _contains(qwords, w) for t in ts]
            assert allowed and types <= set(allowed), q
        elif q["category"] == "alternative":
            named = [premium[w] for w in qwords if w in premium]
            assert len(named) == 1, q
            band = named[0]
            assert types == {band["product_type"]}
            for item in items:
                assert item["brand"] not in kn["premium_brands"] and item["price"] < band["price_band"][0]
        elif q["category"] == "negative":
            assert len(types) == 1, q
            (ptype,) = types
            info = kn["product_types"][ptype]
            # the negated value is named in the query, and no relevant item has it
            named = [(a, v) for a in info["negatable_attributes"] for v in info["attributes"][a]
                     if _contains(qwords, words(v))]
            assert named, q
            assert any(all(i["attributes"][a] != v for i in items) for a, v in named), q
        else:  # plain: one type, and every relevant item shares words with the query
            assert len(types) == 1, q
            for item in items:
                assert set(qwords) & set(words(item["title"])), (q, item["title"])


def test_knowledge_shape(world):
    kn = world["knowledge"]
    assert set(kn) >= {"departments", "product_types", "brands", "premium_brands", "uses", "facts", "budget_words"}
    types = kn["product_types"]
    assert {i["product_type"] for i in world["catalog"].values()} <= set(types)
    for name, info in types.items():
        assert info["department"] in kn["departments"] and name in kn["departments"][info["department"]]
        assert info["synonyms"] and info["attributes"] and info["premium_brands"]
    for brand, info in kn["premium_brands"].items():
        assert info["product_type"] in types and info["price_band"][0] < info["price_band"][1]
        assert kn["brands"][brand]["tier"] == "premium"
    for entry in kn["uses"] + kn["facts"]:
        assert entry["product_types"] and set(entry["product_types"]) <= set(types)
    assert all(f["statement"] and f["answer"] for f in kn["facts"])


def test_tiny_world_keeps_the_rules(tmp_path):
    stats = generate_world(WorldConfig(n_items=120, n_queries=40, seed=11, **FIXED), tmp_path)
    catalog = {r["item_id"]: r for r in read_jsonl(tmp_path / schema.CATALOG_FILE)}
    queries = read_jsonl(tmp_path / schema.QUERIES_FILE)
    relevant: dict[str, list[str]] = {}
    for row in read_jsonl(tmp_path / schema.JUDGMENTS_FILE):
        relevant.setdefault(row["query_id"], []).append(row["item_id"])
    assert len(catalog) == 120 and stats["n_queries"] == len(queries) > 0
    assert {q["split"] for q in queries} == set(schema.SPLITS)
    for q in queries:
        assert relevant.get(q["query_id"]) and all(i in catalog for i in relevant[q["query_id"]])
        if q["category"] in STRICT:
            for iid in relevant[q["query_id"]]:
                assert not set(words(q["text"])) & set(words(catalog[iid]["title"]))


def test_intent_split_holds_out_whole_intents(world, tmp_path):
    """hard_split "intent": the same catalog, knowledge and query texts as the default world, but
    no training query of a hard category names the use, fact or premium brand of an eval query of
    that category; the eval shares stay those of the default split."""
    from components.experiment.baselines import intent_of

    generate_world(WorldConfig(hard_split="intent", phrasing="fixed"), tmp_path)
    queries = read_jsonl(tmp_path / schema.QUERIES_FILE)
    for name in (schema.CATALOG_FILE, schema.KNOWLEDGE_FILE):
        assert (tmp_path / name).read_bytes() == (world["dir"] / name).read_bytes()
    assert sorted(q["text"] for q in queries) == sorted(q["text"] for q in world["queries"])
    knowledge = load_knowledge(tmp_path)
    frac = WorldConfig().eval_fraction
    for category in CATEGORIES:
        members = [q for q in queries if q["category"] == category]
        share = sum(q["split"] == "eval" for q in members) / len(members)
        assert abs(share - frac) < 0.02, (category, share)
        if category not in STRICT:
            continue
        intents = {s: {intent_of(q["text"], category, knowledge) for q in members if q["split"] == s}
                   for s in schema.SPLITS}
        assert None not in intents["train"] | intents["eval"]
        assert intents["eval"] and not intents["eval"] & intents["train"], category
    # the default split shares most intents (what the intent split is for)
    default = {s: {intent_of(q["text"], "qa", knowledge) for q in world["queries"]
                   if q["category"] == "qa" and q["split"] == s} for s in schema.SPLITS}
    assert len(default["eval"] & default["train"]) > len(default["eval"]) / 2


def test_intent_split_on_a_tiny_world_keeps_both_splits(tmp_path):
    generate_world(WorldConfig(n_items=120, n_queries=40, seed=11, hard_split="intent", phrasing="fixed"), tmp_path)
    queries = read_jsonl(tmp_path / schema.QUERIES_FILE)
    for category in STRICT:
        assert {q["split"] for q in queries if q["category"] == category} == set(schema.SPLITS), category
