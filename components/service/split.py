"""Stable traffic split: a user always lands in the same arm of one experiment.

The arm is a function of ``sha256(salt + ":" + user_id)`` alone: no state, the same on
every replica and every restart. A new experiment (a new salt) reshuffles users, so one
experiment's bucket does not carry over into the next.
"""

from __future__ import annotations

import hashlib

CHAMPION = "champion"
CHALLENGER = "challenger"
ARMS = (CHAMPION, CHALLENGER)


def bucket(user_id: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, user_id)."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_arm(user_id: str, salt: str, challenger_share: float) -> str:
    """``challenger`` for a ``challenger_share`` of users (by hash), else ``champion``."""
    if not 0.0 <= challenger_share <= 1.0:
        raise ValueError(f"challenger_share must be in [0, 1], got {challenger_share}")
    return CHALLENGER if bucket(user_id, salt) < challenger_share else CHAMPION
