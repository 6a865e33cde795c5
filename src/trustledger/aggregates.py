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


# -- adverse-impact ratios: one rule for the model card, the CLI and impact reports ----------

FOUR_FIFTHS = 0.8
"""An adverse-impact ratio below this is flagged."""
RATIO_DIGITS = 3
"""Decimals a ratio is shown with, unless more are needed to show which side of 0.8 it is on."""


def below_four_fifths(ratio: float | None) -> bool:
    """Whether ``ratio`` breaks the four-fifths rule: the unrounded ratio below 0.8."""
    return ratio is not None and ratio < FOUR_FIFTHS


def ratio_text(ratio: float) -> str:
    """``ratio`` for people: :data:`RATIO_DIGITS` decimals, more when rounding would cross 0.8.

    The flag is decided on the unrounded ratio, so the text must not contradict it:
    0.79996 rounded to three decimals is 0.800, which is not below 0.8; it is shown as
    ``0.79996``, the fewest decimals whose value is still below.
    """
    for digits in range(RATIO_DIGITS, 18):
        text = f"{ratio:.{digits}f}"
        if below_four_fifths(float(text)) == below_four_fifths(ratio):
            return text
    return repr(ratio)  # round-trips, so it is on the ratio's side of 0.8
