"""Small cells are hidden in the operator statistics' measure counts (safeguard 4).

A measure's count is one cell of a two-cell group, in force and not in force: with the
population's size shown, a small "not in force" could be worked out from a large "in
force", so it is hidden as well as a small "in force".
"""

from __future__ import annotations

import pytest

from tests.clock import FixedClock
from tests.policies.support import example
from trustledger.api.settings import Settings
from trustledger.api.statistics import Figures, aggregate

SESAME = example("sesame")


def figures(subjects: int, in_force: int) -> Figures:
    """A population of ``subjects`` with every measure in force for the first ``in_force``."""
    column = [i < in_force for i in range(subjects)]
    return Figures(subjects, {c: [None] * subjects for c in SESAME.scorecards},
                   {c: [None] * subjects for c in SESAME.scorecards},
                   dict.fromkeys(SESAME.measures, column))


@pytest.mark.parametrize(("subjects", "in_force", "shown"), [
    (10_000, 9_995, None),   # 5 not in force: hidden, so 9,995 is hidden too
    (10_000, 5, None),       # 5 in force: hidden
    (10_000, 9_990, 9_990),  # 10 not in force: a cell of k subjects is shown
    (10_000, 10_000, 10_000),
    (10_000, 0, 0),
    (0, 0, 0),
])
def test_a_measure_count_hides_small_cells_on_both_sides(
        clock: FixedClock, subjects: int, in_force: int, shown: int | None) -> None:
    """The count in force is hidden when it or its complement has 1 to k - 1 subjects."""
    settings = Settings(database_url="sqlite://", clock=clock)
    got = aggregate(figures(subjects, in_force), SESAME, settings)
    assert got["subjects"] == subjects
    for cell in got["measures"]:
        assert cell["subjects"] == shown
        assert cell["suppressed"] is (shown is None)
