import numpy as np
import pandas as pd
import pytest
import torch

from components.model.lrem import LREMModel
from components.model.prompts import EMB, THINK, THINK_END

QUERIES = ["keep my coffee hot on the commute", "chair", "gear for the sport played at Wimbledon on grass courts"]


def test_special_tokens_and_prompts(tiny_model):
    tok = tiny_model.tokenizer
    for t in (THINK, THINK_END, EMB):
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert ids == [tok.convert_tokens_to_ids(t)]  # one token each
    q = tiny_model.query_prompt_ids("chair")
    assert q[-1] == tiny_model.think_id
    item = tiny_model.item_input_ids("Lumora black leather office chair")
    assert item[-1] == tiny_model.emb_id
    # the tiny backbone gets the short template: compute goes to the query and the CoT
    assert tiny_model.spec.prompts.style == "short"
    # the normalised tiny tokenizer lowercases and starts every text with a space
    assert tok.decode(item) == " i: lumora black leather office chair" + EMB
    # the template's tail (":" + <think>) follows the query's last word as in the whole prompt
    # string: the model reads "chair:", as in the knowledge sentences it was pre-trained on
    assert tok.decode(q) == " q: chair:" + THINK


def test_chat_prompt_for_chat_style():
    from components.config import ModelConfig

    corpus = ["Lumora black leather office chair", "keep my coffee hot on the commute"] * 50
    model = LREMModel.create(ModelConfig(vocab_size=400, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         prompt_style="chat"), corpus)
    text = model.tokenizer.decode(model.item_input_ids("Lumora black leather office chair"))
    assert "item: lumora black leather office chair" in text and "query assistant" in text
    assert len(model.query_prompt_ids("chair")) > 40  # the paper's ~100-token chat prompt


def test_sft_mask_covers_exactly_the_cot(tiny_model):
    batch = tiny_model.query_batch(["keep my coffee hot", "chair"], ["thermos, tumbler", "seat"])
    for row, cot in enumerate(["thermos, tumbler", "seat"]):
        ids = batch.input_ids[row]
        labels = batch.sft_labels[row]
        think_pos = (ids == tiny_model.think_id).nonzero().max().item()
        close_pos = (ids == tiny_model.close_id).nonzero().max().item()
        labelled = (labels != -100).nonzero().flatten().tolist()
        # the CoT tokens between <think> and </think>, plus the closing tag itself
        assert labelled == list(range(think_pos + 1, close_pos + 1))
        assert labels[labelled].tolist() == ids[labelled].tolist()
        assert ids[think_pos + 1:close_pos].tolist() == tiny_model.cot_ids(cot)
        assert ids[close_pos + 1].item() == tiny_model.emb_id  # <emb> is not a target
        assert (labels[batch.attention_mask[row] == 0] == -100).all()  # padding is not a target


def test_cot_truncated_to_budget(tiny_model):
    long_cot = ", ".join(["thermos tumbler flask"] * 20)
    assert len(tiny_model.cot_ids(long_cot)) == tiny_model.spec.max_cot_tokens


def test_pooling_picks_emb_under_left_and_right_padding(tiny_model):
    titles = ["chair", "Northpeak waterproof nylon hiking backpack 30L"]
    left_ids, left_mask = tiny_model.item_batch(titles)
    rows = [tiny_model.item_input_ids(t) for t in titles]
    width = max(len(r) for r in rows)
    right_ids = torch.full((2, width), tiny_model.pad_id)
    right_mask = torch.zeros((2, width), dtype=torch.long)
    for i, r in enumerate(rows):
        right_ids[i, :len(r)] = torch.tensor(r)
        right_mask[i, :len(r)] = 1
    hidden = torch.arange(2 * width, dtype=torch.float32).view(2, width, 1)
    left = tiny_model.pool(hidden, left_ids).squeeze(-1)
    right = tiny_model.pool(hidden, right_ids).squeeze(-1)
    assert left.tolist() == [width - 1, 2 * width - 1]  # last position under left padding
    assert right.tolist() == [len(rows[0]) - 1, width + len(rows[1]) - 1]
    with torch.no_grad():
        emb_left = tiny_model.encode(left_ids, left_mask)
        emb_right = tiny_model.encode(right_ids, right_mask)
    assert torch.allclose(emb_left, emb_right, atol=1e-5)


def test_batched_queries_match_one_at_a_time(tiny_model):
    emb, cots = tiny_model.embed_queries(QUERIES, batch_size=8)
    assert emb.shape == (3, tiny_model.lm.config.hidden_size)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    for i, q in enumerate(QUERIES):
        single, cot = tiny_model.embed_queries([q])
        assert cot[0] == cots[i]
        assert np.abs(single[0] - emb[i]).max() < 1e-4
    items = tiny_model.embed_items(["chair", "stainless steel travel mug 500ml"])
    one = tiny_model.embed_items(["stainless steel travel mug 500ml"])
    assert np.abs(items[1] - one[0]).max() < 1e-4


def test_generated_cot_respects_budget_and_teacher_forcing_agrees(tiny_model):
    budget = tiny_model.spec.max_cot_tokens
    # the KV-cache generation path and the teacher-forced path give the same embedding
    ids = tiny_model.generate_cot_ids(QUERIES)
    assert all(len(i) <= budget for i in ids)
    assert [tiny_model.decode_cot(i) for i in ids] == tiny_model.embed_queries(QUERIES)[1]
    full, _ = tiny_model.embed_queries(QUERIES)
    forced = tiny_model.embed_queries_after_cot_ids(QUERIES, ids)
    assert np.abs(forced - full).max() < 1e-4


def test_direct_embedding_is_the_empty_cot(tiny_model):
    direct, cots = tiny_model.embed_queries(QUERIES, reasoning=False)
    assert cots == ["", "", ""]
    assert np.abs(direct - tiny_model.embed_queries_with_cot(QUERIES, None)).max() < 1e-6


def test_sampling_is_seeded(tiny_model):
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = tiny_model.embed_queries(QUERIES, do_sample=True, temperature=1.5, generator=g1)
    b = tiny_model.embed_queries(QUERIES, do_sample=True, temperature=1.5, generator=g2)
    assert a[1] == b[1]


def test_save_load_and_mlflow_roundtrip(tiny_model, tmp_path):
    import mlflow

    from components.registry.models import log_lrem_model

    saved = tiny_model.save(tmp_path / "model")
    loaded = LREMModel.load(saved)
    # the prompt template is saved with the model: the loaded one prompts exactly as trained
    assert loaded.spec.prompts == tiny_model.spec.prompts and loaded.spec.prompts.style == "short"
    assert loaded.query_prompt_ids("chair") == tiny_model.query_prompt_ids("chair")
    e0, c0 = tiny_model.embed_queries(QUERIES)
    e1, c1 = loaded.embed_queries(QUERIES)
    assert c0 == c1 and np.abs(e0 - e1).max() < 1e-5
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp):
        info = log_lrem_model(saved, registered_name="lrem-test")
    mlflow.MlflowClient().set_registered_model_alias("lrem-test", "champion", info.registered_model_version)
    pyfunc = mlflow.pyfunc.load_model("models:/lrem-test@champion")
    from components.registry.models import load_lrem

    assert load_lrem("models:/lrem-test@champion").spec.prompts == tiny_model.spec.prompts
    out = pyfunc.predict(pd.DataFrame({"query": QUERIES}))
    assert list(out["cot"]) == c0
    assert np.abs(np.stack(out["embedding"].to_numpy()) - e0).max() < 1e-5
    items = pyfunc.predict(pd.DataFrame({"title": ["chair"]}))
    assert np.abs(np.array(items["embedding"][0]) - tiny_model.embed_items(["chair"])[0]).max() < 1e-5
    with pytest.raises(Exception):
        pyfunc.predict(pd.DataFrame({"other": ["x"]}))


def test_normalized_tokenizer_spells_a_word_one_way(tmp_path):
    """tokenizer_normalize: a brand opening a query, inside a query, in a title or in a
    knowledge sentence is the same token sequence; the setting survives save/load."""
    from components.config import ModelConfig
    from tests.model.conftest import CORPUS

    corpus = CORPUS + ["Wynaro is a premium maker of blenders", "wynaro dupe on a budget",
                       "similar to wynaro for less money"] * 20
    cfg = ModelConfig(vocab_size=600, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      tokenizer_normalize=True)
    model = LREMModel.create(cfg, corpus)
    tok = model.tokenizer

    def spelled(text, word):
        pieces = tok.tokenize(text)
        for start in range(len(pieces)):
            for end in range(start + 1, len(pieces) + 1):
                if tok.convert_tokens_to_string(pieces[start:end]).strip() == word:
                    return pieces[start:end]
        raise AssertionError(f"{word!r} not found in {pieces}")

    forms = [spelled(t, "wynaro") for t in ("wynaro dupe on a budget", "similar to wynaro for less money",
                                            "Wynaro is a premium maker of blenders")]
    assert forms[0] == forms[1] == forms[2]
    # the query's prompt and the item's title share the word's tokens too
    q = model.query_prompt_ids("lumora chair")
    item = model.item_input_ids("Lumora black leather office chair")
    lumora = tok.convert_tokens_to_ids(spelled("lumora", "lumora"))
    assert all(t in q for t in lumora) and all(t in item for t in lumora)
    assert model.decode_cot(model.cot_ids("Thermos, Tumbler")) == "thermos, tumbler"
    # without it (the old tokenizer) the query-initial brand is spelled differently
    plain = LREMModel.create(ModelConfig(vocab_size=600, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, tokenizer_normalize=False), corpus).tokenizer
    assert plain.tokenize("wynaro dupe")[0] != plain.tokenize("similar to wynaro")[2]
    model.save(tmp_path / "m")
    again = LREMModel.load(tmp_path / "m")
    assert again.tokenizer.tokenize("Similar to WYNARO") == tok.tokenize("similar to wynaro")


def test_query_prompt_ids_are_the_whole_prompt_strings_tokens(tmp_path):
    """TRL's GRPO trainer tokenises the prompt string whole; the cold start, evaluation and
    serving encode template and query apart. With ``joined_tail`` both give the same ids, so
    the policy samples in the context it was trained and is served in (before: "trainers", " ",
    ":" in the cold start, "trainers", ":" in GRPO). A spec saved without the field keeps the
    tail apart, as its model was trained."""
    import json

    from components.config import ModelConfig
    from components.model import prompts
    from components.model.lrem import SPEC_FILE
    from tests.model.conftest import CORPUS

    cfg = ModelConfig(vocab_size=600, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      tokenizer_normalize=True, short_query_template="q: {query}:")
    model = LREMModel.create(cfg, CORPUS)
    tok = model.tokenizer
    assert model.spec.joined_tail
    for q in ["leather trainers", "shoes?", "cheap alternative to lumora", "x"]:
        whole = tok(prompts.query_prompt(tok, model.spec.prompts, q), add_special_tokens=False)["input_ids"]
        assert model.query_prompt_ids(q) == whole, q
        assert model.query_prompts_ids([q, "tumbler"])[0] == whole
        assert tok.convert_ids_to_tokens(whole)[-2:] == [":", "<think>"]
    # a query cut to max_query_tokens still ends with the tail as it follows a word
    long_ids = model.query_prompt_ids("chair " * 100)
    assert len(long_ids) == len(model.query_prompt_ids("chair")) - 1 + model.spec.max_query_tokens
    assert tok.convert_ids_to_tokens(long_ids)[-2:] == [":", "<think>"]
    # a model saved before the field: the tail apart, as it was trained
    saved = model.save(tmp_path / "m")
    spec = json.loads((saved / SPEC_FILE).read_text())
    assert spec["joined_tail"] is True and LREMModel.load(saved).query_prompt_ids("chair") == model.query_prompt_ids("chair")
    del spec["joined_tail"]
    (saved / SPEC_FILE).write_text(json.dumps(spec))
    old = LREMModel.load(saved)
    assert not old.spec.joined_tail
    assert tok.convert_ids_to_tokens(old.query_prompt_ids("leather trainers"))[-3:] == ["Ġ", ":", "<think>"]
    # a tokenizer without the leading space (as a HF checkpoint's): the head's trailing space
    # belongs to the query's first word in the whole string ("Ġleather"), not a token of its own
    raw = LREMModel.create(ModelConfig(vocab_size=600, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       tokenizer_normalize=False, short_query_template="q: {query}:"), CORPUS)
    rtok = raw.tokenizer
    for q in ["leather trainers", "Lumora chair"]:
        assert raw.query_prompt_ids(q) == rtok(prompts.query_prompt(rtok, raw.spec.prompts, q),
                                                add_special_tokens=False)["input_ids"], q
