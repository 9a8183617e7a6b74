"""The held-out-phrasing report (components/evaluation/phrasing.py) on a small varied world, with two
real retrievers: BM25 over titles on the query alone, and on the query followed by the teacher's
keywords (the paper's "query (keywords)" set B)."""

from __future__ import annotations

import json

import pytest

from components.config import TeacherConfig, WorldConfig
from components.data.generate import generate_world
from components.data.io import load_knowledge, load_world, read_jsonl
from components.evaluation import phrasing as report_mod
from components.teacher.triplets import LexicalRetriever, Teacher


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("phr")
    generate_world(WorldConfig(n_items=1200, n_queries=1000, seed=3), root)
    world = load_world(root)
    retriever = LexicalRetriever(world.catalog["item_id"].tolist(), world.catalog["title"].tolist())
    teacher = Teacher(load_knowledge(root), TeacherConfig())
    queries = [q for q in read_jsonl(root / "queries.jsonl") if q["split"] == "eval"]
    ranked = {"bm25": {}, "bm25_keywords": {}}
    for q in queries:
        ranked["bm25"][q["query_id"]] = retriever.search(q["text"], 100)
        cot, _ = teacher.cot(q["text"], q["category"])
        ranked["bm25_keywords"][q["query_id"]] = retriever.search(f"{q['text']} ({cot})", 100)
    return root, world, queries, ranked


def test_groups_split_eval_by_phrasing(scored):
    _, _, queries, _ = scored
    groups = report_mod.phrasing_groups(queries)
    ids = {q["query_id"] for q in queries}
    assert set(groups["all"]) == ids
    for scope in ("all", "hard", "qa", "plain", "negative"):
        assert sorted(groups[f"{scope} | in-pattern"] + groups[f"{scope} | held-out"]) == sorted(groups[scope])
    assert sorted(groups["hard | intent last"] + groups["hard | words after intent"]) == sorted(groups["hard"])
    assert {"hard | reworded intent", "hard | typo", "hard | pattern bare", "hard | pattern ask_colon"} <= set(groups)
    fixed = [{k: v for k, v in q.items() if k not in report_mod.PHRASING_FIELDS} for q in queries]
    assert set(report_mod.phrasing_groups(fixed)) == {"all", "hard", "qa", "alternative", "knowledge", "plain",
                                                       "negative"}


def test_report_compares_with_paired_cis_and_states_targets(scored):
    from components.evaluation.bootstrap import per_query_hit_rate

    _, world, queries, ranked = scored
    hits = {m: per_query_hit_rate(r, world.relevant(), 100) for m, r in ranked.items()}
    rep = report_mod.phrasing_report(hits, queries, "bm25_keywords", "bm25", n_resamples=300)
    hard = rep["lrem_minus_direct"]["hard"]
    assert hard["ci_low"] <= hard["diff"] <= hard["ci_high"]
    assert hard["ci_intents_low"] <= hard["diff"] <= hard["ci_intents_high"] and hard["n_intents"] > 10
    assert "ci_intents_low" not in rep["lrem_minus_direct"]["plain"]  # no intents outside the hard categories
    # the teacher's keywords find what the words of a hard query cannot (no query word is in a relevant title)
    assert rep["hit_rate"]["hard"]["bm25"] == 0.0 and hard["diff"] > 0.3 and hard["ci_low"] > 0
    hard_ids = report_mod.phrasing_groups(queries)["hard"]
    same = report_mod.compare_on_groups(hits, {"hard": hard_ids}, "bm25", "bm25",
                                        {q["query_id"]: q.get("intent") for q in queries}, 200)
    assert same["hard"]["ci_low"] == same["hard"]["ci_high"] == 0.0
    names = [t["target"] for t in rep["targets"]]
    assert any("held-out phrasing within 0.05" in n for n in names)
    assert any("words after the intent" in n for n in names)
    assert any("+5.75%" in n for n in names)
    md = report_mod.render_markdown(rep)
    assert "| hard \\| held-out | " in md and "**Targets**" in md


def test_nightly_eval_files_and_summary_line(scored, tmp_path):
    _, world, _, ranked = scored
    rep = report_mod.write_eval_phrasing(tmp_path, {"challenger": ranked["bm25_keywords"], "direct": ranked["bm25"]},
                                         world, 100)
    saved = json.loads((tmp_path / "phrasing.json").read_text())
    assert saved["lrem_minus_direct"]["hard | held-out"]["n"] == rep["n_queries"]["hard | held-out"]
    assert (tmp_path / "phrasing.md").read_text().startswith("### HitRate@100 by phrasing")
    line = report_mod.lead_line(saved, "hard")
    assert line.startswith("hard: 0.") and "95% CI [" in line and "intents resampled" in line


def test_lexical_report_is_the_same_comparison(scored):
    from components.evaluation.bootstrap import per_query_hit_rate

    root, world, queries, ranked = scored
    rep = report_mod.lexical_report(root, n_resamples=100)
    hard = report_mod.phrasing_groups(queries)["hard | held-out"]
    hits = per_query_hit_rate(ranked["bm25_keywords"], world.relevant(), 100)
    assert rep["hit_rate"]["hard | held-out"]["bm25_teacher_keywords"] == pytest.approx(
        sum(hits[q] for q in hard) / len(hard))
    assert rep["targets"] == []
