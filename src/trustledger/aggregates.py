"""Small-cell suppression for every aggregate trustledger publishes (DESIGN.md safeguard 4).

No interface lists subjects; aggregates count them, and a count of 1 to ``k - 1``
subjects is hidden so that no one can be singled out. This module imports nothing from
the rest of trustledger, so that the API's operator statistics, the impact simulation and
anything else that counts subjects use this one rule without depending on each other.
"""

from __future__ import annotations

from collections.abc import Sequence

SMALLEST_CELL = 10
"""The default ``k``: aggregates of fewer subjects than this are suppressed (k = 10)."""


def suppress(counts: Sequence[int], k: int = SMALLEST_CELL) -> list[int | None]:
    """Counts with cells of 1 to ``k - 1`` subjects hidden (``None``).

    When exactly one cell would be hidden, the smallest other non-empty cell is too, so
    the hidden one cannot be recovered from the group's total.
    """
    hidden = [0 < c < k for c in counts]
    if sum(hidden) == 1:
        others = [(c, i) for i, c in enumerate(counts) if not hidden[i] and c > 0]
        if others:
            hidden[min(others)[1]] = True
    return [None if h else c for c, h in zip(counts, hidden, strict=True)]


__all__ = ["SMALLEST_CELL", "suppress"]
