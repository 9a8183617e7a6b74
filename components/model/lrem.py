"""The LREM model: one causal LM that reasons about a query, then embeds it.

Query side: ``prompt <think> c </think><emb>``; the embedding is the last-layer hidden
state at ``<emb>``. Item side: ``prompt(Item: title) <emb>``, no reasoning. Both are
L2-normalised; similarity is cosine. Any Hugging Face causal LM works as the backbone;
the embedded default builds a tiny Qwen2 from config with a BPE tokenizer trained on
the catalog.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.config import ModelConfig
from components.model import prompts
from components.model.prompts import EMB, THINK, THINK_END, PromptSpec

SPEC_FILE = "lrem_config.json"


@dataclass
class LREMSpec:
    """What, beside the HF weights and tokenizer, defines an LREM model (saved with it)."""

    prompts: PromptSpec = field(default_factory=PromptSpec)
    max_cot_tokens: int = 16
    max_query_tokens: int = 48
    max_item_tokens: int = 64
    pooling: str = "emb_token"  # last-layer hidden state at <emb>; "mean": masked mean (direct-embedder baseline)
    normalize: bool = True
    base: str = "tiny"
    token_ids: dict = field(default_factory=dict)  # filled on save: <think>, </think>, <emb>, pad
    # True: the template's tail is tokenised joined to the text (``q: {query}:`` reads
    # "trainers" ":" as the whole prompt string does, and as TRL's GRPO tokenises it). False:
    # the tail apart (" :" for the normalised BPE), as models saved before this field were trained.
    joined_tail: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "LREMSpec":
        raw = json.loads(text)
        raw["prompts"] = PromptSpec(**raw.get("prompts", {}))
        raw.setdefault("joined_tail", False)  # saved before the field: trained with the tail apart
        return cls(**raw)


@dataclass
class QueryBatch:
    """Teacher-forced query sequences: prompt + CoT + ``</think><emb>`` (left padded)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    sft_labels: torch.Tensor  # -100 except on the CoT tokens (and the closing tag)

    def to(self, device) -> "QueryBatch":
        return QueryBatch(self.input_ids.to(device), self.attention_mask.to(device), self.sft_labels.to(device))


def prompt_spec_for(cfg: ModelConfig) -> PromptSpec:
    """The short template for the tiny backbone, the paper's chat prompt for a HF checkpoint."""
    style = cfg.prompt_style
    if style == "auto":
        style = "short" if cfg.base == "tiny" else "chat"
    if style == "short":
        return PromptSpec.short(cfg.short_query_template, cfg.short_item_template)
    return PromptSpec(style=style)


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.clamp(min=0)


class LREMModel(nn.Module):
    def __init__(self, lm, tokenizer, spec: LREMSpec):
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.spec = spec
        tokenizer.padding_side = "left"
        self.think_id = tokenizer.convert_tokens_to_ids(THINK)
        self.close_id = tokenizer.convert_tokens_to_ids(THINK_END)
        self.emb_id = tokenizer.convert_tokens_to_ids(EMB)
        self.pad_id = tokenizer.pad_token_id
        # Tokens a CoT must never contain: every special token (the close tag is decided apart).
        self._banned_in_cot = sorted(set(tokenizer.all_special_ids) - {self.close_id})
        self._stop_ids = {self.close_id, tokenizer.eos_token_id, self.pad_id}
        self._template_cache: dict = {}
        # a tokenizer that puts a space before a text's first word (the normalised tiny BPE):
        # the template's own trailing space is then dropped, or every text would start with two
        self._prefix_space = tokenizer.decode(tokenizer("x", add_special_tokens=False)["input_ids"]).startswith(" ")
        # greedy reasoning: "static" (components.model.fastgen, where the backbone allows it) or "hf_loop"
        # (the Hugging Face decoder with its dynamic cache); bench/bench_generation.py measures both
        self.generation = "static"
        self._static = None
        # the reasoning router of the registered model (components.routing.router; None: always reason)
        self.router = None
        # draft tokens for greedy CoTs at batch 1 (components.model.drafts; built with the router): same
        # tokens, fewer decoder calls; None: one call per token
        self.drafts = None

    # ------------------------------------------------------------------ building
    @classmethod
    def create(cls, cfg: ModelConfig, corpus: Iterable[str] | None = None,
               backbone_dir: str | Path | None = None) -> "LREMModel":
        """A new model: tiny from config (tokenizer trained on ``corpus``), a pre-trained tiny
        backbone (``backbone_dir``, see :mod:`components.training.pretrain`) or a HF checkpoint."""
        spec = LREMSpec(
            prompts=prompt_spec_for(cfg),
            max_cot_tokens=cfg.max_cot_tokens,
            max_query_tokens=cfg.max_query_tokens,
            max_item_tokens=cfg.max_item_tokens,
            pooling=cfg.pooling,
            base=cfg.base,
        )
        torch.manual_seed(cfg.seed)
        if backbone_dir is not None:
            backbone = cls.load(backbone_dir)
            backbone.lm.train()
            return cls(backbone.lm, backbone.tokenizer, spec)
        if cfg.base == "tiny":
            from transformers import Qwen2Config, Qwen2ForCausalLM

            from components.model.tokenizer import train_bpe_tokenizer

            if corpus is None:
                raise ValueError("a tiny model needs a text corpus to train its tokenizer on")
            tokenizer = train_bpe_tokenizer(corpus, cfg.vocab_size, normalize=cfg.tokenizer_normalize)
            config = Qwen2Config(
                vocab_size=len(tokenizer),
                hidden_size=cfg.hidden_size,
                intermediate_size=cfg.intermediate_size,
                num_hidden_layers=cfg.num_hidden_layers,
                num_attention_heads=cfg.num_attention_heads,
                num_key_value_heads=cfg.num_key_value_heads,
                max_position_embeddings=cfg.max_position_embeddings,
                tie_word_embeddings=True,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                bos_token_id=None,
            )
            lm = Qwen2ForCausalLM(config)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from components.model.tokenizer import add_lrem_tokens

            tokenizer = AutoTokenizer.from_pretrained(cfg.base)
            add_lrem_tokens(tokenizer)
            lm = AutoModelForCausalLM.from_pretrained(cfg.base, torch_dtype="auto")
            lm.resize_token_embeddings(len(tokenizer))
        return cls(lm, tokenizer, spec)

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        self.spec.token_ids = {
            THINK: self.think_id, THINK_END: self.close_id, EMB: self.emb_id, "pad": self.pad_id,
        }
        (out / SPEC_FILE).write_text(self.spec.to_json())
        if self.router is not None:
            self.router.save(out)
        if self.drafts is not None:
            self.drafts.save(out)
        return out

    @classmethod
    def load(cls, model_dir: str | Path, device: str | None = None) -> "LREMModel":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        spec = LREMSpec.from_json((model_dir / SPEC_FILE).read_text())
        if spec.base == "tiny":
            # AutoTokenizer would pick the architecture's tokenizer class (Qwen2's digit-splitting
            # pre-tokenizer) over the BPE the tiny model was trained with.
            from transformers import PreTrainedTokenizerFast

            tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir)
        else:
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
        lm = AutoModelForCausalLM.from_pretrained(model_dir)
        model = cls(lm, tokenizer, spec)
        for name, tid in spec.token_ids.items():
            if name in (THINK, THINK_END, EMB) and tokenizer.convert_tokens_to_ids(name) != tid:
                raise ValueError(f"{model_dir}: token {name} has id {tokenizer.convert_tokens_to_ids(name)}, "
                                 f"saved as {tid}")
        from components.routing.router import Router

        from components.model.drafts import DraftTable

        model.router = Router.load(model_dir)
        model.drafts = DraftTable.load(model_dir)
        model.eval()
        if device:
            model.to(device)
        return model

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    @property
    def decoder(self) -> nn.Module:
        return self.lm.base_model

    # ------------------------------------------------------------------ inputs
    def _left_pad(self, rows: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
        return ids, mask

    def _encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _templated_ids(self, render, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
        """Template ids around each text, with the text cut to ``max_tokens`` tokens.

        The template (chat header, trailing ``<think>`` or ``<emb>``) is encoded apart from the
        text so truncation never removes it; the texts are tokenised in one batched call.
        Training and serving share this one path. With ``spec.joined_tail`` a text that fits is
        encoded as the whole prompt string (head + text + tail), the ids TRL's GRPO trainer feeds
        the policy; a cut text gets the head apart and the tail as encoded after a word.
        """
        if render not in self._template_cache:
            full = render(self.tokenizer, self.spec.prompts, "\u0000")
            head, tail = full.split("\u0000")
            split_head = head.rstrip(" ") if self._prefix_space else head
            self._template_cache[render] = (self._encode_text(split_head), self._encode_text(tail), head, tail,
                                            self._tail_after_word(tail))
        head_ids, tail_ids, head, tail, joined_ids = self._template_cache[render]
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        if not self.spec.joined_tail:
            return [head_ids + ids[:max_tokens] + tail_ids for ids in encoded]
        fits = [i for i, ids in enumerate(encoded) if len(ids) <= max_tokens]
        whole = (self.tokenizer([head + texts[i] + tail for i in fits], add_special_tokens=False)["input_ids"]
                 if fits else [])
        rows = [head_ids + ids[:max_tokens] + joined_ids for ids in encoded]
        for i, ids in zip(fits, whole):
            rows[i] = ids
        return rows

    def _tail_after_word(self, tail: str) -> list[int]:
        """The tail's ids when it follows a word: the ids of ``"x" + tail`` after those of ``"x"``
        (the tail apart when the two do not split there)."""
        word = self._encode_text("x")
        ids = self._encode_text("x" + tail)
        return ids[len(word):] if ids[: len(word)] == word else self._encode_text(tail)

    def item_input_ids(self, title: str) -> list[int]:
        return self._templated_ids(prompts.item_prompt, [title], self.spec.max_item_tokens)[0]

    def query_prompt_ids(self, query: str) -> list[int]:
        return self._templated_ids(prompts.query_prompt, [query], self.spec.max_query_tokens)[0]

    def query_prompts_ids(self, queries: Sequence[str]) -> list[list[int]]:
        return self._templated_ids(prompts.query_prompt, queries, self.spec.max_query_tokens)

    def cot_ids(self, cot: str) -> list[int]:
        ids = [t for t in self._encode_text(cot) if t not in self._banned_in_cot and t != self.close_id]
        return ids[: self.spec.max_cot_tokens]

    def item_batch(self, titles: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self._left_pad(self._templated_ids(prompts.item_prompt, titles, self.spec.max_item_tokens))

    def query_batch(self, queries: Sequence[str], cots: Sequence[str] | None) -> QueryBatch:
        """Teacher-forced query sequences. ``cots=None`` gives the empty CoT (direct embedding).

        SFT targets are the CoT tokens and the closing ``</think>``: the model must learn
        both what to think and when to stop; the prompt and ``<emb>`` are masked.
        """
        prompts_ids = self.query_prompts_ids(queries)
        cot_ids = [self.cot_ids(c) for c in cots] if cots is not None else [[] for _ in prompts_ids]
        return self.query_batch_from_ids(prompts_ids, cot_ids)

    def query_batch_from_ids(self, prompt_ids: Sequence[list[int]], cot_ids: Sequence[list[int]]) -> QueryBatch:
        """Query sequences from token ids: prompt (ending in ``<think>``) + CoT + ``</think><emb>``.

        The path of sampled completions (GRPO rewards and its InfoNCE term): the CoT is the
        policy's own tokens, cut to the CoT budget, never re-tokenised from text.
        """
        rows, labels = [], []
        for prompt, cot in zip(prompt_ids, cot_ids):
            cot = [t for t in cot if t not in self._banned_in_cot][: self.spec.max_cot_tokens]
            rows.append(list(prompt) + cot + [self.close_id, self.emb_id])
            labels.append([-100] * len(prompt) + cot + [self.close_id, -100])
        ids, mask = self._left_pad(rows)
        lab_t = torch.full_like(ids, -100)
        for i, lab in enumerate(labels):
            lab_t[i, ids.shape[1] - len(lab):] = torch.tensor(lab, dtype=torch.long)
        return QueryBatch(ids, mask, lab_t)

    # ------------------------------------------------------------------ forward
    def pool(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Hidden state at the last ``<emb>`` of each row (works under left or right padding)."""
        is_emb = input_ids == self.emb_id
        if not bool(is_emb.any(dim=1).all()):
            raise ValueError("every sequence must contain an <emb> token")
        width = input_ids.shape[1]
        idx = torch.arange(width, device=input_ids.device).expand_as(input_ids)
        last = torch.where(is_emb, idx, torch.full_like(idx, -1)).max(dim=1).values
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def _pool(self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.spec.pooling == "emb_token":
            return self.pool(hidden, input_ids)
        if self.spec.pooling == "mean":
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        raise ValueError(f"unknown pooling {self.spec.pooling!r} (emb_token or mean)")

    def _finish(self, emb: torch.Tensor) -> torch.Tensor:
        emb = emb.float()
        return F.normalize(emb, dim=-1) if self.spec.normalize else emb

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Embeddings of sequences that contain ``<emb>`` (items, or teacher-forced queries)."""
        out = self.decoder(input_ids=input_ids, attention_mask=attention_mask,
                           position_ids=_positions(attention_mask), use_cache=False)
        return self._finish(self._pool(out.last_hidden_state, input_ids, attention_mask))

    def query_forward(self, batch: QueryBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Training forward of teacher-forced queries: (embeddings, SFT loss on the CoT)."""
        out = self.decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=_positions(batch.attention_mask), use_cache=False)
        hidden = out.last_hidden_state
        emb = self._finish(self._pool(hidden, batch.input_ids, batch.attention_mask))
        # next-token prediction only where a label exists: logits for those positions alone
        targets = batch.sft_labels[:, 1:]
        where = targets != -100
        if bool(where.any()):
            logits = self.lm.get_output_embeddings()(hidden[:, :-1][where])
            sft = F.cross_entropy(logits.float(), targets[where])
        else:
            sft = hidden.sum() * 0.0
        return emb, sft

    # ------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def _eval_mode(self):
        """Eval mode for one call, then back to what the caller had (a trainer's policy stays in train)."""
        was_training = self.lm.training
        self.lm.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.lm.train(was_training)

    def embed_items(self, titles: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Item embeddings: ``Item: title <emb>``, hidden state at ``<emb>``, L2-normalised."""
        out = []
        with self._eval_mode():
            for start in range(0, len(titles), batch_size):
                ids, mask = self.item_batch(titles[start:start + batch_size])
                out.append(self.encode(ids.to(self.device), mask.to(self.device)).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.lm.config.hidden_size), np.float32)

    def embed_queries_with_cot(self, queries: Sequence[str], cots: Sequence[str] | None,
                               batch_size: int = 64) -> np.ndarray:
        """Query embeddings after a given CoT (``None``: empty CoT, the direct embedding)."""
        out = []
        with self._eval_mode():
            for start in range(0, len(queries), batch_size):
                part = cots[start:start + batch_size] if cots is not None else None
                batch = self.query_batch(queries[start:start + batch_size], part).to(self.device)
                out.append(self.encode(batch.input_ids, batch.attention_mask).cpu())
        return torch.cat(out).numpy()

    @property
    def banned_in_cot(self) -> list[int]:
        """Token ids a CoT must never contain (every special token but the closing tag)."""
        return list(self._banned_in_cot)

    def split_completion(self, completion_ids: Sequence[int]) -> tuple[list[int], bool]:
        """A generated completion's CoT tokens (up to ``</think>``) and whether it closed itself."""
        ids = list(completion_ids)
        if self.close_id in ids:
            return ids[: ids.index(self.close_id)], True
        return [t for t in ids if t not in self._stop_ids], False

    def generate_cot_ids(self, queries: Sequence[str], batch_size: int = 64) -> list[list[int]]:
        """The model's own greedy CoTs (what evaluation embeds after), as token ids."""
        cots: list[list[int]] = []
        with self._eval_mode():
            for start in range(0, len(queries), batch_size):
                cots.extend(self._reason_and_embed(queries[start:start + batch_size], self.spec.max_cot_tokens,
                                                   False, 1.0, None)[1])
        return cots

    def generate_cots(self, queries: Sequence[str], batch_size: int = 64) -> list[str]:
        """The model's own greedy CoTs, as text."""
        return [self.decode_cot(ids) for ids in self.generate_cot_ids(queries, batch_size)]

    def embed_queries_after_cot_ids(self, queries: Sequence[str], cot_ids: Sequence[list[int]]) -> np.ndarray:
        """Query embeddings after given CoT token ids (sampled completions), without gradients."""
        with self._eval_mode():
            batch = self.query_batch_from_ids(self.query_prompts_ids(queries), cot_ids).to(self.device)
            return self.encode(batch.input_ids, batch.attention_mask).cpu().numpy()

    def direct_with_features(self, queries: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Direct (empty-CoT) embeddings and the router's scalar features, from the same one forward.

        Features (:data:`components.routing.router.SCALAR_FEATURES`): log(1 + query tokens), and of
        the model's first-CoT-token distribution at ``<think>`` (special tokens but ``</think>``
        banned, as in generation): its top probability, its entropy, and P(``</think>``).
        """
        embs, feats = [], []
        head = self.lm.get_output_embeddings()
        with self._eval_mode():
            for start in range(0, len(queries), batch_size):
                part = list(queries[start:start + batch_size])
                prompt_lens = [len(p) for p in self.query_prompts_ids(part)]
                batch = self.query_batch(part, None).to(self.device)
                out = self.decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                   position_ids=_positions(batch.attention_mask), use_cache=False)
                hidden = out.last_hidden_state
                embs.append(self._finish(self._pool(hidden, batch.input_ids, batch.attention_mask)).cpu())
                logits = head(hidden[:, -3]).float()  # at <think>: prompt + </think><emb> are the last two
                logits[:, self._banned_in_cot] = -math.inf
                logp = torch.log_softmax(logits, dim=-1)
                p = logp.exp()
                entropy = -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)
                feats.append(torch.stack([torch.log1p(torch.tensor(prompt_lens, dtype=torch.float32)),
                                          p.max(-1).values.cpu(), entropy.cpu(), p[:, self.close_id].cpu()], 1))
        dim = self.lm.config.hidden_size
        return (torch.cat(embs).numpy() if embs else np.zeros((0, dim), np.float32),
                torch.cat(feats).numpy() if feats else np.zeros((0, 4), np.float32))

    def embed_queries_routed(self, queries: Sequence[str], batch_size: int = 32
                             ) -> tuple[np.ndarray, list[str], np.ndarray]:
        """The router's choice per query: (embeddings, CoT texts, which queries reasoned).

        Every query gets the direct forward (the router's features); the ones the router sends
        to reasoning are then reasoned and embedded after their CoT, the others keep the direct
        embedding and an empty CoT. Without a router every query reasons.
        """
        if self.router is None:
            embs, cots = self.embed_queries(queries, reasoning=True, batch_size=batch_size, routing=False)
            return embs, cots, np.ones(len(queries), dtype=bool)
        direct, scalars = self.direct_with_features(queries, batch_size=max(batch_size, 1))
        reason = self.router.decide(direct, scalars)
        embs, cots = direct.copy(), [""] * len(queries)
        picked = np.flatnonzero(reason).tolist()
        if picked:
            e, c = self.embed_queries([queries[i] for i in picked], reasoning=True, batch_size=batch_size,
                                      routing=False)
            embs[picked] = e
            for i, cot in zip(picked, c):
                cots[i] = cot
        return embs, cots, reason

    def embed_queries(self, queries: Sequence[str], reasoning: bool = True, max_cot_tokens: int | None = None,
                      do_sample: bool = False, temperature: float = 1.0, batch_size: int = 32,
                      generator: torch.Generator | None = None, routing: bool | None = None
                      ) -> tuple[np.ndarray, list[str]]:
        """Reason, then embed. Returns (L2-normalised embeddings, CoT texts).

        With a router (the registered model's serving config) and ``routing`` not False, greedy
        reasoning is routed: only the queries the router picks reason (:meth:`embed_queries_routed`);
        ``routing=False`` makes every query reason (the always-reasoning reference).

        The CoT is generated with the KV cache (greedy, or sampled when ``do_sample``); when
        it closes itself with ``</think>`` or reaches ``max_cot_tokens``, ``</think><emb>`` is
        fed and the hidden state at ``<emb>`` is the embedding. ``reasoning=False`` embeds the
        query directly with an empty CoT (the paper's "empty CoT" shape).
        """
        if not reasoning:
            return self.embed_queries_with_cot(queries, None, batch_size), [""] * len(queries)
        if (routing if routing is not None else self.router is not None) and not do_sample \
                and max_cot_tokens is None and self.router is not None:
            embs, cots, _ = self.embed_queries_routed(queries, batch_size=batch_size)
            return embs, cots
        if self.spec.pooling != "emb_token":
            raise ValueError("reasoning needs <emb> pooling; mean pooling is for the direct-embedder baseline")
        budget = self.spec.max_cot_tokens if max_cot_tokens is None else max_cot_tokens
        embs, cots = [], []
        with self._eval_mode():
            for start in range(0, len(queries), batch_size):
                e, c = self._reason_and_embed(queries[start:start + batch_size], budget, do_sample, temperature,
                                              generator)
                embs.append(e)
                cots.extend(self.decode_cot(ids) for ids in c)
        return torch.cat(embs).numpy(), cots

    def static_generator(self):
        """The preallocated-cache greedy loop for this backbone (None where it cannot run it)."""
        if self._static is None:
            from components.model import fastgen

            self._static = fastgen.StaticGreedy(self.lm) if fastgen.supports(self.lm) else False
        return self._static or None

    def hf_generate_cot_ids(self, queries: Sequence[str], budget: int | None = None) -> list[list[int]]:
        """Greedy CoTs by Hugging Face ``generate`` under the same rules (the reference of the fast loop)."""
        budget = self.spec.max_cot_tokens if budget is None else budget
        ids, mask = self._left_pad(self.query_prompts_ids(queries))
        with self._eval_mode():
            out = self.lm.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                   max_new_tokens=budget, do_sample=False, suppress_tokens=self._banned_in_cot,
                                   eos_token_id=self.close_id, pad_token_id=self.pad_id, num_beams=1,
                                   temperature=None, top_p=None, top_k=None)
        return [self.split_completion(row)[0] for row in out[:, ids.shape[1]:].tolist()]

    def _reason_and_embed(self, queries, budget, do_sample, temperature, generator):
        device = self.device
        ids, mask = self._left_pad(self.query_prompts_ids(queries))
        ids, mask = ids.to(device), mask.to(device)
        static = self.static_generator() if (self.generation == "static" and not do_sample) else None
        if static is not None:
            stops = torch.tensor(sorted(self._stop_ids), device=device)
            banned = torch.tensor(self._banned_in_cot, device=device)
            emb, cots = static.reason_and_embed(ids, mask, budget, banned, stops, self.close_id, self.emb_id,
                                                self.pad_id, drafts=self.drafts)
            return self._finish(emb).cpu(), cots
        pos = _positions(mask)
        n = len(queries)
        out = self.decoder(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        cache, hidden = out.past_key_values, out.last_hidden_state[:, -1]
        next_pos = pos[:, -1] + 1
        cot_tokens: list[list[int]] = [[] for _ in range(n)]
        phase = torch.zeros(n, dtype=torch.long, device=device)  # 0 thinking, 1 closed, 2 embedded
        emb = torch.zeros((n, hidden.shape[-1]), dtype=hidden.dtype, device=device)
        head = self.lm.get_output_embeddings()
        banned = torch.tensor(self._banned_in_cot, device=device)
        for _ in range(budget + 2):
            feed = torch.full((n,), self.pad_id, dtype=torch.long, device=device)
            thinking = phase == 0
            if bool(thinking.any()):
                logits = head(hidden).float()
                logits[:, banned] = -math.inf
                if do_sample:
                    probs = torch.softmax(logits / max(temperature, 1e-5), dim=-1)
                    choice = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                else:
                    choice = logits.argmax(dim=-1)
                chosen = choice.tolist()  # one device sync per step, not one per row
                for i in torch.nonzero(thinking).flatten().tolist():
                    token = chosen[i]
                    if token in self._stop_ids or len(cot_tokens[i]) >= budget:
                        feed[i] = self.close_id
                        phase[i] = 1
                    else:
                        feed[i] = token
                        cot_tokens[i].append(token)
            closed_before = (phase == 1) & ~(feed == self.close_id)
            feed[closed_before] = self.emb_id
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
            out = self.decoder(input_ids=feed[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                               past_key_values=cache, use_cache=True)
            cache, hidden = out.past_key_values, out.last_hidden_state[:, -1]
            next_pos = next_pos + 1
            emb[closed_before] = hidden[closed_before]
            phase[closed_before] = 2
            if bool((phase == 2).all()):
                break
        return self._finish(emb).cpu(), cot_tokens

    def greedy_cot_ids(self, queries: Sequence[str], batch_size: int = 64) -> list[list[int]]:
        """The greedy CoT token ids of ``queries`` (the model's full budget), in batches."""
        out: list[list[int]] = []
        with self._eval_mode():
            for i in range(0, len(queries), batch_size):
                out += self._reason_and_embed(list(queries[i:i + batch_size]), self.spec.max_cot_tokens, False,
                                              1.0, None)[1]
        return out

    def build_drafts(self, queries: Sequence[str], batch_size: int = 64) -> None:
        """:attr:`drafts` from the model's own greedy CoTs on ``queries`` (saved with the model)."""
        from components.model.drafts import DraftTable

        self.drafts = DraftTable.build(self.greedy_cot_ids(queries, batch_size), exclude=self._stop_ids)

    def decode_cot(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()
