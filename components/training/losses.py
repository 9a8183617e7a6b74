"""Losses of the cold start (and of the InfoNCE term kept on during RL)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def info_nce(query_emb: torch.Tensor, item_emb: torch.Tensor, temperature: float,
             item_keys: Sequence[str] | None = None, n_positives: int | None = None,
             negative_owners: Sequence[int] | None = None,
             judged: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE with in-batch negatives on cosine similarity / temperature.

    ``query_emb`` is (B, d); ``item_emb`` is (M, d) with M >= B, where row i of the first B
    items is query i's positive and any further rows are extra (hard) negatives shared by
    the batch. Embeddings are expected L2-normalised (cosine = dot product).
    ``item_keys`` (length M) names each item: a negative that is the same item as the
    query's positive is a false negative and is masked out.
    ``negative_owners`` (length M - B): the query each extra negative was mined for; it is then a
    negative of that query only (masked for the rest of the batch, where an item of the same
    product type may well be relevant).
    ``judged`` (n_positives x M, bool): True where an item is judged relevant to the query (a
    known false negative: another query's positive that the judgments list for this query too).
    Those logits are masked; a query's own positive (the diagonal) always stays.
    """
    b = query_emb.shape[0]
    n_pos = b if n_positives is None else n_positives
    logits = query_emb @ item_emb.T / temperature
    if item_keys is not None:
        index: dict[str, int] = {}
        codes = torch.tensor([index.setdefault(k, len(index)) for k in item_keys], device=logits.device)
        same = codes[:n_pos, None] == codes[None, :]
        same[torch.arange(n_pos), torch.arange(n_pos)] = False  # a query's own positive stays
        logits = logits.masked_fill(same, float("-inf"))
    if judged is not None:
        known = judged.to(logits.device).clone()
        known[torch.arange(n_pos), torch.arange(n_pos)] = False
        logits = logits.masked_fill(known, float("-inf"))
    if negative_owners is not None and len(negative_owners):
        owners = torch.tensor(list(negative_owners), device=logits.device)
        foreign = torch.arange(b, device=logits.device)[:, None] != owners[None, :]
        extra = logits[:, n_pos:].masked_fill(foreign, float("-inf"))
        logits = torch.cat([logits[:, :n_pos], extra], dim=1)
    labels = torch.arange(n_pos, device=logits.device)
    return F.cross_entropy(logits.float(), labels)


def in_batch_rank(query_emb: torch.Tensor, item_emb: torch.Tensor) -> torch.Tensor:
    """1-based rank of each query's own item (row i) among all items of the batch."""
    scores = query_emb @ item_emb.T
    own = scores.diagonal()
    return (scores > own[:, None]).sum(dim=1) + 1
