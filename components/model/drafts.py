"""Draft tokens for greedy CoTs: fewer decoder calls at batch 1, the same tokens.

The CoTs a trained LREM writes are formulaic (the teacher's patterns: a type, a use, a few
attributes), so the next few tokens are often predictable from the last two. A
:class:`DraftTable` holds, for each context of the last ``order`` CoT tokens (backing off to
shorter ones), the token that most often followed it in the model's own greedy CoTs on its
training queries (built nightly in ``train_router``, saved beside the model as
``cot_drafts.json``). At serving, the static greedy loop (:mod:`components.model.fastgen`) feeds
the token it just chose plus up to ``k`` drafted tokens in one decoder call and keeps the drafted
tokens only as far as they equal the model's own greedy choices at each position: the CoT and the
embedding are those of plain greedy decoding (``tests/model/test_fastgen.py``), a wrong draft
costs only the wasted positions of that call.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

DRAFTS_FILE = "cot_drafts.json"


class DraftTable:
    """Most frequent next CoT token per context of the last 1..``order`` tokens."""

    def __init__(self, table: dict[tuple[int, ...], int], order: int, stats: dict | None = None):
        self.table = table
        self.order = order
        self.stats = stats or {}

    @classmethod
    def build(cls, cots: Iterable[Sequence[int]], order: int = 3, min_count: int = 2,
              exclude: Iterable[int] = ()) -> "DraftTable":
        """From CoT token id lists (``exclude``: ids never drafted, e.g. the stop tokens). A context
        seen fewer than ``min_count`` times drafts nothing."""
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        excluded = set(int(t) for t in exclude)
        counts: dict[tuple[int, ...], Counter] = defaultdict(Counter)
        n_cots = n_tokens = 0
        for cot in cots:
            cot = [int(t) for t in cot]
            n_cots += 1
            n_tokens += len(cot)
            for i in range(1, len(cot)):
                nxt = cot[i]
                if nxt in excluded:
                    continue
                for n in range(1, order + 1):
                    if i - n >= 0:
                        counts[tuple(cot[i - n:i])][nxt] += 1
        table = {}
        for ctx, c in counts.items():
            token, count = max(c.items(), key=lambda kv: (kv[1], -kv[0]))  # ties: the smaller id, deterministic
            if count >= min_count:
                table[ctx] = token
        return cls(table, order, {"cots": n_cots, "tokens": n_tokens, "contexts": len(table), "order": order,
                                  "min_count": min_count})

    def next(self, history: Sequence[int]) -> int | None:
        for n in range(min(self.order, len(history)), 0, -1):
            token = self.table.get(tuple(history[-n:]))
            if token is not None:
                return token
        return None

    def draft(self, history: Sequence[int], k: int) -> list[int]:
        """Up to ``k`` tokens, each the table's next token after ``history`` and the tokens drafted so far."""
        out: list[int] = []
        seq = list(history)
        while len(out) < k:
            token = self.next(seq)
            if token is None:
                break
            out.append(token)
            seq.append(token)
        return out

    def __len__(self) -> int:
        return len(self.table)

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / DRAFTS_FILE
        rows = [[list(ctx), tok] for ctx, tok in sorted(self.table.items())]
        path.write_text(json.dumps({"order": self.order, "stats": self.stats, "table": rows}))
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> "DraftTable | None":
        path = Path(model_dir) / DRAFTS_FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls({tuple(int(t) for t in ctx): int(tok) for ctx, tok in raw["table"]}, int(raw["order"]),
                   raw.get("stats", {}))
