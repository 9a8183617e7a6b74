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


# ---------------------------------------------------------------- drafted tokens at batch 1
def _one_by_one(model, queries, drafts):
    model.drafts = drafts
    try:
        with model._eval_mode():
            return [model._reason_and_embed([q], model.spec.max_cot_tokens, False, 1.0, None) for q in queries]
    finally:
        model.drafts = None


def test_drafts_give_the_same_tokens_in_fewer_decoder_calls(tiny_model, closing_models):
    from components.model.drafts import DraftTable
    from components.model.fastgen import count_decoder_calls

    for model in [tiny_model, *closing_models]:
        reference = model.hf_generate_cot_ids(QUERIES)
        own = DraftTable.build(model.greedy_cot_ids(QUERIES), min_count=1, exclude=model._stop_ids)
        assert len(own) > 0
        with count_decoder_calls() as calls:
            plain = _one_by_one(model, QUERIES, None)
            plain_calls, calls[0] = calls[0], 0
            drafted = _one_by_one(model, QUERIES, own)
        assert [c for _, c in drafted] == [c for _, c in plain] == [[r] for r in reference]
        for (a, _), (b, _) in zip(plain, drafted):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5)
        # the model's own CoTs as drafts: the long ones are checked several tokens per call
        assert 0 < calls[0] < plain_calls


def test_any_draft_table_keeps_greedy_tokens(tiny_model, closing_models):
    """Property: whatever the drafts propose (right, wrong, banned or stop tokens, any length), the CoT and
    the embedding are plain greedy decoding's."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from components.model.drafts import DraftTable

    models = [tiny_model, *closing_models]
    plain = {(m_i, q): _one_by_one(models[m_i], [q], None)[0] for m_i in range(len(models)) for q in QUERIES[:3]}
    vocab = len(tiny_model.tokenizer)
    special = sorted(tiny_model._stop_ids) + [tiny_model.emb_id, tiny_model.think_id]
    token = st.one_of(st.integers(0, vocab - 1), st.sampled_from(special))

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(m_i=st.integers(0, len(models) - 1), q=st.sampled_from(QUERIES[:3]),
           cots=st.lists(st.lists(token, min_size=0, max_size=12), min_size=1, max_size=6),
           order=st.integers(1, 3), draft_len=st.integers(1, 12))
    def check(m_i, q, cots, order, draft_len):
        model = models[m_i]
        table = DraftTable.build(cots, order=order, min_count=1)
        # the model's own CoT mixed in, so that some drafts are right
        table.table.update(DraftTable.build([plain[(m_i, q)][1][0]], order=order, min_count=1).table)
        g = model.static_generator()
        with model._eval_mode():
            ids, mask = model._left_pad(model.query_prompts_ids([q]))
            emb, cot = g.reason_and_embed(ids, mask, model.spec.max_cot_tokens, torch.tensor(model._banned_in_cot),
                                          torch.tensor(sorted(model._stop_ids)), model.close_id, model.emb_id,
                                          model.pad_id, drafts=table, draft_len=draft_len)
        assert cot == plain[(m_i, q)][1]
        np.testing.assert_allclose(model._finish(emb).numpy(), plain[(m_i, q)][0].numpy(), atol=2e-5)

    check()


def test_drafts_are_saved_and_loaded_with_the_model(tiny_model, tmp_path):
    from components.model.drafts import DraftTable
    from components.model.lrem import LREMModel

    model = copy.deepcopy(tiny_model)
    assert DraftTable.load(tmp_path) is None
    model.build_drafts(QUERIES)
    model.save(tmp_path / "m")
    loaded = LREMModel.load(tmp_path / "m")
    assert loaded.drafts.table == model.drafts.table and loaded.drafts.order == model.drafts.order
    assert loaded.drafts.stats["cots"] == len(QUERIES)
    # batched reasoning does not use drafts; at batch 1 the loaded model gives the same CoTs as without
    assert _one_by_one(loaded, QUERIES[:2], loaded.drafts)[0][1] == _one_by_one(loaded, QUERIES[:2], None)[0][1]


def test_draft_table_backs_off_to_shorter_contexts_and_skips_rare_and_excluded_tokens():
    from components.model.drafts import DraftTable

    cots = [[1, 2, 3, 4], [1, 2, 3, 4], [9, 2, 3, 5], [7, 8, 99]]
    t = DraftTable.build(cots, order=2, min_count=2, exclude=[99])
    assert t.next([1, 2]) == 3 and t.next([2, 3]) == 4  # (2, 3) -> 4 twice, -> 5 once
    assert t.next([42, 3]) == 4  # unseen pair: backs off to (3,)
    assert t.next([7, 8]) is None and t.next([7]) is None  # seen once (min_count 2); 99 never drafted
    assert t.draft([1, 2], 5) == [3, 4]  # chains until nothing follows
    assert t.draft([1, 2], 1) == [3] and t.draft([], 3) == []
    assert DraftTable.build(cots, order=1, min_count=1).next([8]) == 99
