"""GRPO stage: the retrieval rewards, and a few real TRL GRPOTrainer steps."""

from __future__ import annotations

import math

import pytest

from components.config import GRPOStageConfig, ModelConfig
from components.model.lrem import LREMModel
from components.training.grpo import RetrievalRewards, reward_functions, train_grpo

TITLES = {f"I{i}": t for i, t in enumerate([
    "Northpeak waterproof nylon hiking backpack", "Lumora black leather office chair", "steel travel mug",
    "graphite tennis racket", "mesh running shoes", "oak writing desk", "brass table lamp", "wool hiking socks",
])}


@pytest.fixture(scope="module")
def model():
    corpus = list(TITLES.values()) * 30 + ["keep coffee hot", "thermos, tumbler, flask"] * 30
    return LREMModel.create(ModelConfig(vocab_size=400, hidden_size=32, intermediate_size=64, max_cot_tokens=4), corpus)


def test_format_and_length_rewards(model):
    rewards = RetrievalRewards(model, TITLES, pool_size=8)
    word = model.cot_ids("mug")[:1]
    closed = word + [model.close_id]
    unclosed = word * 5
    with_special = [model.emb_id, model.close_id]
    too_long = word * 5 + [model.close_id]
    assert rewards.format(completion_ids=[closed, unclosed, with_special, [model.close_id]]) == [1.0, 0.0, 0.0, 0.0]
    assert rewards.length(completion_ids=[closed, too_long]) == [1.0, 0.0]


def test_accuracy_reward_is_one_minus_log_rank(model):
    rewards = RetrievalRewards(model, TITLES, pool_size=8)
    ids = model.cot_ids("travel mug") + [model.close_id]
    out = rewards.accuracy(completion_ids=[ids, ids], query=["keep coffee hot", "keep coffee hot"],
                           item_id=["I2", "I5"])
    n = 8
    for value in out:
        rank = round(math.exp((1 - value) * math.log(n)))
        assert 1 <= rank <= n and abs(value - (1 - math.log(rank) / math.log(n))) < 1e-9


def test_reward_registry_rejects_unknown_names(model):
    with pytest.raises(ValueError, match="unknown reward"):
        reward_functions(RetrievalRewards(model, TITLES, 8), ["format", "bleu"])


def test_grpo_runs_real_trainer_steps(model, tmp_path):
    triplets = [{"query_id": f"q{i}", "query": q, "cot": "x", "item_id": f"I{i % 8}", "item_title": TITLES[f"I{i % 8}"]}
                for i, q in enumerate(["keep coffee hot", "sit at work", "play tennis", "walk in rain"] * 3)]
    logged = []
    result = train_grpo(model, triplets, TITLES, GRPOStageConfig(max_steps=2, num_generations=4,
                                                                 per_device_batch_size=8, reward_pool_size=8),
                        tmp_path, log_metrics=lambda m, s: logged.append(m))
    assert result["steps"] == 2
    assert any("grpo/rewards_reward_accuracy_mean" in m for m in logged)
    assert (tmp_path / "model" / "lrem_config.json").exists()
    LREMModel.load(tmp_path / "model")


def test_grpo_batch_must_divide_generations(model, tmp_path):
    with pytest.raises(ValueError, match="divisible"):
        train_grpo(model, [], TITLES, GRPOStageConfig(num_generations=3, per_device_batch_size=8), tmp_path)
