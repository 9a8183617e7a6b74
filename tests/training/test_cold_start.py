"""Cold start on the demo world: the loss goes down and retrieval gets better than untrained."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from components.config import ColdStartConfig, ModelConfig, TeacherConfig, WorldConfig
from components.data.generate import generate_world
from components.data.io import load_world, read_jsonl
from components.evaluation.metrics import retrieval_metrics
from components.model.lrem import LREMModel
from components.teacher import generate_triplets
from components.training.cold_start import train_cold_start


@pytest.fixture(scope="module")
def demo_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    generate_world(WorldConfig(), root / "data")
    generate_triplets(root / "data", TeacherConfig(), root / "triplets.jsonl")
    world = load_world(root / "data", max_items=1500, max_queries=600)
    train_ids = set(world.split("train")["query_id"])
    triplets = [t for t in read_jsonl(root / "triplets.jsonl") if t["query_id"] in train_ids]
    return world, triplets


def _train_hit_rate(model: LREMModel, world, n_queries: int = 120) -> float:
    queries = world.split("train").head(n_queries)
    items = world.catalog
    item_emb = model.embed_items(items["title"].tolist(), batch_size=128)
    q_emb, _ = model.embed_queries(queries["text"].tolist(), max_cot_tokens=8, batch_size=64)
    top = np.argsort(-(q_emb @ item_emb.T), axis=1)[:, :100]
    ids = items["item_id"].to_numpy()
    ranked = {qid: ids[row].tolist() for qid, row in zip(queries["query_id"], top)}
    metrics = retrieval_metrics(ranked, world.relevant(), dict(zip(queries["query_id"], queries["category"])),
                                hit_ks=(100,), precision_k=10)
    return metrics["overall"]["hit_rate@100"]


def test_30_steps_lower_infonce_and_beat_untrained_model(demo_world, tmp_path):
    world, triplets = demo_world
    corpus = world.catalog["title"].tolist() + world.split("train")["text"].tolist()
    model = LREMModel.create(ModelConfig(vocab_size=2000), corpus)
    untrained = copy.deepcopy(model)
    history = []
    result = train_cold_start(model, triplets, ColdStartConfig(max_steps=30, batch_size=32, log_every=5,
                                                               save_every=0, learning_rate=1e-3),
                              tmp_path, log_metrics=lambda m, s: history.append((s, m)), show_progress=False)
    assert result["steps"] == 30
    first, last = history[0][1], history[-1][1]
    assert last["cold_start/infonce"] < first["cold_start/infonce"]
    assert set(first) >= {"cold_start/loss", "cold_start/sft", "cold_start/lr", "cold_start/examples_per_s"}
    before, after = _train_hit_rate(untrained, world), _train_hit_rate(model, world)
    assert after > before, f"training-query HitRate@100: untrained {before:.3f}, after 30 steps {after:.3f}"


def test_resume_from_last_checkpoint(demo_world, tmp_path):
    world, triplets = demo_world
    corpus = world.catalog["title"].tolist()
    small = ModelConfig(vocab_size=800, hidden_size=32, intermediate_size=64)
    cfg = ColdStartConfig(max_steps=6, batch_size=16, save_every=3, log_every=1)

    straight = LREMModel.create(small, corpus)
    resumed = copy.deepcopy(straight)
    train_cold_start(straight, triplets, cfg, tmp_path / "a", show_progress=False)

    # stop after the step-3 checkpoint, as a killed task would, then rerun to completion
    crashing = copy.deepcopy(cfg)
    crashing.max_steps = 6
    calls = []

    def crash_after_checkpoint(metrics, step):
        calls.append(step)
        if step == 4:
            raise RuntimeError("simulated worker loss")

    with pytest.raises(RuntimeError):
        train_cold_start(copy.deepcopy(resumed), triplets, crashing, tmp_path / "b", log_metrics=crash_after_checkpoint,
                         show_progress=False)
    assert (tmp_path / "b" / "checkpoints" / "step-3").exists()
    steps_seen = []
    result = train_cold_start(resumed, triplets, cfg, tmp_path / "b",
                              log_metrics=lambda m, s: steps_seen.append(s), show_progress=False)
    assert result["steps"] == 6
    assert min(steps_seen) == 4  # picked up after the checkpoint, did not start over
    a = straight.embed_items(["waterproof hiking backpack"])
    b = resumed.embed_items(["waterproof hiking backpack"])
    assert np.abs(a - b).max() < 1e-4  # same data order and optimizer state: same model


def test_hard_negatives_contrast_a_field_the_query_names(demo_world):
    from components.training.cold_start import TripletDataset, named_fields

    world, triplets = demo_world
    catalog = world.catalog.to_dict(orient="records")
    items = {r["item_id"]: r for r in catalog}
    relevant = world.relevant()
    rows = [t for t in triplets if t["item_id"] in items]  # the fixture keeps part of the catalog
    ds = TripletDataset(rows, hard_negatives=3, catalog=catalog, relevant=relevant, seed=1)
    n_with = n_named = 0
    for i in range(len(ds)):
        row = ds[i]
        positive = items[row["item_id"]]
        fields = named_fields(positive, row["query"])
        n_named += bool(fields)
        if not fields:
            assert row["negatives"] == []  # nothing the query asks for to contrast
        for item_id, title in row["negatives"]:
            neg = items[item_id]
            assert title == neg["title"] and neg["product_type"] == positive["product_type"]
            assert item_id not in relevant[row["query_id"]] and item_id != row["item_id"]
            differs = [name for name, value in fields.items()
                       if (neg["brand"] if name == "brand" else neg["attributes"][name.split(":")[1]]) != value]
            assert differs, (row["query"], positive["title"], neg["title"])
        n_with += bool(row["negatives"])
    assert n_named > 0 and n_with >= 0.9 * n_named
    # a hard category's query shares no word with its items' titles: it gets none
    hard = [t for t in rows if world.queries.set_index("query_id").loc[t["query_id"], "category"] == "qa"]
    assert hard and all(not ds.negatives_for(t) for t in hard)


def test_named_fields_reads_brand_and_attribute_values():
    from components.training.cold_start import named_fields

    item = {"brand": "Pelaro", "attributes": {"color": "silver", "power": "900w", "style": "countertop"}}
    assert named_fields(item, "pelaro silver blender") == {"brand": "Pelaro", "attribute:color": "silver"}
    assert named_fields(item, "a blender for smoothies") == {}
    assert named_fields({"brand": "X", "attributes": None}, "y") == {}


def test_gradient_accumulation_counts_optimizer_steps(demo_world, tmp_path):
    world, triplets = demo_world
    model = LREMModel.create(ModelConfig(vocab_size=800, hidden_size=32, intermediate_size=64),
                             world.catalog["title"].tolist())
    seen = []
    result = train_cold_start(model, triplets, ColdStartConfig(max_steps=3, batch_size=8, grad_accum_steps=2,
                                                               hard_negatives=2, hard_negative_scope="query",
                                                               log_every=1, save_every=0),
                              tmp_path, catalog=world.catalog.to_dict(orient="records"), relevant=world.relevant(),
                              log_metrics=lambda m, s: seen.append(s), show_progress=False)
    assert result["steps"] == 3 and seen == [1, 2, 3]


def test_swap_cots_gives_rows_another_querys_cot():
    import random

    from components.training.cold_start import swap_cots

    cots = [[1], [1], [2], [3], [4]]
    queries = ["a", "a", "b", "c", "d"]
    assert swap_cots(cots, queries, 0.0, random.Random(0)) == cots
    swapped = swap_cots(cots, queries, 1.0, random.Random(0))
    for q, new in zip(queries, swapped):  # every row now carries the CoT of a row of another query
        assert new in [c for c, other in zip(cots, queries) if other != q]
    assert swap_cots([[5]], ["only"], 1.0, random.Random(0)) == [[5]]  # no other query to borrow from


def test_wrong_cot_steps_train(demo_world, tmp_path):
    world, triplets = demo_world
    corpus = world.catalog["title"].tolist() + world.split("train")["text"].tolist()
    model = LREMModel.create(ModelConfig(vocab_size=2000), corpus)
    result = train_cold_start(model, triplets, ColdStartConfig(max_steps=6, batch_size=16, log_every=2, save_every=0,
                                                               sft_warmup_ratio=0.5, wrong_cot_ratio=0.5),
                              tmp_path, show_progress=False)
    assert result["steps"] == 6 and np.isfinite(result["last"]["cold_start/infonce"])


def test_lm_replay_term_is_the_weighted_pretraining_loss(demo_world, tmp_path):
    """lm_replay_weight adds exactly weight x the causal-LM loss on the replayed text."""
    import torch

    from components.training.cold_start import ColdStartObjective, ReplayStream, replay_lm_loss

    world, triplets = demo_world
    corpus = world.catalog["title"].tolist() + world.split("train")["text"].tolist()
    model = LREMModel.create(ModelConfig(vocab_size=1000, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1), corpus)
    model.eval()
    cfg = ColdStartConfig(lm_replay_weight=0.5, lm_replay_batch=4, lm_replay_seq_len=24)
    objective = ColdStartObjective(model, cfg)
    rows = triplets[:8]
    query = model.query_batch([r["query"] for r in rows], [r["cot"] for r in rows])
    item_ids, item_mask = model.item_batch([r["item_title"] for r in rows])
    keys = [r["item_id"] for r in rows]
    replay_ids = ReplayStream(model.tokenizer, corpus, 4, 24, seed=0).next()
    assert replay_ids.shape == (4, 24)
    with torch.no_grad():
        base = objective(query, item_ids, item_mask, keys)
        with_replay = objective(query, item_ids, item_mask, keys, replay_ids=replay_ids)
        # by hand: mean next-token cross-entropy over the packed rows
        logits = model.lm(input_ids=replay_ids).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1)
        hand = -logp.gather(-1, replay_ids[:, 1:, None]).squeeze(-1).mean()
    assert torch.allclose(replay_lm_loss(model.lm, replay_ids), hand, atol=1e-5)
    assert torch.allclose(with_replay["loss"] - base["loss"], 0.5 * hand, atol=1e-5)
    assert torch.allclose(with_replay["replay"], hand, atol=1e-5)


def test_cold_start_with_lm_replay_logs_it_and_needs_the_text(demo_world, tmp_path):
    world, triplets = demo_world
    corpus = world.catalog["title"].tolist() + world.split("train")["text"].tolist()
    model = LREMModel.create(ModelConfig(vocab_size=1000, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1), corpus)
    cfg = ColdStartConfig(max_steps=4, batch_size=8, log_every=2, save_every=0, lm_replay_weight=1.0,
                          lm_replay_batch=4, lm_replay_seq_len=32)
    result = train_cold_start(model, triplets, cfg, tmp_path / "a", show_progress=False, replay_docs=corpus)
    assert result["steps"] == 4 and np.isfinite(result["last"]["cold_start/replay_lm"])
    assert result["last"]["cold_start/replay_lm"] > 0
    with pytest.raises(ValueError, match="replay_docs"):
        train_cold_start(model, triplets, cfg, tmp_path / "b", show_progress=False)


def test_judged_negatives_are_masked_per_query():
    from components.training.cold_start import TripletDataset, judged_matrix

    relevant = {"q1": {"i1", "i2"}, "q2": {"i2"}}
    rows = [{"query_id": "q1", "query": "a", "cot": "x", "item_id": "i1", "item_title": "t1"},
            {"query_id": "q2", "query": "b", "cot": "y", "item_id": "i2", "item_title": "t2"}]
    plain = TripletDataset(rows, relevant=relevant)
    assert judged_matrix([plain[0], plain[1]], ["i1", "i2"]) is None  # off: nothing masked
    ds = TripletDataset(rows, relevant=relevant, mask_judged=True)
    m = judged_matrix([ds[0], ds[1]], ["i1", "i2"])
    # q1 judges i2 relevant: q2's positive is no negative of q1; q2 does not judge i1
    assert m.tolist() == [[True, True], [False, True]]
    # without the judgments, a query's own triplet items stand in for them
    own = TripletDataset(rows, mask_judged=True)
    assert own[0]["judged"] == {"i1"} and own[1]["judged"] == {"i2"}
