"""A position-biased click model whose clicks follow the relevance judgments.

A simulated user examines rank ``r`` (1-based) with probability ``1 / r ** decay``
(position bias), and clicks an examined item with ``click_relevant`` when the data judges
it relevant to the query, ``click_irrelevant`` otherwise (noise). A click on a relevant
item becomes a purchase with ``purchase_given_click``. This is the position-based model
(PBM) of Craswell et al. 2008 / Chuklin et al. 2015.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence


@dataclass
class ClickModel:
    decay: float = 1.0
    click_relevant: float = 0.9
    click_irrelevant: float = 0.05
    purchase_given_click: float = 0.3

    def examine_prob(self, rank: int) -> float:
        return 1.0 / float(rank) ** self.decay

    def click_prob(self, rank: int, relevant: bool) -> float:
        return self.examine_prob(rank) * (self.click_relevant if relevant else self.click_irrelevant)

    def simulate(self, items: Sequence[str], relevant: set[str], rng: random.Random) -> list[tuple[str, str]]:
        """The events of one user on one result list: [(item_id, "click" | "purchase"), ...]."""
        events: list[tuple[str, str]] = []
        for rank, item in enumerate(items, start=1):
            rel = item in relevant
            if rng.random() < self.click_prob(rank, rel):
                events.append((item, "click"))
                if rel and rng.random() < self.purchase_given_click:
                    events.append((item, "purchase"))
        return events

    @classmethod
    def from_config(cls, online) -> "ClickModel":
        return cls(online.examine_decay, online.click_relevant, online.click_irrelevant, online.purchase_given_click)
