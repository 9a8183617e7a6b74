"""GRPO stage: the named rewards, the InfoNCE term of the RL loss, and real TRL GRPOTrainer steps."""

from __future__ import annotations

import math

import pytest
import torch

from components.config import GRPOStageConfig, ModelConfig
from components.model.lrem import LREMModel
from components.training.grpo import (REWARDS, FormatReward, LengthReward, RankAccuracyReward, RewardContext,
                                      build_rewards, rl_infonce, train_grpo)

TITLES = {f"I{i}": t for i, t in enumerate([
    "Northpeak waterproof nylon hiking backpack", "Lumora black leather office chair", "steel travel mug",
    "graphite tennis racket", "mesh running shoes", "oak writing desk", "brass table lamp", "wool hiking socks",
])}


@pytest.fixture(scope="module")
def model():
    corpus = list(TITLES.values()) * 30 + ["keep coffee hot", "thermos, tumbler, flask"] * 30
    return LREMModel.create(ModelConfig(vocab_size=400, hidden_size=32, intermediate_size=64, max_cot_tokens=4), corpus)


def test_format_and_length_rewards(model):
    fmt = FormatReward(model.close_id, model.banned_in_cot)
    length = LengthReward(model.close_id, model.spec.max_cot_tokens)
    word = model.cot_ids("mug")[:1]
    closed = word + [model.close_id]
    unclosed = word * 5
    with_special = [model.emb_id, model.close_id]
    too_long = word * 5 + [model.close_id]
    assert fmt(completion_ids=[closed, unclosed, with_special, [model.close_id]]) == [1.0, 0.0, 0.0, 0.0]
    assert length(completion_ids=[closed, too_long]) == [1.0, 0.0]
    assert fmt.__name__ == "reward_format" and length.__name__ == "reward_length"  # TRL logs by __name__


def test_accuracy_reward_is_one_minus_log_rank_of_the_relevant_items(model):
    relevant = {"q1": {"I2"}, "q2": {"I5", "I6"}}
    reward = RankAccuracyReward(model, TITLES, relevant, pool_size=8)
    ids = model.cot_ids("travel mug") + [model.close_id]
    out = reward(prompts=None, completion_ids=[ids, ids], query=["keep coffee hot", "sit and write"],
                 query_id=["q1", "q2"])
    # q1 ranks its one relevant item among the 7 others; q2 its two among the 6 others
    for value, n in zip(out, (8, 7)):
        assert 0.0 <= value <= 1.0
    rank = round(math.exp((1 - out[0]) * math.log(8)))
    assert 1 <= rank <= 8 and abs(out[0] - (1 - math.log(rank) / math.log(8))) < 1e-9


def test_accuracy_reward_on_the_whole_catalog_ranks_against_every_item_and_refreshes(model):
    """pool_size 0: the rank is the query's rank in the whole catalog (what evaluation measures);
    the item embeddings are reused between refreshes and recomputed every refresh_every calls."""
    relevant = {"q1": {"I2"}}
    reward = RankAccuracyReward(model, TITLES, relevant, pool_size=0, refresh_every=2)
    assert reward.full_catalog and reward.pool_size == len(TITLES)
    ids = model.cot_ids("travel mug") + [model.close_id]
    calls = []
    real = model.embed_items

    def counted(titles, **kw):
        calls.append(len(titles))
        return real(titles, **kw)

    model.embed_items = counted
    try:
        outs = [reward(prompts=None, completion_ids=[ids], query=["keep coffee hot"], query_id=["q1"])[0]
                for _ in range(3)]
    finally:
        del model.embed_items
    assert calls == [len(TITLES), len(TITLES)]  # calls 1 and 3 embed the catalog, call 2 reuses it
    q = model.embed_queries_after_cot_ids(["keep coffee hot"], [model.cot_ids("travel mug")])[0]
    order = sorted(TITLES)
    scores = model.embed_items([TITLES[i] for i in order]) @ q
    own = scores[order.index("I2")]
    rank = int(sum(1 for i, v in zip(order, scores) if i != "I2" and v > own)) + 1
    expected = 1 - math.log(rank) / math.log(len(TITLES))
    assert all(abs(o - expected) < 1e-5 for o in outs)
    with pytest.raises(ValueError, match="pool_size"):
        RankAccuracyReward(model, TITLES, relevant, pool_size=-1)


def test_reward_registry_builds_named_callables_and_rejects_unknown_names(model):
    ctx = RewardContext(model, TITLES, {}, GRPOStageConfig(reward_pool_size=8))
    funcs = build_rewards(["format", "length", "accuracy"], ctx)
    assert [f.__name__ for f in funcs] == ["reward_format", "reward_length", "reward_accuracy"]
    assert set(REWARDS) == {"format", "length", "accuracy"}
    with pytest.raises(ValueError, match="unknown reward"):
        build_rewards(["format", "bleu"], ctx)


def test_rl_infonce_matches_a_hand_computation(model):
    """The InfoNCE term on sampled completions: embeddings after each sampled CoT, in-batch
    positives plus extra negatives, the same item masked where it is not the row's own."""
    prompts = [model.query_prompt_ids("keep coffee hot"), model.query_prompt_ids("play tennis")]
    cots = [model.cot_ids("travel mug"), model.cot_ids("racket")]
    width_p = max(map(len, prompts))
    prompt_ids = torch.tensor([[model.pad_id] * (width_p - len(p)) + p for p in prompts])
    prompt_mask = torch.tensor([[0] * (width_p - len(p)) + [1] * len(p) for p in prompts])
    width_c = max(len(c) + 1 for c in cots)
    completion_ids = torch.tensor([c + [model.close_id] + [model.pad_id] * (width_c - len(c) - 1) for c in cots])
    completion_mask = torch.tensor([[1] * (len(c) + 1) + [0] * (width_c - len(c) - 1) for c in cots])
    positives, negatives, t = ["I2", "I3"], ["I5", "I2"], 0.05
    with torch.no_grad():
        got = rl_infonce(model, prompt_ids, prompt_mask, completion_ids, completion_mask, positives, TITLES,
                         negatives, t)
        # by hand: rows prompt + CoT + </think><emb>, items I2, I3, I5 (I2 as a negative is a duplicate: dropped)
        q = torch.cat([torch.from_numpy(model.embed_queries_after_cot_ids(["keep coffee hot"], [cots[0]])),
                       torch.from_numpy(model.embed_queries_after_cot_ids(["play tennis"], [cots[1]]))])
        items = torch.from_numpy(model.embed_items([TITLES["I2"], TITLES["I3"], TITLES["I5"]]))
        logits = q @ items.T / t
        expected = -(logits[0, 0] - torch.logsumexp(logits[0], 0) + logits[1, 1] - torch.logsumexp(logits[1], 0)) / 2
        # I5 judged relevant to the first query, I2 to the second: neither is then a negative of
        # that query (I2 stays the first row's positive)
        masked = rl_infonce(model, prompt_ids, prompt_mask, completion_ids, completion_mask, positives, TITLES,
                            negatives, t, judged_sets=[{"I5", "I2"}, {"I2"}])
        expected_masked = -(logits[0, 0] - torch.logsumexp(logits[0, :2], 0)
                            + logits[1, 1] - torch.logsumexp(logits[1, 1:], 0)) / 2
    assert abs(float(got) - float(expected)) < 1e-4
    assert abs(float(masked) - float(expected_masked)) < 1e-4


def test_grpo_runs_real_trainer_steps_and_its_loss_holds_the_infonce_term(model, tmp_path):
    triplets = [{"query_id": f"q{i}", "query": q, "cot": "x", "item_id": f"I{i % 8}", "item_title": TITLES[f"I{i % 8}"]}
                for i, q in enumerate(["keep coffee hot", "sit at work", "play tennis", "walk in rain"] * 3)]
    logged = []
    cfg = GRPOStageConfig(max_steps=2, num_generations=4, per_device_batch_size=8, reward_pool_size=8,
                          lambda_infonce=0.1, infonce_negatives=4)
    result = train_grpo(model, triplets, TITLES, cfg, tmp_path, log_metrics=lambda m, s: logged.append(m),
                        show_progress=False)
    assert result["steps"] == 2
    steps = [m for m in logged if "grpo/infonce" in m]
    assert steps, logged
    for m in steps:
        for key in ("grpo/rewards_reward_format_mean", "grpo/rewards_reward_length_mean",
                    "grpo/rewards_reward_accuracy_mean", "grpo/completions_mean_length", "grpo/grpo_loss"):
            assert key in m, key
        # the logged training loss is the GRPO loss plus 0.1 x InfoNCE
        assert abs(m["grpo/loss"] - (m["grpo/grpo_loss"] + 0.1 * m["grpo/infonce"])) < 1e-3
    assert (tmp_path / "model" / "lrem_config.json").exists()
    LREMModel.load(tmp_path / "model")


def test_grpo_loss_holds_the_rehearsal_term_when_asked(model, tmp_path):
    """grpo.lm_replay_weight: the loss adds weight x the causal-LM loss on the backbone's text."""
    triplets = [{"query_id": f"q{i}", "query": q, "cot": "x", "item_id": f"I{i % 8}", "item_title": TITLES[f"I{i % 8}"]}
                for i, q in enumerate(["keep coffee hot", "sit at work", "play tennis", "walk in rain"] * 3)]
    logged = []
    cfg = GRPOStageConfig(max_steps=2, num_generations=4, per_device_batch_size=8, reward_pool_size=8,
                          lambda_infonce=0.1, infonce_negatives=4, lm_replay_weight=0.5, lm_replay_batch=2,
                          lm_replay_seq_len=8)
    with pytest.raises(ValueError, match="pre-training text"):
        train_grpo(model, triplets, TITLES, cfg, tmp_path / "none", show_progress=False)
    docs = list(TITLES.values()) * 4
    train_grpo(model, triplets, TITLES, cfg, tmp_path, log_metrics=lambda m, s: logged.append(m),
               show_progress=False, replay_docs=docs)
    steps = [m for m in logged if "grpo/replay_lm" in m]
    assert len(steps) == 2, logged
    for m in steps:
        assert m["grpo/replay_lm"] > 0
        assert abs(m["grpo/loss"] - (m["grpo/grpo_loss"] + 0.1 * m["grpo/infonce"] + 0.5 * m["grpo/replay_lm"])) < 1e-3


def test_grpo_batch_must_divide_generations(model, tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        train_grpo(model, [], TITLES, GRPOStageConfig(num_generations=3, per_device_batch_size=8), tmp_path)


def test_split_for_rl_sets_whole_queries_aside_deterministically():
    from components.training.grpo import split_for_rl

    rows = [{"query_id": f"Q{i // 3}", "item_id": f"I{i}"} for i in range(300)]  # 100 queries x 3 items
    cold, rl = split_for_rl(rows, 0.2, seed=0)
    assert len(cold) + len(rl) == len(rows)
    cold_q, rl_q = {r["query_id"] for r in cold}, {r["query_id"] for r in rl}
    assert not cold_q & rl_q and 10 <= len(rl_q) <= 30
    assert split_for_rl(rows, 0.2, seed=0) == (cold, rl)
    assert split_for_rl(rows, 0.0) == (rows, rows)
    with pytest.raises(ValueError, match="rl_query_share"):
        split_for_rl(rows, 1.0)


def test_grpo_prompts_carry_every_teacher_kept_item_of_a_query(model, tmp_path):
    """One prompt per query; ``item_indices`` holds all its teacher-kept items (the RL InfoNCE
    positives with ``infonce_positive: random``), ``item_index`` the first."""
    from components.training.grpo import grpo_prompts

    index = {f"I{i}": i for i in range(8)}
    triplets = [{"query_id": "q1", "query": "keep coffee hot", "item_id": "I2"},
                {"query_id": "q1", "query": "keep coffee hot", "item_id": "I5"},
                {"query_id": "q1", "query": "keep coffee hot", "item_id": "I2"},
                {"query_id": "q2", "query": "play tennis", "item_id": "I3"},
                {"query_id": "q2", "query": "play tennis", "item_id": "unknown"}]
    rows = {r["query_id"]: r for r in grpo_prompts(model, triplets, index, seed=0)}
    assert set(rows) == {"q1", "q2"}
    assert (rows["q1"]["item_index"], rows["q1"]["item_indices"]) == (2, [2, 5])
    assert (rows["q2"]["item_index"], rows["q2"]["item_indices"]) == (3, [3])
    cfg = GRPOStageConfig(max_steps=1, num_generations=4, per_device_batch_size=8, reward_pool_size=8,
                          infonce_negatives=4, infonce_positive="random", scale_rewards="none")
    run = [dict(t, cot="x", item_title=TITLES.get(t["item_id"], "")) for t in triplets if t["item_id"] in index]
    assert train_grpo(model, run * 2, TITLES, cfg, tmp_path, show_progress=False)["steps"] == 1


def test_grpo_refuses_prompts_that_trl_tokenises_otherwise(model, tmp_path):
    """TRL tokenises each prompt string whole; GRPO runs only when that gives the model's own
    prompt ids, and names the query and both tokenisations when it does not (a model saved
    with the template's tail apart)."""
    import dataclasses

    from components.training.grpo import check_prompt_tokens, grpo_prompts

    index = {f"I{i}": i for i in range(8)}
    triplets = [{"query_id": "q1", "query": "keep coffee hot", "item_id": "I2"}]
    rows = grpo_prompts(model, triplets, index, seed=0)
    check_prompt_tokens(model, rows)  # a new model: the same ids, no error
    old = LREMModel(model.lm, model.tokenizer, dataclasses.replace(model.spec, joined_tail=False))
    # the fixture's normalised tokenizer spells the tail apart as " :" (two tokens)
    assert old.query_prompt_ids("keep coffee hot") != model.query_prompt_ids("keep coffee hot")
    with pytest.raises(ValueError, match="keep coffee hot.*joined_tail false"):
        check_prompt_tokens(old, rows)
    cfg = GRPOStageConfig(max_steps=1, num_generations=4, per_device_batch_size=8, reward_pool_size=8)
    run = [dict(t, cot="x", item_title=TITLES[t["item_id"]]) for t in triplets] * 2
    with pytest.raises(ValueError, match="GRPO prompt tokens differ"):
        train_grpo(old, run, TITLES, cfg, tmp_path, show_progress=False)


def test_hardest_prompts_keep_the_queries_the_model_ranks_worst(model):
    from components.training.grpo import greedy_rank_accuracy, hardest_prompts

    rows = [{"query_id": f"q{i}", "query": q} for i, q in
            enumerate(["keep coffee hot", "sit at work", "play tennis", "walk in rain"])]
    relevant = {"q0": {"I2"}, "q1": {"I1", "I5"}, "q2": {"I3"}, "q3": {"I7", "I4"}}
    acc = greedy_rank_accuracy(model, rows, TITLES, relevant)
    assert len(acc) == 4 and all(0.0 <= a <= 1.0 for a in acc)
    # by hand for q0: its item's rank among the other 7 catalog items, after the greedy CoT
    import numpy as np
    catalog = sorted(TITLES)
    items = model.embed_items([TITLES[i] for i in catalog])
    q, _ = model.embed_queries(["keep coffee hot"], reasoning=True)
    s = (q @ items.T)[0]
    rank = int((s[[j for j, i in enumerate(catalog) if i != "I2"]] > s[catalog.index("I2")]).sum()) + 1
    assert abs(acc[0] - (1 - np.log(rank) / np.log(8))) < 1e-5
    kept = hardest_prompts(model, rows, TITLES, relevant, 0.5)
    assert len(kept) == 2
    worst = sorted(range(4), key=lambda i: (acc[i], i))[:2]
    assert [r["query_id"] for r in kept] == [rows[i]["query_id"] for i in sorted(worst)]
    assert hardest_prompts(model, rows, TITLES, relevant, 1.0) == rows
    with pytest.raises(ValueError):
        hardest_prompts(model, rows, TITLES, relevant, 0.0)


def test_grpo_resumes_only_a_complete_checkpoint_of_the_same_run(tmp_path):
    """A checkpoint counts once its marker is written (last, after every process saved its part)
    and names this run; a torn one, another run's, or a marker for another step is never resumed.
    The kill-and-resume run itself: tests/training/test_distributed.py."""
    import json

    from components.config import ConfigError, PipelineConfig
    from components.training.grpo import CHECKPOINT_MARKER, latest_checkpoint, run_fingerprint

    def checkpoint(step: int, marker: dict | None) -> None:
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        (path / "model.safetensors").write_bytes(b"x")
        if marker is not None:
            (path / CHECKPOINT_MARKER).write_text(json.dumps(marker))

    checkpoint(2, {"step": 2, "fingerprint": "this"})
    checkpoint(4, {"step": 4, "fingerprint": "other"})  # another config or start: not this run's
    checkpoint(6, None)  # killed while saving: no marker
    checkpoint(8, {"step": 3, "fingerprint": "this"})  # a marker that is not this folder's
    assert latest_checkpoint(tmp_path, "this") == (tmp_path / "checkpoint-2", 2)
    assert latest_checkpoint(tmp_path, "other") == (tmp_path / "checkpoint-4", 4)
    assert latest_checkpoint(tmp_path, "none") == (None, 0)
    assert latest_checkpoint(tmp_path / "absent", "this") == (None, 0)

    rows = [{"query_id": "q1", "prompt": "p", "item_indices": [1]}]
    base = run_fingerprint(GRPOStageConfig(), rows, ["I1"], 1, "w")
    assert base == run_fingerprint(GRPOStageConfig(), rows, ["I1"], 1, "w")
    assert len({base, run_fingerprint(GRPOStageConfig(), rows, ["I1"], 2, "w"),  # another number of processes
                run_fingerprint(GRPOStageConfig(), rows, ["I1"], 1, "w2"),  # another starting model
                run_fingerprint(GRPOStageConfig(max_steps=61), rows, ["I1"], 1, "w")}) == 4

    # a checkpoint between two updates on one generation batch is refused
    with pytest.raises(ConfigError, match="grpo.save_every"):
        PipelineConfig(grpo=GRPOStageConfig(num_iterations=2, save_every=3))
    PipelineConfig(grpo=GRPOStageConfig(num_iterations=2, save_every=4))
