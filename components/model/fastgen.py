"""Greedy reason-then-embed for Qwen2-architecture backbones, with a preallocated KV cache.

Why: for the tiny serving model (4 layers, hidden 256) a decoder call through Hugging Face
costs far more in Python (cache objects, mask building, output dataclasses) than in
arithmetic, and a query that reasons makes ~18 of them. This module runs the same weights
with the same maths, layer by layer: one preallocated key/value tensor per layer (the
"static cache"), a boolean key mask, rotary tables computed once, and per step only what a
token needs (RMSNorm, q/k/v, RoPE, SDPA over the filled part of the cache, o-proj, MLP).
The stopping rules are those of :meth:`LREMModel._reason_and_embed`: special tokens are
banned from the CoT, a stop token or the budget feeds ``</think>``, then ``<emb>`` is fed and
its final hidden state is the embedding (``</think><emb>`` in one call when every row closes at
once). At batch 1 with a draft table (:mod:`components.model.drafts`) each call also checks the
drafted next tokens and keeps them while they equal the greedy choice. Tokens are identical to
HF ``generate`` with the same rules (``tests/model/test_fastgen.py``);
``bench/bench_generation.py`` measures both.

Other architectures fall back to the Hugging Face loop (:func:`supports`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

QWEN2_TYPES = ("qwen2",)


def supports(lm) -> bool:
    """This loop reproduces the backbone's forward exactly (Qwen2: RMSNorm, RoPE, GQA, SwiGLU, no sliding window)."""
    cfg = lm.config
    if getattr(cfg, "model_type", None) not in QWEN2_TYPES:
        return False
    if getattr(cfg, "use_sliding_window", False):
        return False
    rope = getattr(cfg, "rope_scaling", None) or {}
    if rope and rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
        return False
    return getattr(cfg, "hidden_act", "silu") == "silu"


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # (F.rms_norm was measured slower on CPU at batch 1: a composite of more ops)
    var = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(var + eps))


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


class StaticGreedy:
    """The backbone's weights read as plain tensors, run with a preallocated KV cache.

    Built once per loaded model (:meth:`LREMModel.static_generator`). The fused q/k/v and
    gate/up matrices are copies: every call compares the parameters' storage and in-place
    version counters with those it copied from and re-reads them when they differ (a policy
    updated by an optimizer step, a model moved to another device).
    """

    def __init__(self, lm):
        cfg = lm.config
        self.lm = lm
        base = lm.base_model
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.eps = cfg.rms_norm_eps
        self.layers: list[tuple] = []
        self._signature: tuple = ()
        self.sync()
        self.rotary = base.rotary_emb
        self._tables: tuple[torch.Tensor, torch.Tensor] | None = None

    def _current_signature(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.lm.parameters())

    @torch.no_grad()
    def sync(self) -> None:
        """Re-read the backbone's weights: q/k/v and gate/up fused into one matrix each (fewer,
        larger matmuls per token)."""
        base = self.lm.base_model
        self.embed = base.embed_tokens.weight
        self.norm = base.norm.weight
        self.head = self.lm.get_output_embeddings().weight
        self.layers = []
        for layer in base.layers:
            a, m = layer.self_attn, layer.mlp
            wqkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).contiguous()
            bqkv = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]).contiguous()
            wgu = torch.cat([m.gate_proj.weight, m.up_proj.weight]).contiguous()
            self.layers.append((layer.input_layernorm.weight, wqkv, bqkv, a.o_proj.weight,
                                layer.post_attention_layernorm.weight, wgu, m.down_proj.weight))
        self._signature = self._current_signature()

    def _rope_tables(self, length: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tables is None or self._tables[0].shape[0] < length or self._tables[0].device != device:
            n = max(length, 256)
            pos = torch.arange(n, device=device)[None]
            cos, sin = self.rotary(torch.zeros(1, device=device, dtype=dtype), pos)
            self._tables = (cos[0], sin[0])
        return self._tables

    def _forward(self, ids: torch.Tensor, pos: torch.Tensor, keys: list, values: list, start: int,
                 mask: torch.Tensor) -> torch.Tensor:
        """Final-norm hidden states of ``ids`` (B, T) written at cache columns [start, start + T).

        ``mask`` (B, 1, T, start + T) says which cache columns each new position attends to.
        """
        b, t = ids.shape
        end = start + t
        cos_t, sin_t = self._rope_tables(int(pos.max()) + 1, ids.device, self.embed.dtype)
        cos, sin = cos_t[pos][:, None], sin_t[pos][:, None]  # (B, 1, T, hd)
        x = F.embedding(ids.reshape(-1), self.embed)  # (B*T, H): 2-D matmuls throughout
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        nq, nk = nh * hd, nkv * hd
        inter = self.layers[0][5].shape[0] // 2 if self.layers else 0
        for li, (ln1, wqkv, bqkv, wo, ln2, wgu, wd) in enumerate(self.layers):
            qkv = F.linear(_rms(x, ln1, self.eps), wqkv, bqkv)
            # q and k rotated together (one RoPE per layer), then split
            qk = _rotate(qkv[:, :nq + nk].view(b, t, nh + nkv, hd).transpose(1, 2), cos, sin)
            keys[li][:, :, start:end] = qk[:, nh:]
            values[li][:, :, start:end] = qkv[:, nq + nk:].view(b, t, nkv, hd).transpose(1, 2)
            att = F.scaled_dot_product_attention(qk[:, :nh], keys[li][:, :, :end], values[li][:, :, :end],
                                                 attn_mask=mask, enable_gqa=nkv != nh)
            x = x + F.linear(att.transpose(1, 2).reshape(b * t, nq), wo)
            gu = F.linear(_rms(x, ln2, self.eps), wgu)
            x = x + F.linear(F.silu(gu[:, :inter]) * gu[:, inter:], wd)
        return _rms(x, self.norm, self.eps).view(b, t, -1)

    @torch.no_grad()
    def reason_and_embed(self, ids: torch.Tensor, mask: torch.Tensor, budget: int, banned: torch.Tensor,
                         stop_ids: torch.Tensor, close_id: int, emb_id: int, pad_id: int,
                         drafts=None, draft_len: int = 8) -> tuple[torch.Tensor, list[list[int]]]:
        """Greedy CoT then ``</think><emb>`` for left-padded prompts ``ids``/``mask`` (B, T).

        Returns (the un-normalised hidden state at ``<emb>`` per row, the CoT token ids per row).
        ``drafts`` (a :class:`components.model.drafts.DraftTable`): at batch 1, up to ``draft_len``
        drafted tokens are checked per decoder call (same tokens, fewer calls).
        """
        if self._current_signature() != self._signature:
            self.sync()
        if drafts is not None and len(drafts) and ids.shape[0] == 1 and bool(mask.all()) and draft_len > 0:
            return self._speculative_one(ids, budget, banned, stop_ids, close_id, emb_id, drafts, draft_len)
        device = ids.device
        b, t0 = ids.shape
        width = t0 + budget + 2
        shape = (b, self.n_kv, width, self.head_dim)
        keys = [torch.empty(shape, dtype=self.embed.dtype, device=device) for _ in self.layers]
        values = [torch.empty(shape, dtype=self.embed.dtype, device=device) for _ in self.layers]
        key_mask = torch.zeros((b, width), dtype=torch.bool, device=device)
        key_mask[:, :t0] = mask.bool()
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        # causal within the prompt; a padding position sees itself, so no softmax row is empty
        causal = torch.ones((t0, t0), dtype=torch.bool, device=device).tril()[None, None]
        eye = torch.eye(t0, dtype=torch.bool, device=device)[None, None]
        prefill_mask = (key_mask[:, None, None, :t0] & causal) | eye
        hidden = self._forward(ids, pos, keys, values, 0, prefill_mask)[:, -1]
        next_pos = pos[:, -1] + 1
        phase = torch.zeros(b, dtype=torch.long, device=device)  # 0 thinking, 1 closed, 2 embedded
        n_cot = torch.zeros(b, dtype=torch.long, device=device)
        tokens = torch.full((b, budget + 2), -1, dtype=torch.long, device=device)
        emb = torch.zeros_like(hidden)
        close = torch.tensor(close_id, device=device)
        pad = torch.tensor(pad_id, device=device)
        emb_tok = torch.tensor(emb_id, device=device)
        for step in range(budget + 2):
            thinking = phase == 0
            logits = F.linear(hidden, self.head)
            logits[:, banned] = -torch.inf
            choice = logits.argmax(dim=-1)
            stop = thinking & (torch.isin(choice, stop_ids) | (n_cot >= budget))
            cont = thinking & ~stop
            closed_before = phase == 1
            col = t0 + step
            if not bool((cont | closed_before).any()):
                # every row still going closes now: ``</think><emb>`` in one decoder call (two positions,
                # the second sees the first), instead of one call each; rows already embedded feed padding
                feed = torch.stack([torch.where(stop, close, pad), torch.where(stop, emb_tok, pad)], dim=1)
                key_mask[:, col:col + 2] = True
                two = key_mask[:, None, None, :col + 2].repeat(1, 1, 2, 1)
                two[:, :, 0, col + 1] = False
                steps = next_pos[:, None] + torch.arange(2, device=device)
                hidden = self._forward(feed, steps, keys, values, col, two)[:, 1]
                emb = torch.where(stop[:, None], hidden, emb)
                break
            feed = torch.where(cont, choice, pad)
            feed = torch.where(stop, close, feed)
            feed = torch.where(closed_before, emb_tok, feed)
            tokens[:, step] = torch.where(cont, choice, -1)
            n_cot += cont.long()
            phase = torch.where(stop, 1, phase)
            key_mask[:, col] = True
            hidden = self._forward(feed[:, None], next_pos[:, None], keys, values, col,
                                   key_mask[:, None, None, :col + 1])[:, 0]
            next_pos = next_pos + 1
            emb = torch.where(closed_before[:, None], hidden, emb)
            phase = torch.where(closed_before, 2, phase)
            if bool((phase == 2).all()):
                break
        cots = [[tok for tok in row if tok >= 0] for row in tokens.tolist()]
        return emb, cots

    def _speculative_one(self, ids: torch.Tensor, budget: int, banned: torch.Tensor, stop_ids: torch.Tensor,
                         close_id: int, emb_id: int, drafts, draft_len: int) -> tuple[torch.Tensor, list[list[int]]]:
        """One unpadded prompt (1, T): each decoder call feeds the token just chosen plus the drafted
        tokens after it, and keeps the drafted ones while they equal the model's greedy choice at the
        position before (so the CoT is plain greedy decoding's); ``</think><emb>`` in the last call."""
        device = ids.device
        t0 = ids.shape[1]
        width = t0 + budget + 2
        shape = (1, self.n_kv, width, self.head_dim)
        keys = [torch.empty(shape, dtype=self.embed.dtype, device=device) for _ in self.layers]
        values = [torch.empty(shape, dtype=self.embed.dtype, device=device) for _ in self.layers]
        stops = set(stop_ids.tolist())
        causal = torch.ones((width, width), dtype=torch.bool, device=device).tril()

        def run(tokens: list[int], start: int) -> torch.Tensor:
            n = len(tokens)
            feed = torch.tensor([tokens], dtype=torch.long, device=device)
            pos = torch.arange(start, start + n, device=device)[None]
            return self._forward(feed, pos, keys, values, start, causal[None, None, start:start + n, :start + n])[0]

        def greedy(hidden: torch.Tensor) -> list[int]:
            logits = F.linear(hidden, self.head)
            logits[:, banned] = -torch.inf
            return logits.argmax(dim=-1).tolist()

        hidden = run(ids[0].tolist(), 0)[-1:]
        choice = greedy(hidden)[0]
        cot: list[int] = []
        col = t0
        while choice not in stops and len(cot) < budget:
            cot.append(choice)
            proposal = drafts.draft(cot, min(draft_len, budget - len(cot)))
            feed = [choice] + proposal
            picks = greedy(run(feed, col))  # picks[i]: the greedy token after feed[: i + 1]
            kept = 0
            while kept < len(proposal) and picks[kept] == proposal[kept] and proposal[kept] not in stops:
                kept += 1
            cot.extend(proposal[:kept])
            col += 1 + kept
            choice = picks[kept]
        hidden = run([close_id, emb_id], col)[-1:]
        return hidden, [cot]


@contextlib.contextmanager
def count_decoder_calls() -> Iterator[list[int]]:
    """Count :class:`StaticGreedy` decoder calls (prefill, CoT steps, ``</think><emb>``) made inside
    the block, in ``counter[0]`` (the caller may reset it); for the benchmark and the tests."""
    original = StaticGreedy._forward
    counter = [0]

    def counted(self, *args, **kwargs):
        counter[0] += 1
        return original(self, *args, **kwargs)

    StaticGreedy._forward = counted
    try:
        yield counter
    finally:
        StaticGreedy._forward = original
