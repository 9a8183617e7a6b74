"""The static-cache greedy loop (components/model/fastgen.py) against Hugging Face ``generate``."""

import copy

import numpy as np
import pytest
import torch

QUERIES = ["keep my coffee hot on the commute", "chair", "gear for the sport played at Wimbledon on grass courts",
           "cheap alternative to Lumora", "running shoes not leather waterproof hiking backpack 30L"]


def _static_and_loop(model, queries, budget=None):
    budget = model.spec.max_cot_tokens if budget is None else budget
    out = {}
    for mode in ("static", "hf_loop"):
        model.generation = mode
        with model._eval_mode():
            emb, cots = model._reason_and_embed(queries, budget, False, 1.0, None)
        out[mode] = (emb.numpy(), cots)
    model.generation = "static"
    return out


@pytest.fixture(scope="module")
def closing_models(tiny_model):
    """Copies of the tiny model with a larger ``</think>`` row in the output head, so that CoTs close
    themselves after different numbers of tokens (the untrained model never closes)."""
    models = []
    for scale in (4.0, 10.0):
        model = copy.deepcopy(tiny_model)
        with torch.no_grad():
            model.lm.get_output_embeddings().weight[model.close_id] *= scale
        models.append(model)
    return models


def test_static_loop_is_the_default_for_the_tiny_backbone(tiny_model):
    assert tiny_model.generation == "static"
    assert tiny_model.static_generator() is not None


def test_same_tokens_as_hf_generate_batch_one_and_padded_batch(tiny_model, closing_models):
    lengths = set()
    for model in [tiny_model, *closing_models]:
        reference = model.hf_generate_cot_ids(QUERIES)  # padded batch
        runs = _static_and_loop(model, QUERIES)
        assert runs["static"][1] == reference
        assert runs["hf_loop"][1] == reference
        # the same embedding as the HF loop, and as the teacher-forced forward after those tokens
        np.testing.assert_allclose(runs["static"][0], runs["hf_loop"][0], atol=2e-5)
        np.testing.assert_allclose(runs["static"][0], model.embed_queries_after_cot_ids(QUERIES, reference), atol=2e-5)
        for i, query in enumerate(QUERIES[:3]):  # batch of one: no padding at all
            one = _static_and_loop(model, [query])
            assert one["static"][1] == model.hf_generate_cot_ids([query]) == [reference[i]]
            np.testing.assert_allclose(one["static"][0][0], runs["static"][0][i], atol=2e-5)
        lengths |= {len(c) for c in reference}
    # the checks covered CoTs that close early (several lengths) and ones that spend the budget
    assert len(lengths) >= 3 and tiny_model.spec.max_cot_tokens in lengths


def test_budget_override_and_sampling_fallback(tiny_model):
    runs = _static_and_loop(tiny_model, QUERIES, budget=3)
    assert runs["static"][1] == runs["hf_loop"][1] == tiny_model.hf_generate_cot_ids(QUERIES, 3)
    assert all(len(c) <= 3 for c in runs["static"][1])
    # sampling (GRPO's rollouts) stays on the HF loop: seeded, reproducible, not the greedy CoTs
    sampled = [tiny_model.embed_queries(QUERIES, do_sample=True, max_cot_tokens=4,
                                        generator=torch.Generator().manual_seed(0))[1] for _ in range(2)]
    greedy = tiny_model.embed_queries(QUERIES, max_cot_tokens=4)[1]
    assert sampled[0] == sampled[1] != greedy


def test_static_loop_follows_weights_changed_in_place(tiny_model):
    model = copy.deepcopy(tiny_model)
    before = _static_and_loop(model, QUERIES[:2])["static"][0]
    with torch.no_grad():  # what an optimizer step does: in-place updates
        for p in model.lm.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    after = _static_and_loop(model, QUERIES[:2])
    np.testing.assert_allclose(after["static"][0], after["hf_loop"][0], atol=2e-5)
    assert not np.allclose(before, after["static"][0])
