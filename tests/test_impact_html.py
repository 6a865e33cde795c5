"""The impact HTML page: months labelled by date, nothing drawn outside an SVG's viewBox,
and the documented ``--compare`` example runs as written in docs/impact.md."""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.policies.support import example
from trustledger.cli import app
from trustledger.impact import default_scenario, simulate
from trustledger.impact.html import bar_chart, html_page, line_chart, month_labels
from trustledger.policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])")

# Deliberately independent of html.py's own estimate: a character of the default sans-serif
# fonts at size s is at most about 0.6 s wide on average for these labels.
EM = 0.6


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    policy = example("sesame")
    return simulate(policy, default_scenario(policy), subjects=300, months=26, seed=1,
                    probe_months=3, sample=20)


def _svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", page, flags=re.S)]


def _box(svg: ET.Element) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in svg.attrib["viewBox"].split())
    return x, y, x + w, y + h


def _extent(text: ET.Element) -> tuple[float, float, float, float]:
    """Where a <text> is drawn: (left, top, right, baseline), width estimated."""
    x, y = float(text.attrib["x"]), float(text.attrib["y"])
    size = float(text.attrib.get("font-size", "16"))
    width = len(text.text or "") * size * EM
    anchor = text.attrib.get("text-anchor", "start")
    left = x - width / 2 if anchor == "middle" else x - width if anchor == "end" else x
    return left, y - size, left + width, y


def _x_tick_labels(svg: ET.Element) -> list[str]:
    """Labels drawn just under the x axis (centred, font 10, below the lowest gridline)."""
    axis = max((float(line.attrib["y1"]) for line in svg.iter(f"{SVG}line")
                if line.attrib["y1"] == line.attrib["y2"]), default=None)
    if axis is None:  # a bar chart: no x axis
        return []
    return [t.text or "" for t in svg.iter(f"{SVG}text")
            if t.attrib.get("text-anchor") == "middle" and t.attrib.get("font-size") == "10"
            and axis < float(t.attrib["y"]) < axis + 20]


def test_month_labels_count_calendar_months_from_the_start() -> None:
    assert month_labels("2025-11-15", 4) == ["2025-11", "2025-12", "2026-01", "2026-02"]
    assert month_labels("2025-01-15", 25)[-1] == "2027-01"
    assert month_labels("2025-01-15", 0) == []


def test_months_are_labelled_by_date_from_the_report_start(report: dict[str, Any]) -> None:
    dates = [row["date"][:7] for row in report["scorecards"]["sesame"]["months"]]
    assert month_labels(report["start"], report["months"]) == dates
    svgs = [s for s in _svgs(html_page(report)) if _x_tick_labels(s)]
    assert len(svgs) >= 4  # score, Gini, tiers, measures
    for svg in svgs:
        labels = _x_tick_labels(svg)
        assert all(DATE.fullmatch(label) for label in labels), labels
        assert labels[0] == report["start"][:7] and set(labels) <= set(dates)


def test_every_label_of_every_chart_lies_inside_its_viewbox(report: dict[str, Any]) -> None:
    svgs = _svgs(html_page(report))
    assert len(svgs) >= 6
    for svg in svgs:
        left, top, right, bottom = _box(svg)
        assert (float(svg.attrib["width"]), float(svg.attrib["height"])) == (right - left,
                                                                              bottom - top)
        for text in svg.iter(f"{SVG}text"):
            x0, y0, x1, y1 = _extent(text)
            assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom, \
                (svg.attrib["aria-label"], text.text, (x0, y0, x1, y1), (left, right))


@pytest.mark.parametrize("values", [[0.004, 0.009], [0.0001, 123456.0], [-5.0, -0.5],
                                    [1e-7, 3e-7]])
def test_long_tick_and_legend_labels_widen_the_margins(values: list[float]) -> None:
    legend = "a_rather_long_measure_name_for_a_legend"
    charts = [line_chart("t", [(legend, values), ("b", values[::-1])],
                         x_labels=month_labels("2025-12-15", 2)),
              bar_chart("t", ["an_unusually_long_event_type_name"], [(legend, [values[1]])],
                        missing="not within 120 months"),
              bar_chart("t", ["x"], [("median", [None])], missing="not within 120 months")]
    for svg in (ET.fromstring(c) for c in charts):
        left, top, right, bottom = _box(svg)
        for text in svg.iter(f"{SVG}text"):
            x0, y0, x1, y1 = _extent(text)
            assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom, text.text


def _documented_compare() -> list[str]:
    """The ``--compare`` example command of docs/impact.md, as an argument list."""
    text = (ROOT / "docs" / "impact.md").read_text(encoding="utf-8")
    block = text[text.index("## Comparing two policies"):]
    block = block[block.index("```bash\n") + 8:]
    command = block[:block.index("```")].replace("\\\n", " ")
    args = shlex.split(command)
    assert args[:3] == ["trustledger", "impact", "--compare"], args
    return args[1:]


def test_the_documented_compare_example_runs_and_names_both_policies(tmp_path: Path) -> None:
    args = _documented_compare()
    a, b = args[2], args[3]
    assert b.startswith("policies/examples/")
    page = Path(args[args.index("--html") + 1]).name
    args = [str(ROOT / x) if x.endswith(".yaml") else str(tmp_path / x) if x == page else x
            for x in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    names = [load_policy(ROOT / f).name for f in (a, b)]
    assert names == ["sesame", "sesame_lenient"]
    assert f"A: {names[0]}" in result.output and f"B: {names[1]}" in result.output
    html = (tmp_path / page).read_text(encoding="utf-8")
    assert f"Impact of {names[0]} and {names[1]}" in html
    assert f"<code>{names[0]}</code>" in html and f"<code>{names[1]}</code>" in html
    assert html.count(">2025-01</text>") >= 8  # both policies' charts start at sesame's start


def test_the_example_variant_differs_from_sesame_only_in_the_late_repayment_penalty() -> None:
    sesame = load_policy(ROOT / "policies" / "sesame.yaml")
    variant = load_policy(ROOT / "policies" / "examples" / "sesame_lenient.yaml")
    assert variant.name != sesame.name and variant.hash != sesame.hash
    assert set(variant.event_types) == set(sesame.event_types)
    assert set(variant.measures) == set(sesame.measures)
    assert set(variant.scorecards) == set(sesame.scorecards)
