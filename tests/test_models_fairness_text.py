"""The four-fifths flag and the ratio printed beside it agree, just under 0.8 as anywhere.

A ratio is flagged when, unrounded, it is below 0.8; the text shows it with three
decimals, or more when three would round a flagged ratio up to 0.800. Every text that
prints a ratio (the CLI's flag line, the model card's table and flag list) is read back
here and checked against the flag.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from trustledger.aggregates import FOUR_FIFTHS, below_four_fifths, ratio_text
from trustledger.models.card import save_card
from trustledger.models.fairness import FairnessReport, fairness_report

THRESHOLD = 600.0


def report() -> FairnessReport:
    """Region ``a`` all approved; ``b`` at 0.7996 of it, ``c`` at exactly 0.8, ``d`` at 0.7."""
    counts = {"a": (10, 10), "b": (2_500, 1_999), "c": (2_500, 2_000), "d": (10, 7)}
    scores: list[float] = []
    labels: list[str] = []
    for group, (n, approved) in counts.items():
        scores += [700.0] * approved + [500.0] * (n - approved)
        labels += [group] * n
    bad = np.array([i % 2 for i in range(len(scores))], dtype=np.int64)
    return fairness_report(np.array(scores), bad, {"region": labels}, [THRESHOLD])


def test_a_ratio_just_under_four_fifths_is_flagged_and_printed_below_it() -> None:
    fairness = report()
    ratios = {r.group: r.impact_ratio[THRESHOLD] for r in fairness.rows}
    assert ratios["b"] == pytest.approx(0.7996) and ratios["c"] == FOUR_FIFTHS
    assert {f.group for f in fairness.flags} == {"b", "d"}
    texts = {f.group: str(f) for f in fairness.flags}
    assert texts["b"] == "region=b: approval at 600 is 0.7996 of the best group's (< 0.8)"
    assert texts["d"] == "region=d: approval at 600 is 0.700 of the best group's (< 0.8)"


def test_the_model_card_shows_every_ratio_on_the_side_of_0_8_it_is_on(tmp_path: Path) -> None:
    fairness = report()
    card = {
        "model": {"hash": "0" * 64, "range": [350, 950], "scaling": {"method": "range"},
                  "target": {"column": "outcome", "bad": 1, "good": 0}},
        "data": {"name": "made-up.csv", "rows": 5_020, "bad_rate": 0.5, "sha256": "0" * 64},
        "method": {"binning": "optbinning", "monotonic_trend": "auto_asc_desc",
                   "estimator": "logistic regression", "points": "rounded"},
        "features": [], "refused": [], "fairness_groups": ["region"], "binning": {},
        "validation": {"folds": 5, "seed": 0, "oof_auc": 0.5, "oof_gini": 0.0, "oof_ks": 0.0,
                       "holdout_fraction": 0.3, "holdout_auc": 0.5, "psi_train_holdout": 0.0},
        "fairness": fairness.to_document(),
        "versions": {},
    }
    _, markdown = save_card(card, tmp_path)  # through the JSON file, as `model show` reads it
    text = markdown.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `region` \| (\w) \|.*\| \S+ \((\d\.\d+)\)( ⚠)? \|$", text,
                      re.MULTILINE)
    cells = {group: (shown, bool(mark)) for group, shown, mark in rows}
    assert cells == {"a": ("1.000", False), "b": ("0.7996", True), "c": ("0.800", False),
                     "d": ("0.700", True)}
    for shown, flagged in cells.values():
        assert (float(shown) < FOUR_FIFTHS) == flagged
    listed = re.findall(r"^- `region` = (\w) at 600: ratio (\d\.\d+) \(< 0\.8\)$", text,
                        re.MULTILINE)
    assert listed == [("b", "0.7996"), ("d", "0.700")]
    assert "**Four-fifths flags:** 2" in text


@pytest.mark.parametrize("ratio", [
    0.0, 0.5, 0.7994, 0.7995, 0.79951, 0.7996, 0.79996, 0.799999, 0.8, 0.8004, 0.8005, 1.0,
    float(np.nextafter(FOUR_FIFTHS, 0.0)), float(np.nextafter(FOUR_FIFTHS, 1.0)),
    *(0.7990 + i / 100_000 for i in range(0, 200, 7)),
])
def test_ratio_text_agrees_with_the_flag_with_as_few_decimals_as_it_can(ratio: float) -> None:
    text = ratio_text(ratio)
    assert below_four_fifths(float(text)) == below_four_fifths(ratio), text
    decimals = len(text.split(".")[1])
    assert decimals >= 3
    if decimals > 3:  # one decimal fewer would have crossed 0.8
        shorter = f"{ratio:.{decimals - 1}f}"
        assert below_four_fifths(float(shorter)) != below_four_fifths(ratio), text


def test_ratio_text_examples() -> None:
    assert ratio_text(0.7996) == "0.7996"
    assert ratio_text(0.79996) == "0.79996"
    assert ratio_text(0.7994) == "0.799"
    assert ratio_text(0.8) == "0.800"
    assert ratio_text(float(np.nextafter(FOUR_FIFTHS, 0.0))) == "0.7999999999999999"
