"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008).

The two rankings take turns picking their best item not yet shown, the team that picks
first in each round decided by a coin flip; each shown item is credited to the team that
picked it. A click credits its item's team; a query is won by the team with more clicks
(a tie when equal). Champion and challenger are shown to the same user at once, so the
comparison needs far fewer queries than a split A/B test.
"""

from __future__ import annotations

import random
from typing import Sequence


def team_draft(a: Sequence[str], b: Sequence[str], k: int, rng: random.Random,
               teams: tuple[str, str] = ("champion", "challenger")) -> tuple[list[str], list[str]]:
    """Interleave rankings ``a`` and ``b`` into ``k`` items; returns (items, team of each item)."""
    items: list[str] = []
    owner: list[str] = []
    shown: set[str] = set()
    ia = ib = 0
    count = {teams[0]: 0, teams[1]: 0}

    def next_of(ranking: Sequence[str], i: int) -> int:
        while i < len(ranking) and ranking[i] in shown:
            i += 1
        return i

    while len(items) < k:
        ia, ib = next_of(a, ia), next_of(b, ib)
        if ia >= len(a) and ib >= len(b):
            break
        a_turn = count[teams[0]] < count[teams[1]] or (count[teams[0]] == count[teams[1]] and rng.random() < 0.5)
        if (a_turn and ia < len(a)) or ib >= len(b):
            items.append(a[ia]); owner.append(teams[0]); shown.add(a[ia]); count[teams[0]] += 1
        else:
            items.append(b[ib]); owner.append(teams[1]); shown.add(b[ib]); count[teams[1]] += 1
    return items, owner


def credit(clicked: Sequence[str], items: Sequence[str], owner: Sequence[str],
           teams: tuple[str, str] = ("champion", "challenger")) -> str:
    """The winner of one interleaved query: a team name, or ``tie``."""
    team_of = dict(zip(items, owner))
    wins = {teams[0]: 0, teams[1]: 0}
    for item in set(clicked):
        if item in team_of:
            wins[team_of[item]] += 1
    if wins[teams[0]] == wins[teams[1]]:
        return "tie"
    return teams[0] if wins[teams[0]] > wins[teams[1]] else teams[1]
