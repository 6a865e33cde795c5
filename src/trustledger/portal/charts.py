"""Charts drawn on the server as inline SVG: no script, nothing fetched, printable.

* :func:`score_chart` — a scorecard's score over time, the tier bands behind it and
  the subject's events marked along the time axis (adverse red, favourable green,
  not counting grey), each with a tooltip;
* :func:`bar_chart` — labelled bars (the operator's histograms and daily counts),
  a suppressed cell drawn hatched and labelled ``<k`` instead of its count.

Only numbers computed here and text escaped by :func:`markupsafe.escape` go into the
markup. Every chart is ``role="img"`` with a title and a description; the pages
show the same numbers in a table as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape

from trustledger.engine.reasons import plain, signed
from trustledger.policy.compiled import CompiledScorecard

WIDTH, HEIGHT = 720, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 110, 12, 44
_BANDS = ("#fbe9e9", "#fdf3e1", "#f4f6e4", "#e6f3ea", "#e3eef8", "#eee8f6")
ADVERSE, FAVOURABLE, NEUTRAL, INK, MUTED = "#a4262c", "#1e6b3a", "#6b7480", "#1b1f24", "#4a525c"


@dataclass(frozen=True, slots=True)
class Mark:
    """An event on the time axis: when, its ledger seq and type, points, and whether adverse."""

    at: datetime
    seq: int | None
    type: str
    points: float | None
    adverse: bool | None
    counts: bool


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: a label and a count (``None``: suppressed, drawn hatched)."""

    label: str
    value: int | None


_DAY = timedelta(days=1)
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def _day(value: datetime) -> str:
    return value.astimezone(UTC).date().isoformat()


def score_chart(card: CompiledScorecard, points: Sequence[tuple[datetime, float | None]],
                marks: Sequence[Mark], now: datetime, chart_id: str) -> Markup:
    """The score of ``card`` over time with its tier bands (thresholds as of ``now``) and events."""
    known = [(t, v) for t, v in points if v is not None]
    moments = [t for t, _ in known] + [m.at for m in marks]
    # The axis ends are dates, not timestamps: a float timestamp of 9999-12-31T23:59:59.999999
    # rounds into year 10000, which no date can show.
    begins = min(moments) if moments else now
    ends = max([now, *moments])
    if ends - begins < _DAY:
        begins = ends - _DAY if ends - _EARLIEST >= _DAY else _EARLIEST
        ends = max(ends, begins + _DAY)
    start, end = begins.timestamp(), ends.timestamp()
    values = [v for _, v in known]
    low = card.floor if card.floor is not None else (min(values) - 50 if values else 0.0)
    high = card.ceiling if card.ceiling is not None else (max(values) + 50 if values else 1.0)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM

    def x(ts: float) -> float:
        return _LEFT + (ts - start) / (end - start) * plot_w

    def y(value: float) -> float:
        value = min(max(value, low), high)
        return _TOP + (high - value) / (high - low) * plot_h

    parts: list[str] = []
    at = now.timestamp()
    bounds = [t.min_at(at) for t in card.tiers]
    for rank, tier in enumerate(card.tiers):
        own = bounds[rank]
        bottom: float = own if own is not None else low
        above = [b for b in bounds[rank + 1:] if b is not None]
        top: float = min(above) if above else high
        if top <= low or bottom >= high or top <= bottom:
            continue
        y0, y1 = y(top), y(bottom)
        parts.append(f'<rect x="{_LEFT}" y="{y0:.1f}" width="{plot_w}" height="{y1 - y0:.1f}" '
                     f'fill="{_BANDS[rank % len(_BANDS)]}"><title>tier {escape(tier.name)} '
                     f'({escape(tier.label)})</title></rect>')
        parts.append(f'<text x="{_LEFT + plot_w + 6}" y="{(y0 + y1) / 2 + 4:.1f}" '
                     f'font-size="11" fill="{MUTED}">{escape(tier.label or tier.name)}</text>')
    for tick in _ticks(low, high):
        parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y(tick):.1f}" '
                     f'y2="{y(tick):.1f}" stroke="#c9cfd6" stroke-width="0.5"/>'
                     f'<text x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" font-size="11" '
                     f'text-anchor="end" fill="{MUTED}">{plain(tick)}</text>')
    parts.append(f'<text x="{_LEFT}" y="{HEIGHT - 4}" font-size="11" fill="{MUTED}">'
                 f'{_day(begins)}</text>'
                 f'<text x="{_LEFT + plot_w}" y="{HEIGHT - 4}" font-size="11" '
                 f'text-anchor="end" fill="{MUTED}">{_day(ends)}'
                 '</text>')
    axis = _TOP + plot_h
    for mark in marks:
        colour = NEUTRAL if not mark.counts else (ADVERSE if mark.adverse else FAVOURABLE)
        mx = x(mark.at.timestamp())
        what = f"event {mark.seq}: " if mark.seq is not None else ""
        pts = f", {signed(mark.points)} points" if mark.points is not None else ""
        state = "" if mark.counts else ", not counting"
        parts.append(f'<g class="mark"><line x1="{mx:.1f}" x2="{mx:.1f}" y1="{axis}" '
                     f'y2="{axis + 12}" stroke="{colour}" stroke-width="2"/>'
                     f'<circle cx="{mx:.1f}" cy="{axis + 15}" r="3.5" fill="{colour}"/>'
                     f'<title>{escape(what + mark.type)} on {_day(mark.at)}{pts}{state}</title>'
                     '</g>')
    if known:
        line = " ".join(f"{x(t.timestamp()):.1f},{y(v):.1f}" for t, v in known)
        parts.append(f'<polyline fill="none" stroke="{INK}" stroke-width="2" points="{line}"/>')
        for t, v in known:
            parts.append(f'<circle cx="{x(t.timestamp()):.1f}" cy="{y(v):.1f}" r="2.5" '
                         f'fill="{INK}"><title>{_day(t)}: {plain(v)}</title></circle>')
    parts.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" '
                 'fill="none" stroke="#9aa3ad"/>')
    last = plain(values[-1]) if values else "none"
    title = f"{escape(card.label or card.name)} over time"
    desc = (f"{len(known)} points from {_day(begins)} to "
            f"{_day(ends)}; latest {last}; {len(marks)} events "
            "marked below the axis; tier bands shaded behind.")
    return Markup(
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d">'
        f'<title id="{escape(chart_id)}-t">{title}</title>'
        f'<desc id="{escape(chart_id)}-d">{escape(desc)}</desc>{"".join(parts)}</svg>')


def bar_chart(bars: Sequence[Bar], title: str, chart_id: str, k: int | None = None) -> Markup:
    """Vertical bars labelled below; a suppressed bar (``value=None``) is hatched, ``<k``."""
    height = 180
    top, bottom, left = 16, 30, 48
    plot_h = height - top - bottom
    width = WIDTH
    step = (width - left - 10) / max(1, len(bars))
    biggest = max([b.value for b in bars if b.value is not None] + [k or 1, 1])
    parts = [f'<defs><pattern id="{escape(chart_id)}-hatch" width="6" height="6" '
             'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
             f'<line x1="0" y1="0" x2="0" y2="6" stroke="{NEUTRAL}" stroke-width="2"/>'
             '</pattern></defs>']
    every = max(1, len(bars) // 8)
    for i, bar in enumerate(bars):
        bx = left + i * step + 1
        bw = max(1.0, step - 2)
        if bar.value is None:
            h = plot_h * (k or 1) / biggest
            fill = f'url(#{escape(chart_id)}-hatch)'
            text = f"{escape(bar.label)}: suppressed (fewer than {k})"
        else:
            h = plot_h * bar.value / biggest
            fill = "#2f5d8a"
            text = f"{escape(bar.label)}: {bar.value:,}"
        parts.append(f'<rect x="{bx:.1f}" y="{top + plot_h - h:.1f}" width="{bw:.1f}" '
                     f'height="{h:.1f}" fill="{fill}"><title>{text}</title></rect>')
        if bar.value is None:
            parts.append(f'<text x="{bx + bw / 2:.1f}" y="{top + plot_h - h - 3:.1f}" '
                         f'font-size="10" text-anchor="middle" fill="{INK}">&lt;{k}</text>')
        if i % every == 0:
            parts.append(f'<text x="{bx + bw / 2:.1f}" y="{height - bottom + 14}" '
                         f'font-size="10" text-anchor="middle" fill="{MUTED}">'
                         f'{escape(bar.label)}</text>')
    parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{top + plot_h}" y2="{top + plot_h}" '
                 f'stroke="{MUTED}"/><text x="{left - 4}" y="{top + 8}" font-size="10" '
                 f'text-anchor="end" fill="{MUTED}">{biggest:,}</text>')
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}">{"".join(parts)}</svg>')


def _ticks(low: float, high: float) -> list[float]:
    span = high - low
    step = 10 ** max(0, len(str(int(span))) - 1)
    for factor in (1, 2, 5, 10):
        if span / (step * factor) <= 7:
            step *= factor
            break
    first = -(-low // step) * step
    out = []
    value = first
    while value <= high + 1e-9:
        out.append(value)
        value += step
    return out
