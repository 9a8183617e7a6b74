"""A byte-level BPE tokenizer trained on the catalog and query text (the tiny default).

No pretrained weights can be downloaded on the embedded machines, so the tiny model
gets its own vocabulary; a real checkpoint brings its tokenizer and only gains the
three LREM special tokens.
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from components.model.prompts import CHATML_TEMPLATE, SPECIAL_TOKENS

PAD = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, normalize: bool = False) -> PreTrainedTokenizerFast:
    """``normalize``: lowercase every text and give its first word a leading space, so a word
    is the same token(s) wherever it stands: at the start of a query or inside it, in an item
    title ("Pelaro Blender") or a knowledge sentence ("Wynaro is ..."). Without it, "wynaro"
    opening a query and " wynaro" inside one are different tokens."""
    core = Tokenizer(models.BPE(unk_token=None))
    if normalize:
        core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=normalize)
    core.decoder = decoders.ByteLevel()
    specials = [PAD, IM_START, IM_END, *SPECIAL_TOKENS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=IM_END,
        pad_token=PAD,
        additional_special_tokens=list(SPECIAL_TOKENS),
    )
    tok.add_special_tokens({"additional_special_tokens": [IM_START, *SPECIAL_TOKENS]})
    tok.chat_template = CHATML_TEMPLATE
    tok.padding_side = "left"
    return tok


def add_lrem_tokens(tokenizer) -> int:
    """Register ``<think>``, ``</think>``, ``<emb>`` as special tokens; returns how many were new."""
    added = tokenizer.add_special_tokens(
        {"additional_special_tokens": list(SPECIAL_TOKENS)}, replace_extra_special_tokens=False
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None) is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.padding_side = "left"
    return added
