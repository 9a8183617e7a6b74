"""The baseline experiment end to end on a tiny world: every model row, every category, MLflow runs."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from components.config import CATEGORIES, BackboneConfig, ModelConfig, WorldConfig
from components.experiment import MODEL_IDS, ExperimentConfig, run_experiment
from components.experiment.__main__ import build_parser, config_from_args
from components.evaluation.search import exact_top_k
from components.experiment.baselines import LABELS


def test_exact_top_k_matches_a_full_sort():
    rng = np.random.default_rng(0)
    q, items = rng.normal(size=(7, 16)), rng.normal(size=(50, 16))
    top = exact_top_k(q, items, 10, chunk=3)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    itn = items / np.linalg.norm(items, axis=1, keepdims=True)
    expected = np.argsort(-(qn @ itn.T), axis=1)[:, :10]
    assert np.array_equal(top, expected)
    assert exact_top_k(q, items, 500).shape == (7, 50)  # k larger than the catalog


def test_cli_quick_and_steps():
    argv = ["--quick", "--steps", "5", "--models", "lrem_cs", "--grpo-steps", "3", "--hard-negatives", "2"]
    cfg = config_from_args(build_parser().parse_args(argv), argv)
    assert (cfg.steps, cfg.max_eval_queries, cfg.models, cfg.grpo_steps) == (5, 200, ["lrem_cs"], 3)
    assert cfg.hard_negatives == 2
    assert "experiments/results" not in cfg.output_dir  # a smoke run never overwrites the real results
    assert cfg.command == ("python -m components.experiment --quick --steps 5 --models lrem_cs --grpo-steps 3 "
                           "--hard-negatives 2")
    default = config_from_args(build_parser().parse_args([]), [])
    assert (default.steps, default.batch_size, default.output_dir) == (600, 64, "experiments/results")
    # the reference benchmark: hard queries split by intent; 100 GRPO steps
    assert (default.keep_models, default.world.hard_split, default.grpo_steps) == (False, "intent", 100)
    kept = config_from_args(build_parser().parse_args(["--keep-models", "--hard-split", "query"]), [])
    assert (kept.keep_models, kept.world.hard_split) == (True, "query")
    fresh = config_from_args(build_parser().parse_args(["--world-seed", "7"]), [])
    assert (fresh.world.seed, fresh.world.hard_split) == (7, "intent")  # a fresh world keeps the default split
    assert default.world.seed != 7
    assert default.world == dataclasses.replace(WorldConfig(), hard_split="intent")  # else the demo world
    # --phrasing fixed: the world of the README's headline table (before issue 29), same split
    old_world = config_from_args(build_parser().parse_args(["--phrasing", "fixed"]), [])
    assert (old_world.world.phrasing, old_world.world.hard_split, default.world.phrasing) == ("fixed", "intent", "varied")


@pytest.fixture()
def result(tmp_path, monkeypatch):
    monkeypatch.setenv("LREM_HOME", str(tmp_path / "home"))
    cfg = ExperimentConfig(steps=3, batch_size=16, log_every=1, world=WorldConfig(n_items=300, n_queries=120),
                           output_dir=str(tmp_path / "out"), show_progress=False, grpo_steps=1,
                           backbone=BackboneConfig(steps=3, batch_size=4, seq_len=32),
                           model=ModelConfig(vocab_size=800, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=1), bootstrap_resamples=50,
                           hard_negatives=1)  # every trained row mines them (MiniLM in the second process too)
    return run_experiment(cfg), cfg, tmp_path


def test_every_model_and_category_scored_and_logged(result):
    out, cfg, tmp_path = result
    assert list(out["models"]) == list(MODEL_IDS)
    for model_id, rec in out["models"].items():
        metrics = rec["metrics"]
        assert set(metrics) == {"overall", *CATEGORIES}, model_id
        for group, values in metrics.items():
            assert values["n_queries"] > 0
            for key in ("hit_rate@10", "hit_rate@50", "hit_rate@100", "precision@10"):
                assert 0.0 <= values[key] <= 1.0, (model_id, group, key, values[key])
        assert rec["params"] > 0 and rec["eval_seconds"] > 0
        if model_id == "minilm_zeroshot":
            assert rec["steps"] == 0 and rec["train_seconds"] == 0
        elif model_id in ("lrem_rl", "lrem_empty_cot", "lrem_query_cot", "lrem_teacher_cot"):
            assert rec["steps"] == cfg.steps + cfg.grpo_steps and rec["train_seconds"] > 0
        else:
            assert rec["steps"] == cfg.steps and rec["train_seconds"] > 0
    # MiniLM trains under bf16 autocast exactly where the machine has native bf16 kernels
    from components.experiment.baselines import minilm_bf16_available

    assert out["models"]["minilm_infonce"]["bf16_autocast"] is minilm_bf16_available()
    # the ablation rows are the final (CS + RL) model
    assert out["models"]["lrem_empty_cot"]["trained_with"] == "lrem_rl"
    assert out["models"]["lrem_rl"]["params"] == out["models"]["lrem_teacher_cot"]["params"]
    for model_id in ("lrem_cs", "lrem_rl"):
        assert len(out["models"][model_id]["cot"]["examples"]) == len(CATEGORIES)
        assert 0.0 <= out["models"][model_id]["cot"]["teacher_keyword_f1"] <= 1.0
        assert 0.0 <= out["models"][model_id]["cot"]["type_accuracy"] <= 1.0
        assert set(out["models"][model_id]["cot"]["type_accuracy_by_category"]) == set(CATEGORIES)
    fit = out["models"]["lrem_cs"]["train_cot_fit"]
    assert 0.0 <= fit["token_accuracy"] <= 1.0
    # the CI table: LREM (CS + RL) minus the best same-backbone direct embedder, per category
    comp = out["comparison"]
    assert comp["best_direct"] in ("llm_direct_last", "llm_direct_mean")
    rows = comp[f"lrem_rl_vs_{comp['best_direct']}"]
    assert {"overall", "hard", *CATEGORIES} <= set(rows)
    for r in rows.values():
        assert r["ci_low"] <= r["diff"] <= r["ci_high"]
    assert out["backbone"]["cache_key"]
    # the world's ceiling decides whether the paper's target can be met at all here
    assert comp["target_reachable"] == (comp["ceiling_relative"] >= 0.0575)

    saved = json.loads((tmp_path / "out" / "latest.json").read_text())
    assert set(saved["models"]) == set(MODEL_IDS)
    # every model's HitRate@100 per eval query, whose mean is the table's (pooling across runs reads it)
    per_query = saved["per_query"]
    assert per_query["k"] == 100 and set(per_query["hit_rate"]) == set(MODEL_IDS)
    for model_id, hits in per_query["hit_rate"].items():
        assert set(hits) <= set(per_query["category"])
        assert np.mean(list(hits.values())) == pytest.approx(
            out["models"][model_id]["metrics"]["overall"]["hit_rate@100"], abs=1e-5)
    from experiments.probes.pool_runs import paired_values, pooled_bootstrap

    pooled = pooled_bootstrap([paired_values(saved, "lrem_rl", "lrem_cs", "hard")] * 2, n_resamples=200)
    assert pooled["diff"] == pytest.approx(comp["lrem_rl_vs_lrem_cs"]["hard"]["diff"], abs=1e-5)
    assert pooled["ci_low"] <= pooled["diff"] <= pooled["ci_high"] and pooled["n"] == 2 * rows["hard"]["n"]
    md = (tmp_path / "out" / "latest.md").read_text()
    for label in LABELS.values():
        assert f"| {label} |" in md
    assert "HitRate@100" in md and "Precision@10" in md and cfg.command in md
    assert "95% CI" in md and "teacher CoT" in md
    assert str(tmp_path) not in md  # no machine paths in the report

    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name("lrem-baselines")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_id == out["mlflow"]["parent_run_id"]][0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == sorted(MODEL_IDS)
    for child in children:
        assert 0.0 <= child.data.metrics["overall.hit_rate_at_100"] <= 1.0
        assert "train_seconds" in child.data.metrics
    # rows trained in the second process still get their per-step training curve in MLflow
    by_name = {c.info.run_name: c.info.run_id for c in children}
    assert cfg.workers == 2
    assert len(client.get_metric_history(by_name["minilm_infonce"], "train/infonce")) == cfg.steps
    for model_id in ("llm_direct_last", "llm_direct_mean"):
        assert len(client.get_metric_history(by_name[model_id], "cold_start/infonce")) == cfg.steps
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"latest.json", "latest.md", "report"} <= artifacts


def test_type_accuracy_reads_the_first_product_type_the_cot_names():
    from components.experiment.baselines import first_named_type, type_accuracy, type_phrases

    knowledge = {"product_types": {"Violin": {"synonyms": ["fiddle"]}, "Running Shoes": {"synonyms": ["trainers"]}}}
    phrases = type_phrases(knowledge)
    assert first_named_type("budget, Fiddle, running shoes", phrases) == "Violin"
    assert first_named_type("budget, affordable", phrases) is None
    relevant = {"q1": {"i1"}, "q2": {"i2"}, "q3": {"i1"}}
    item_type = {"i1": "Violin", "i2": "Running Shoes"}
    cots = ["fiddle, strings", "violin, bow", "cheap, value"]
    assert type_accuracy(cots, ["q1", "q2", "q3"], relevant, item_type, phrases) == [1.0, 0.0, 0.0]


def test_type_oracle_ranks_every_item_of_the_relevant_types_first():
    from components.evaluation.bootstrap import per_query_hit_rate
    from components.experiment.baselines import type_oracle_ranking

    item_type = {f"v{i}": "Violin" for i in range(6)} | {f"s{i}": "Running Shoes" for i in range(6)} | {"h1": "Hat"}
    items = sorted(item_type)
    relevant = {"q1": {"v1", "v4"}, "q2": {"v0", "s5"}}
    ranked = type_oracle_ranking(["q1", "q2"], relevant, items, item_type, seed=3)
    assert sorted(ranked["q1"]) == items and sorted(ranked["q2"]) == items  # a full ranking of the catalog
    assert {item_type[i] for i in ranked["q1"][:6]} == {"Violin"}
    assert {item_type[i] for i in ranked["q2"][:12]} == {"Violin", "Running Shoes"}
    assert ranked["q2"][-1] == "h1"
    hit = per_query_hit_rate(ranked, relevant, 6)
    assert hit["q1"] == 1.0  # 6 candidates, 6 places
    # q2: 12 candidates for 6 places, in a seeded random order, so a hit rate between 0 and 1
    assert ranked == type_oracle_ranking(["q1", "q2"], relevant, items, item_type, seed=3)
    assert 0.0 <= hit["q2"] <= 1.0


def test_inline_lane_runs_at_once_and_reraises():
    from components.experiment.baselines import _InlineLane

    lane = _InlineLane()
    assert lane.apply_async(lambda a, b: a + b, (2, 3)).get() == 5

    def boom():
        raise ValueError("lane task failed")

    job = lane.apply_async(boom)
    with pytest.raises(ValueError, match="lane task failed"):
        job.get()


def test_intent_split_names_hard_queries_whose_intent_no_training_query_has():
    import pandas as pd

    from components.evaluation.bootstrap import compare_by_group
    from components.experiment.baselines import intent_of, intent_seen

    knowledge = {"uses": [{"use": "dice onions", "product_types": ["Chef Knife"]},
                          {"use": "dice onions quickly", "product_types": ["Food Processor"]},
                          {"use": "brew tea", "product_types": ["Teapot"]}],
                 "facts": [{"fact": "the sport played at wimbledon", "product_types": ["Tennis Racket"]}],
                 "premium_brands": {"Korane": {"product_type": "Camping Tent"}}}
    assert intent_of("help me dice onions quickly", "qa", knowledge) == "dice onions quickly"  # the longest
    assert intent_of("help me dice onionsx", "qa", knowledge) is None  # whole words only
    assert intent_of("gear for the sport played at wimbledon", "knowledge", knowledge) == "the sport played at wimbledon"
    assert intent_of("like korane but cheaper", "alternative", knowledge) == "Korane"
    assert intent_of("red tent", "plain", knowledge) is None
    train = pd.DataFrame({"text": ["i want to brew tea", "similar to korane for less"]})
    eval_q = pd.DataFrame({"query_id": ["q1", "q2", "q3", "q4"], "category": ["qa", "qa", "alternative", "plain"],
                           "text": ["how to brew tea fast", "dice onions", "korane but cheaper", "red tent"]})
    seen = intent_seen(eval_q, train, knowledge)
    assert seen == {"q1": True, "q2": False, "q3": True}
    # the bootstrap compares any named set of query ids
    ranked_a = {"q1": ["i1"], "q2": ["i2"], "q3": ["x"]}
    ranked_b = {"q1": ["x"], "q2": ["x"], "q3": ["x"]}
    relevant = {"q1": {"i1"}, "q2": {"i2"}, "q3": {"i3"}}
    cats = {"q1": "qa", "q2": "qa", "q3": "alternative"}
    rows = compare_by_group(ranked_a, ranked_b, relevant, cats, 1, n_resamples=20,
                            query_groups={"new": ["q2"], "seen": ["q1", "q3"]})
    assert rows["new"]["n"] == 1 and rows["new"]["diff"] == 1.0
    assert rows["seen"]["n"] == 2 and rows["seen"]["diff"] == 0.5


def test_rl_against_cold_start_without_a_direct_row():
    """A run of the LREM rows alone (--models lrem_cs lrem_rl) still reports what GRPO adds, with its CI,
    and makes no claim about the target."""
    from types import SimpleNamespace

    from components.experiment.baselines import _compare_with_direct, comparison_markdown

    qids = [f"q{i}" for i in range(12)]
    cats = ["qa", "knowledge", "alternative", "plain"] * 3
    relevant = {q: {f"i{i}", f"j{i}"} for i, q in enumerate(qids)}
    # RL finds both relevant items of every query, the cold start one of them
    rl = {q: [f"i{i}", f"j{i}", "x"] for i, q in enumerate(qids)}
    cs = {q: [f"i{i}", "x", "y"] for i, q in enumerate(qids)}
    data = SimpleNamespace(eval_ids=qids, categories=dict(zip(qids, cats)), relevant=relevant, intent_seen={})
    cfg = ExperimentConfig(bootstrap_resamples=100)
    comp = _compare_with_direct({}, {"lrem_cs": cs, "lrem_rl": rl}, data, cfg)
    hard = comp["lrem_rl_vs_lrem_cs"]["hard"]
    assert (hard["n"], hard["diff"], hard["ci_low"]) == (9, pytest.approx(0.5), pytest.approx(0.5))
    assert comp["rl_improves_on_cs"] is True and "target_met" not in comp
    md = "\n".join(comparison_markdown({"comparison": comp}))
    assert "What GRPO adds" in md and "| hard | 9 |" in md and "no verdict" in md
    assert _compare_with_direct({}, {"lrem_cs": cs}, data, cfg) == {}  # nothing to compare
