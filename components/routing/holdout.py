"""Queries the model never trains on, for the router to learn from.

The router's label is "this query's own CoT raises its HitRate@k over the direct embedding".
Measured on the queries the model was trained on, that gain is small (the model has learned
their items: on the demo model direct 0.952 vs reasoning 0.959) and the router learns the
wrong thing for the queries it will serve (docs/serving-cost.md, section 3.1). So a share of
the training queries (``routing.holdout_share``) is held out of everything the model learns
from, as the eval queries are: the teacher's triplets (so the cold start, GRPO, the direct
baseline, and the backbone's CoT documents) and the backbone's pre-training text (so the
cold start's and GRPO's rehearsal of it); the router is fitted on them only.

The split mirrors the eval split (:func:`components.data.generate.generate_world`): per
category, and for the hard categories (the intent split's), whole intents when the data
carries intent ids, so that no trained query names a held-out query's use, fact or brand.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from components.data.generate import take_whole_groups

# the categories the world splits by intent (world.hard_split "intent"); the rest split by query
HARD_CATEGORIES = ("qa", "alternative", "knowledge")


def _groups(frame: pd.DataFrame, hard: bool) -> dict[str, list[int]]:
    """Row positions by intent (hard categories with intent ids), else one group per query."""
    intents = frame["intent"] if (hard and "intent" in frame.columns) else None
    out: dict[str, list[int]] = {}
    for pos, qid in enumerate(frame["query_id"].astype(str)):
        intent = None if intents is None else intents.iloc[pos]
        key = f"intent:{intent}" if isinstance(intent, str) and intent else f"query:{qid}"
        out.setdefault(key, []).append(pos)
    return out


def take_share(frame: pd.DataFrame, share: float, seed: int = 0) -> np.ndarray:
    """Boolean mask over ``frame``'s rows: about ``share`` of each category's queries, taken as
    whole intents in the hard categories (when the rows have an ``intent``), by query otherwise.

    Groups are taken in a seeded order while they fit in ``round(share * n)``; when that falls
    short, the smallest of the remaining groups are added until it is reached (never all of a
    category's groups when ``share < 1``). Deterministic in (rows, share, seed), independent
    of the row order.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    mask = np.zeros(len(frame), dtype=bool)
    if share == 0.0 or len(frame) == 0:
        return mask
    frame = frame.reset_index(drop=True)
    for category in sorted(set(frame["category"].astype(str))):
        rows = np.flatnonzero(frame["category"].astype(str).to_numpy() == category)
        sub = frame.iloc[rows].reset_index(drop=True)
        groups = _groups(sub, category in HARD_CATEGORIES)
        target = int(round(share * len(sub)))
        names = sorted(groups)
        random.Random(f"{seed}:{category}").shuffle(names)
        taken, _ = take_whole_groups(groups, names, target, keep=0 if share >= 1.0 else 1,
                                     size_key=lambda name: (len(groups[name]), name))
        mask[rows[taken]] = True
    return mask


def holdout_query_ids(cfg, queries: pd.DataFrame) -> set[str]:
    """The training queries the router learns from and the trainers never see (``routing.holdout_share``
    of them, see :func:`take_share`); empty when no router is trained."""
    r = cfg.routing
    if not r.enabled or r.holdout_share <= 0 or cfg.model.pooling != "emb_token":
        return set()
    train = queries[queries["split"] == "train"].reset_index(drop=True)
    mask = take_share(train, r.holdout_share, seed=r.seed)
    return set(train.loc[mask, "query_id"].astype(str))
