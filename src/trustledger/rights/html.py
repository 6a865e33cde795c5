"""The subject's report as one printable, self-contained HTML page (Jinja2).

No external assets: styles are inline, charts are inline SVG drawn here from
the report's own numbers, nothing is fetched. Printing it (or "save as PDF" in
any browser) gives the printable version; ``@media print`` rules lay it out on
A4. Everything from the ledger is escaped (autoescape).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

import jinja2
from markupsafe import Markup

from trustledger.engine.reasons import plain, signed
from trustledger.rights.report import Report

_WIDTH, _HEIGHT = 720, 180
_SPARK_WIDTH, _SPARK_HEIGHT = 96, 20


@dataclass(frozen=True, slots=True)
class _Chart:
    name: str
    points: str
    width: int
    height: int
    low: str
    high: str
    last: str


def _environment() -> jinja2.Environment:
    template = resources.files("trustledger.rights").joinpath("templates/report.html.j2")
    env = jinja2.Environment(
        loader=jinja2.DictLoader({"report.html.j2": template.read_text(encoding="utf-8")}),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(day=_day, moment=_moment, num=_num, pts=_points, sparkline=_sparkline)
    return env


def report_html(report: Report) -> str:
    """The report as a complete, self-contained HTML document."""
    template = _environment().get_template("report.html.j2")
    names = [s.name for s in report.scorecards]
    return template.render(r=report, charts=[_chart(report, n) for n in names], card_names=names)


def _day(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).date().isoformat()


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _num(value: float | None) -> str:
    return "—" if value is None else plain(value)


def _points(value: float | None) -> str:
    return "—" if value is None else signed(value)


def _scale(values: Sequence[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    return low, high


def _chart(report: Report, name: str) -> _Chart:
    pairs = [(p.at.timestamp(), p.scores.get(name)) for p in report.history]
    known = [(t, v) for t, v in pairs if v is not None]
    if not known:
        return _Chart(name, "", _WIDTH, _HEIGHT, "", "", "")
    low, high = _scale([v for _, v in known])
    first, last = known[0][0], known[-1][0]
    span = max(last - first, 1.0)
    pad = 18
    points = " ".join(
        f"{pad + (t - first) / span * (_WIDTH - 2 * pad):.1f},"
        f"{pad + (high - v) / (high - low) * (_HEIGHT - 2 * pad):.1f}"
        for t, v in known
    )
    return _Chart(name, points, _WIDTH, _HEIGHT, plain(low), plain(high), plain(known[-1][1]))


def _sparkline(values: Sequence[float | None]) -> Markup:
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(known) < 2:
        return Markup("")
    low, high = _scale([v for _, v in known] + [0.0])
    count = max(len(values) - 1, 1)
    points = " ".join(
        f"{i / count * (_SPARK_WIDTH - 2) + 1:.1f},"
        f"{(high - v) / (high - low) * (_SPARK_HEIGHT - 2) + 1:.1f}"
        for i, v in known
    )
    zero = (high - 0.0) / (high - low) * (_SPARK_HEIGHT - 2) + 1
    # Only numbers computed here go into the markup.
    return Markup(
        f'<svg width="{_SPARK_WIDTH}" height="{_SPARK_HEIGHT}" viewBox="0 0 {_SPARK_WIDTH} '
        f'{_SPARK_HEIGHT}" role="img" aria-label="points over time">'
        f'<line x1="0" x2="{_SPARK_WIDTH}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#d5dae0"/>'
        f'<polyline fill="none" stroke="#1b1f24" stroke-width="1.2" points="{points}"/></svg>'
    )
