"""Charts drawn on the server as inline SVG: no script, nothing fetched, printable.

* :func:`score_chart` — a scorecard's score over time on one dated axis
  (:func:`date_ticks`), the tier bands behind it, each policy version's effective date
  marked (no line before the first), and the subject's events marked along the time
  axis and on the line (adverse red, favourable green, not counting grey), each with a
  tooltip;
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
from itertools import pairwise

from markupsafe import Markup, escape

from trustledger.engine.reasons import plain, signed
from trustledger.policy.compiled import CompiledScorecard

WIDTH, HEIGHT = 480, 250
"""The score chart's drawing size: narrow, so its words stay legible on a phone."""
BAR_WIDTH = 720
"""The bar charts' drawing width (the operator's page)."""
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 10, 16, 50
_FONT = 12
_BANDS = ("#fbe9e9", "#fdf3e1", "#f4f6e4", "#e6f3ea", "#e3eef8", "#eee8f6")
ADVERSE, FAVOURABLE, NEUTRAL, INK, MUTED = "#a4262c", "#1e6b3a", "#6b7480", "#1b1f24", "#4a525c"
POLICY = "#0b4f8a"
"""The colour of a policy version's effective-date mark."""
_MONTHS = (1, 2, 3, 6, 12, 24, 60, 120, 240, 600, 1200, 2400, 6000, 12000, 24000, 60000)
_DAYS = (1, 2, 7, 14)
MAX_TICKS = 5
"""At most this many dated ticks on the time axis."""


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
_LATEST = datetime.max.replace(tzinfo=UTC)


def _day(value: datetime) -> str:
    return value.astimezone(UTC).date().isoformat()


def score_chart(card: CompiledScorecard, points: Sequence[tuple[datetime, float | None]],
                marks: Sequence[Mark], now: datetime, chart_id: str,
                policies: Sequence[tuple[datetime, str]] = ()) -> Markup:
    """The score of ``card`` over time with its tier bands (thresholds as of ``now``) and events.

    One date axis with at most :data:`MAX_TICKS` dated ticks; ``policies`` (each
    version's ``effective_from`` and name, in publication order) are marked by a
    dashed line, and the time
    before the first of them is shaded "no policy": there is no score to draw there.
    The line is broken where there is no score (``None``), never drawn flat across.
    """
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
        if y1 - y0 >= _FONT:  # a band too thin for its name is named by its tooltip
            parts.append(f'<text x="{_LEFT + plot_w - 4}" y="{(y0 + y1) / 2 + 4:.1f}" '
                         f'font-size="{_FONT - 1}" text-anchor="end" fill="{MUTED}">'
                         f'{escape(tier.label or tier.name)}</text>')
    for tick in _ticks(low, high):
        parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y(tick):.1f}" '
                     f'y2="{y(tick):.1f}" stroke="#c9cfd6" stroke-width="0.5"/>'
                     f'<text x="{_LEFT - 4}" y="{y(tick) + 4:.1f}" font-size="{_FONT}" '
                     f'text-anchor="end" fill="{MUTED}">{plain(tick)}</text>')
    axis = _TOP + plot_h
    for moment, label in date_ticks(begins, ends):
        tx = x(moment.timestamp())
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{_TOP}" y2="{axis + 4}" '
                     f'stroke="#c9cfd6" stroke-width="0.5"/>'
                     f'<text x="{tx:.1f}" y="{HEIGHT - 4}" font-size="{_FONT}" '
                     f'text-anchor="middle" fill="{MUTED}">{escape(label)}</text>')
    effective = sorted({t for t, _ in policies})
    if effective and effective[0] > begins:
        gap = x(min(effective[0], ends).timestamp()) - _LEFT
        parts.append(f'<rect class="no-policy" x="{_LEFT}" y="{_TOP}" width="{gap:.1f}" '
                     f'height="{plot_h}" fill="#eef0f2"><title>no policy in force before '
                     f'{_day(effective[0])}: no score</title></rect>')
        if gap >= 70:  # room to say so
            parts.append(f'<text x="{_LEFT + gap / 2:.1f}" y="{_TOP + plot_h / 2:.1f}" '
                         f'font-size="{_FONT - 1}" text-anchor="middle" fill="{MUTED}">'
                         'no policy yet</text>')
    # Of two versions effective the same day the later published is in force: one mark.
    for when, name in sorted(dict(policies).items()):
        if not begins <= when <= ends:
            continue
        px = x(when.timestamp())
        anchor = "start" if px < _LEFT + plot_w / 2 else "end"
        nudge = 3 if anchor == "start" else -3
        parts.append(f'<g class="policy-mark"><line x1="{px:.1f}" x2="{px:.1f}" y1="{_TOP}" '
                     f'y2="{axis}" stroke="{POLICY}" stroke-width="1.5" stroke-dasharray="4 3"/>'
                     f'<text x="{px + nudge:.1f}" y="{_TOP - 4}" font-size="{_FONT - 1}" '
                     f'text-anchor="{anchor}" fill="{POLICY}">{escape(name)} from '
                     f'{_day(when)}</text><title>policy {escape(name)} in force from '
                     f'{_day(when)}</title></g>')
    segments = _segments(points)
    on_line: list[str] = []
    for mark in marks:
        colour = NEUTRAL if not mark.counts else (ADVERSE if mark.adverse else FAVOURABLE)
        mx = x(mark.at.timestamp())
        what = f"event {mark.seq}: " if mark.seq is not None else ""
        pts = f", {signed(mark.points)} points" if mark.points is not None else ""
        state = "" if mark.counts else ", not counting"
        level = _line_at(segments, mark.at)
        if level is not None:  # where the line is when it happened (drawn over the line)
            on_line.append(f'<g class="on-line"><circle cx="{mx:.1f}" cy="{y(level):.1f}" r="4" '
                           f'fill="#fff" stroke="{colour}" stroke-width="2"/><title>'
                           f'{escape(what + mark.type)} on {_day(mark.at)}{pts}{state}</title>'
                           '</g>')
        parts.append(f'<g class="mark"><line x1="{mx:.1f}" x2="{mx:.1f}" y1="{axis}" '
                     f'y2="{axis + 12}" stroke="{colour}" stroke-width="2"/>'
                     f'<circle cx="{mx:.1f}" cy="{axis + 15}" r="3.5" fill="{colour}"/>'
                     f'<title>{escape(what + mark.type)} on {_day(mark.at)}{pts}{state}</title>'
                     '</g>')
    for segment in segments:
        line = " ".join(f"{x(t.timestamp()):.1f},{y(v):.1f}" for t, v in segment)
        parts.append(f'<polyline fill="none" stroke="{INK}" stroke-width="2" points="{line}"/>')
    for t, v in known:
        parts.append(f'<circle cx="{x(t.timestamp()):.1f}" cy="{y(v):.1f}" r="2.5" '
                     f'fill="{INK}"><title>{_day(t)}: {plain(v)}</title></circle>')
    parts.extend(on_line)
    parts.append(f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" '
                 'fill="none" stroke="#9aa3ad"/>')
    last = plain(values[-1]) if values else "none"
    title = f"{escape(card.label or card.name)} over time"
    desc = (f"{len(known)} points from {_day(begins)} to "
            f"{_day(ends)}; latest {last}; {len(marks)} events "
            "marked below the axis; tier bands shaded behind"
            + (f"; policy in force from {_day(effective[0])}" if effective else "") + ".")
    return Markup(
        f'<svg class="chart score" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'role="img" '
        f'aria-labelledby="{escape(chart_id)}-t {escape(chart_id)}-d">'
        f'<title id="{escape(chart_id)}-t">{title}</title>'
        f'<desc id="{escape(chart_id)}-d">{escape(desc)}</desc>{"".join(parts)}</svg>')


def bar_chart(bars: Sequence[Bar], title: str, chart_id: str, k: int | None = None) -> Markup:
    """Vertical bars labelled below; a suppressed bar (``value=None``) is hatched, ``<k``."""
    height = 180
    top, bottom, left = 16, 30, 48
    plot_h = height - top - bottom
    width = BAR_WIDTH
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


def _segments(points: Sequence[tuple[datetime, float | None]]
              ) -> list[list[tuple[datetime, float]]]:
    """Runs of consecutive known values: the line breaks where there is no score."""
    out: list[list[tuple[datetime, float]]] = [[]]
    for t, v in points:
        if v is None:
            if out[-1]:
                out.append([])
        else:
            out[-1].append((t, v))
    return [run for run in out if run]


def _line_at(segments: Sequence[Sequence[tuple[datetime, float]]], at: datetime
             ) -> float | None:
    """The line's height at ``at`` (between two of its points), ``None`` off the line."""
    for run in segments:
        for (t0, v0), (t1, v1) in pairwise(run):
            if t0 <= at <= t1:
                share = (at - t0) / (t1 - t0) if t1 > t0 else 0.0
                return v0 + (v1 - v0) * share
        if len(run) == 1 and run[0][0] == at:
            return run[0][1]
    return None


def date_ticks(begins: datetime, ends: datetime) -> list[tuple[datetime, str]]:
    """At most :data:`MAX_TICKS` round dates between ``begins`` and ``ends``, with labels.

    Days (every 1, 2, 7 or 14) for a span under two months, else month starts (every
    1, 2, 3 or 6 months) or year starts (every 1, 2, 5, 10, … years); never past the
    year 9999.
    """
    span = ends - begins
    if span < timedelta(days=60):
        days = next((d for d in _DAYS if span / timedelta(days=d) <= MAX_TICKS), _DAYS[-1])
        moment = datetime(begins.year, begins.month, begins.day, tzinfo=UTC)
        out: list[tuple[datetime, str]] = []
        while len(out) <= MAX_TICKS:
            if moment >= begins and moment <= ends:
                out.append((moment, moment.strftime("%d %b %Y" if not out else "%d %b")))
            if moment > ends or _LATEST - moment < timedelta(days=days):
                break
            moment += timedelta(days=days)
        return out[:MAX_TICKS]
    months = (ends.year - begins.year) * 12 + ends.month - begins.month
    step = next((m for m in _MONTHS if months / m <= MAX_TICKS), _MONTHS[-1])
    index = begins.year * 12 + begins.month - 1  # months since year 0
    if datetime(begins.year, begins.month, 1, tzinfo=UTC) < begins:
        index += 1
    index += -index % step
    out = []
    while len(out) < MAX_TICKS:
        year, month = divmod(index, 12)
        if year > 9999:
            break
        moment = datetime(year, month + 1, 1, tzinfo=UTC)
        if moment > ends:
            break
        out.append((moment, moment.strftime("%Y") if step >= 12 else moment.strftime("%b %Y")))
        index += step
    return out
