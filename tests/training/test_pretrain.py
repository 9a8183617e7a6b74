"""Backbone pre-training: the world corpus, the cache (hit and miss), LM loss on held-out world
text, and a short cold start on the demo world that teaches the greedy CoT the teacher's keywords."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import BackboneConfig, ColdStartConfig, ModelConfig, TeacherConfig, WorldConfig
from components.data.generate import generate_world
from components.data.io import load_knowledge, load_world, read_jsonl
from components.experiment.baselines import keyword_f1
from components.model.lrem import LREMModel
from components.teacher import generate_triplets
from components.training.cold_start import train_cold_start
from components.training.pretrain import (cache_key, knowledge_sentences, lm_loss, prepare_backbone,
                                          render_world_corpus)

SMALL = ModelConfig(vocab_size=1200, hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_cot_tokens=16)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    generate_world(WorldConfig(n_items=800, n_queries=400), root / "data")
    generate_triplets(root / "data", TeacherConfig(), root / "triplets.jsonl")
    world = load_world(root / "data")
    train_ids = set(world.split("train")["query_id"])
    triplets = [t for t in read_jsonl(root / "triplets.jsonl") if t["query_id"] in train_ids]
    corpus = render_world_corpus(world.catalog.to_dict(orient="records"), world.split("train")["text"].tolist(),
                                 load_knowledge(root / "data"))
    return world, triplets, corpus


def test_corpus_holds_the_world_knowledge_and_never_the_eval_queries(world):
    w, _, corpus = world
    text = "\n".join(corpus.train)
    assert any("is a premium maker of" in s for s in corpus.train)
    assert any(s.endswith("does that.") for s in corpus.train)
    for q in w.split("eval")["text"]:
        assert q not in corpus.train
    assert corpus.heldout and not set(corpus.heldout) & set(corpus.train)
    assert "gear" in text or "a " in text
    assert knowledge_sentences({}) == []  # real data without a knowledge file: catalog and queries only


def test_backbone_cache_miss_then_hit(world, tmp_path):
    _, _, corpus = world
    cfg = BackboneConfig(steps=3, batch_size=4, seq_len=32)
    first = prepare_backbone(SMALL, cfg, corpus, tmp_path, track=False, show_progress=False)
    assert (first.source, first.cache_hit) == ("trained", False)
    second = prepare_backbone(SMALL, cfg, corpus, tmp_path, track=False, show_progress=False)
    assert (second.source, second.cache_hit, second.model_dir) == ("local cache", True, first.model_dir)
    # a change of the data or of the backbone config is a miss
    assert cache_key(corpus, SMALL, BackboneConfig(steps=4, batch_size=4, seq_len=32)) != first.cache_key
    changed = type(corpus)(train=corpus.train[:-1], heldout=corpus.heldout)
    assert cache_key(changed, SMALL, cfg) != first.cache_key
    assert not list(tmp_path.glob("*.tmp"))


def test_backbone_is_registered_and_restored_from_the_registry(world, tmp_path):
    import mlflow

    _, _, corpus = world
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    cfg = BackboneConfig(steps=2, batch_size=4, seq_len=32)
    made = prepare_backbone(SMALL, cfg, corpus, tmp_path / "cache", show_progress=False)
    assert made.registered_version == "1" and made.run_id
    version = mlflow.MlflowClient().get_model_version("lrem-backbone", "1")
    assert version.tags["backbone_cache_key"] == made.cache_key
    # a machine without the local cache gets it from the registry, no training
    again = prepare_backbone(SMALL, cfg, corpus, tmp_path / "other-cache", show_progress=False)
    assert (again.source, again.registered_version) == ("registry", "1")


def test_pretraining_lowers_lm_loss_on_held_out_world_text(world, tmp_path):
    _, _, corpus = world
    result = prepare_backbone(SMALL, BackboneConfig(steps=60, batch_size=16, seq_len=64, learning_rate=2e-3),
                              corpus, tmp_path, track=False, show_progress=False)
    before, after = result.summary["heldout_lm_loss_before"], result.summary["heldout_lm_loss_after"]
    assert after < 0.8 * before, (before, after)
    model = LREMModel.load(result.model_dir)
    assert abs(lm_loss(model.lm, model.tokenizer, corpus.heldout) - after) < 1e-4


def test_short_cold_start_teaches_the_greedy_cot_the_teachers_keywords(world, tmp_path):
    """Greedy CoT on training queries against the teacher's: an untrained model is near 0; a short
    SFT warm-up from the pre-trained backbone gets well above it."""
    _, triplets, corpus = world
    backbone = prepare_backbone(SMALL, BackboneConfig(steps=60, batch_size=16, seq_len=64, learning_rate=2e-3),
                                corpus, tmp_path / "bb", track=False, show_progress=False)
    first: dict[str, str] = {}
    for t in triplets:
        first.setdefault(t["query"], t["cot"])
    queries = list(first)[:60]

    def fit(model) -> float:
        return float(np.mean([keyword_f1(g, first[q]) for q, g in zip(queries, model.generate_cots(queries))]))

    untrained = LREMModel.create(SMALL, corpus.train)
    model = LREMModel.create(SMALL, backbone_dir=backbone.model_dir)
    cs = ColdStartConfig(max_steps=150, batch_size=32, learning_rate=3e-3, sft_warmup_ratio=0.8,
                         sft_warmup_infonce=False, save_every=0, resume=False, log_every=20)
    subset = [t for t in triplets if t["query"] in set(queries)]
    train_cold_start(model, subset, cs, tmp_path / "cs", show_progress=False)
    before, after = fit(untrained), fit(model)
    assert before < 0.05, before
    assert after > 0.3, (before, after)


def test_paraphrases_say_each_premium_brand_and_synonym_again_and_are_no_query_template(world, tmp_path):
    from components.data.generate import ALTERNATIVE_TEMPLATES, QA_WRAPPERS
    from components.training.pretrain import knowledge_paraphrases

    w, _, _ = world
    generate_world(WorldConfig(n_items=800, n_queries=400), tmp_path / "data")
    knowledge = load_knowledge(tmp_path / "data")
    para = knowledge_paraphrases(knowledge)
    assert len(para) > len(knowledge_sentences(knowledge))
    for brand, info in knowledge["premium_brands"].items():
        said = [s for s in para if brand.lower() in s and info["product_type"].lower() in s]
        assert len(said) >= 4, f"{brand}: {said}"
    for name, info in knowledge["product_types"].items():
        for syn in info["synonyms"]:
            assert any(s.startswith(f"{syn},") and name.lower() in s for s in para), syn
    queries = {t.format(b=b.lower()) for t in ALTERNATIVE_TEMPLATES for b in knowledge["premium_brands"]}
    queries |= {t.format(n=u["use"]) for t in QA_WRAPPERS for u in knowledge["uses"]}
    assert not queries & {s.rstrip(".") for s in para}
    base = render_world_corpus(w.catalog.to_dict(orient="records"), [], knowledge)
    more = render_world_corpus(w.catalog.to_dict(orient="records"), [], knowledge, paraphrases=True)
    assert len(more.train) == len(base.train) + 3 * len(para) and more.heldout == base.heldout


def test_cot_documents_are_the_sft_text_of_each_training_query_once(world):
    from components.training.pretrain import cot_documents

    _, triplets, _ = world
    docs = cot_documents(triplets, ModelConfig())
    assert len(docs) == len({t["query"] for t in triplets})
    t = triplets[0]
    assert f"q: {t['query']}:<think>{t['cot']}</think>" in docs  # the short query template, then the CoT


def test_corpus_switches_change_the_cache_key_only_through_the_corpus(world):
    from dataclasses import replace

    _, _, corpus = world
    cfg = BackboneConfig()
    assert cache_key(corpus, SMALL, cfg) == cache_key(corpus, SMALL, replace(cfg, knowledge_paraphrases=True,
                                                                            train_cots=True))


def test_tokenizer_normalisation_is_part_of_the_cache_key(world):
    from dataclasses import replace

    _, _, corpus = world
    cfg = BackboneConfig()
    assert cache_key(corpus, replace(SMALL, tokenizer_normalize=True), cfg) != \
        cache_key(corpus, replace(SMALL, tokenizer_normalize=False), cfg)


def test_direct_baseline_cache_key_follows_the_prompt_template_budget_and_pairs():
    """A cached direct baseline trained with another template must not be reused."""
    import dataclasses

    from components.config import PipelineConfig
    from components.training.step import direct_baseline_key

    cfg = PipelineConfig()
    rows = [{"query": "keep coffee hot", "item_id": "I1"}]
    key = direct_baseline_key(cfg, "bb", rows)
    assert key == direct_baseline_key(PipelineConfig(), "bb", list(rows))
    other_template = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, short_query_template="q: {query}"))
    other_budget = dataclasses.replace(cfg, cold_start=dataclasses.replace(cfg.cold_start, max_steps=7))
    assert len({key, direct_baseline_key(other_template, "bb", rows), direct_baseline_key(other_budget, "bb", rows),
                direct_baseline_key(cfg, "bb2", rows),
                direct_baseline_key(cfg, "bb", [{"query": "keep tea hot", "item_id": "I1"}])}) == 5
