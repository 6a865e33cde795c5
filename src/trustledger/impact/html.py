"""An impact report as one self-contained HTML page with server-side SVG charts.

No script, no font, no stylesheet from anywhere else: the page opens offline. Charts:
score quantiles over time, Gini over time, tier shares over time, mobility per year and
the transition matrix, group shares per measure, crossings and recovery per event type.
Only the aggregate report is read; suppressed cells are drawn as gaps and labelled ``<10``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from trustledger.impact.report import (
    SUPPRESSED,
    comparison_rows,
    measure_rows,
    population_line,
    transition_table,
)

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf",
            "#7f7f7f")
_W = 560
"""A chart's usual width; wider when its labels need more room."""
_TOP, _PLOT_H, _MIN_PLOT_W = 30, 150, 280
_FONT = 10
_EM = 0.68
"""Width of a character in ems, an upper bound for the default sans-serif fonts: the page has
no font metrics server-side, so every margin is computed from this estimate."""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;
text-align:right}th:first-child,td:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(560px,100%),1fr));gap:1rem}
.grid>div{min-width:0}.note{color:#555;font-size:.9rem;overflow-wrap:anywhere}
svg{background:#fafafa;border:1px solid #eee;max-width:100%;height:auto}
.bad{color:#b00;font-weight:bold}
td:last-child{text-align:left}
"""


def text_width(text: str, size: float = _FONT) -> float:
    """An upper estimate of the width in pixels of ``text`` at font ``size``."""
    return len(text) * size * _EM


def month_labels(start: str, months: int) -> list[str]:
    """``YYYY-MM`` of each simulated month, from the report's ``start`` (``YYYY-MM-DD``)."""
    year, month = int(start[:4]), int(start[5:7])
    out = []
    for m in range(months):
        y, k = divmod(month - 1 + m, 12)
        out.append(f"{year + y:04d}-{k + 1:02d}")
    return out


def _ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """About five round y ticks covering [low, high], and their labels."""
    raw = (high - low) / 4 or 1.0
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9) + (1 if step / magnitude == 2.5
                                                              else 0))
    values = [k * step for k in range(first, last + 1)]
    return values, [f"{round(v, decimals) + 0.0:,.{decimals}f}" for v in values]


def _x_ticks(labels: Sequence[str], plot_w: float) -> list[int]:
    """Indices of the x labels to draw: a round step in months whose labels do not touch."""
    n = len(labels)
    widest = max((text_width(s) for s in labels), default=0.0)
    for step in (1, 2, 3, 6, 12, 24, 60, 120, 240):
        if n <= 1 or plot_w * step / (n - 1) >= widest + 16:
            return list(range(0, n, step))
    return [0]


class _Frame:
    """A line chart's geometry: margins sized to its tick labels, legend and title."""

    def __init__(self, title: str, y_labels: Sequence[str], legend: Sequence[str],
                 x_labels: Sequence[str]) -> None:
        half_x = max((text_width(s) for s in x_labels[-1:]), default=0.0) / 2
        half_first = max((text_width(s) for s in x_labels[:1]), default=0.0) / 2
        self.left = max(36.0, half_first + 6, 10 + max(text_width(s) for s in y_labels) + 6)
        self.right = max(half_x + 6, 12 + max((text_width(s) for s in legend), default=0.0))
        self.width = max(float(_W), self.left + _MIN_PLOT_W + self.right,
                         text_width(title, 13) + 16)
        self.plot_w = self.width - self.left - self.right
        self.bottom = _TOP + max(_PLOT_H, 12 * len(legend))
        self.height = self.bottom + 40

    def x(self, i: float, n: int) -> float:
        """The x of month ``i`` of ``n``."""
        return self.left + self.plot_w * (i / max(1, n - 1))

    def y(self, v: float, low: float, high: float) -> float:
        """The y of value ``v`` on an axis from ``low`` to ``high``."""
        span = (high - low) or 1.0
        return self.bottom - (self.bottom - _TOP) * ((v - low) / span)


def _open(title: str, width: float, height: float) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" '
            f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
            f'aria-label="{escape(title)}"><text x="{width / 2:.1f}" y="16" '
            f'text-anchor="middle" font-size="13">{escape(title)}</text>')


def _axes(frame: _Frame, ticks: Sequence[float], tick_labels: Sequence[str],
          x_labels: Sequence[str], x_label: str, title: str) -> list[str]:
    low, high, n = ticks[0], ticks[-1], len(x_labels)
    right = frame.left + frame.plot_w
    out = [_open(title, frame.width, frame.height),
           f'<line x1="{frame.left:.1f}" y1="{frame.bottom}" x2="{right:.1f}" '
           f'y2="{frame.bottom}" stroke="#888"/>',
           f'<line x1="{frame.left:.1f}" y1="{_TOP}" x2="{frame.left:.1f}" '
           f'y2="{frame.bottom}" stroke="#888"/>',
           f'<text x="{frame.left + frame.plot_w / 2:.1f}" y="{frame.height - 6}" '
           f'text-anchor="middle" font-size="11">{escape(x_label)}</text>']
    for v, label in zip(ticks, tick_labels, strict=True):
        y = frame.y(v, low, high)
        out.append(f'<text x="{frame.left - 5:.1f}" y="{y + 3.5:.1f}" text-anchor="end" '
                   f'font-size="{_FONT}">{escape(label)}</text>')
        out.append(f'<line x1="{frame.left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" '
                   'stroke="#eee"/>')
    for k in _x_ticks(x_labels, frame.plot_w):
        x = frame.x(k, n)
        out.append(f'<line x1="{x:.1f}" y1="{frame.bottom}" x2="{x:.1f}" '
                   f'y2="{frame.bottom + 4}" stroke="#888"/>')
        out.append(f'<text x="{x:.1f}" y="{frame.bottom + 16}" text-anchor="middle" '
                   f'font-size="{_FONT}">{escape(x_labels[k])}</text>')
    return out


def _path(frame: _Frame, values: Sequence[float | None], low: float, high: float) -> str:
    parts, pen = [], "M"
    for i, v in enumerate(values):
        if v is None:
            pen = "M"
            continue
        parts.append(f"{pen}{frame.x(i, len(values)):.1f},{frame.y(v, low, high):.1f}")
        pen = "L"
    return " ".join(parts)


def line_chart(title: str, series: Sequence[tuple[str, Sequence[float | None]]],
               bands: Sequence[tuple[Sequence[float | None], Sequence[float | None], str]] = (),
               x_label: str = "month", low: float | None = None,
               high: float | None = None, x_labels: Sequence[str] | None = None) -> str:
    """An SVG line chart over months with optional shaded bands (low, high, colour).

    ``x_labels`` names each month (e.g. :func:`month_labels`); without it months are
    numbered from 1. The viewBox holds every tick label, the legend and the title.
    """
    values = [v for _, s in series for v in s if v is not None]
    values += [v for lo, hi, _ in bands for v in (*lo, *hi) if v is not None]
    if not values:
        return f"<p class=note>{escape(title)}: no data (all cells suppressed)</p>"
    lo_v = min(values) if low is None else low
    hi_v = max(values) if high is None else high
    if hi_v == lo_v:
        hi_v = lo_v + 1
    n = max(len(s) for _, s in series) if series else len(bands[0][0])
    names = list(x_labels) if x_labels is not None else [str(k + 1) for k in range(n)]
    if len(names) != n:
        raise ValueError(f"{title}: {len(names)} x labels for {n} months")
    ticks, tick_labels = _ticks(lo_v, hi_v)
    lo_v, hi_v = ticks[0], ticks[-1]
    frame = _Frame(title, tick_labels, [label for label, _ in series], names)
    out = _axes(frame, ticks, tick_labels, names, x_label, title)
    for lo, hi, colour in bands:
        pts = [(i, a, b) for i, (a, b) in enumerate(zip(lo, hi, strict=True))
               if a is not None and b is not None]
        if pts:
            top = " ".join(f"{frame.x(i, n):.1f},{frame.y(b, lo_v, hi_v):.1f}"
                           for i, _, b in pts)
            bottom = " ".join(f"{frame.x(i, n):.1f},{frame.y(a, lo_v, hi_v):.1f}"
                              for i, a, _ in reversed(pts))
            out.append(f'<polygon points="{top} {bottom}" fill="{colour}" '
                       'fill-opacity="0.18" stroke="none"/>')
    for k, (label, s) in enumerate(series):
        colour = _COLOURS[k % len(_COLOURS)]
        out.append(f'<path d="{_path(frame, s, lo_v, hi_v)}" fill="none" stroke="{colour}" '
                   'stroke-width="1.8"/>')
        out.append(f'<text x="{frame.left + frame.plot_w + 8:.1f}" y="{_TOP + 8 + 12 * k}" '
                   f'font-size="{_FONT}" fill="{colour}">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(title: str, labels: Sequence[str],
              series: Sequence[tuple[str, Sequence[float | None]]],
              missing: str = SUPPRESSED) -> str:
    """Grouped horizontal bars (one group per label); ``None`` is drawn as ``missing``.

    The viewBox holds every label, value, ``missing`` text, the legend and the title.
    """
    values = [v for _, s in series for v in s if v is not None]
    high = max(values) if values else 1.0
    high = high or 1.0
    row = 14 * max(1, len(series)) + 8
    height = 30 + row * len(labels) + 14 * len(series) + 6
    left = max(60.0, 12 + max((text_width(s, 11) for s in labels), default=0.0))
    value_room = 8 + max([text_width(f"{v:.4g}") for v in values] + [0.0])
    width = max(float(_W), left + 200 + value_room, left + text_width(missing) + 12,
                left + 20 + max((text_width(n) for n, _ in series), default=0.0),
                text_width(title, 13) + 16)
    bar_room = width - left - value_room
    out = [_open(title, width, height)]
    for i, label in enumerate(labels):
        y0 = 28 + i * row
        out.append(f'<text x="{left - 6:.1f}" y="{y0 + row / 2:.1f}" text-anchor="end" '
                   f'font-size="11">{escape(label)}</text>')
        for k, (_, s) in enumerate(series):
            v = s[i]
            y = y0 + 14 * k
            colour = _COLOURS[k % len(_COLOURS)]
            if v is None:
                out.append(f'<text x="{left + 2:.1f}" y="{y + 10}" font-size="{_FONT}">'
                           f'{escape(missing)}</text>')
                continue
            bar = bar_room * v / high
            out.append(f'<rect x="{left:.1f}" y="{y}" width="{bar:.1f}" height="11" '
                       f'fill="{colour}"/><text x="{left + bar + 4:.1f}" y="{y + 10}" '
                       f'font-size="{_FONT}">{v:.4g}</text>')
    for k, (name, _) in enumerate(series):
        y = height - 14 * (len(series) - k) + 2
        out.append(f'<text x="{left:.1f}" y="{y}" font-size="{_FONT}" '
                   f'fill="{_COLOURS[k % len(_COLOURS)]}">■ {escape(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _section(report: dict[str, Any]) -> str:
    out: list[str] = []
    p = report["policy"]
    out.append(f"<h2>{escape(p['title'])}</h2><p class=note>policy <code>{escape(p['name'])}"
               f"</code> {escape(p['hash'])}; scenario {escape(report['scenario']['name'])}; "
               f"{report['subjects']:,} subjects x {report['months']} months from "
               f"{escape(report['start'])}, seed {report['seed']}</p>")
    if "population" in report:
        out.append(f"<p class=note>{escape(population_line(report['population']))}</p>")
    for card, data in report["scorecards"].items():
        months = data["months"]
        dates = month_labels(report["start"], len(months))
        q = [r.get("quantiles") or {} for r in months]

        def col(key: str, q: list[dict[str, Any]] = q) -> list[float | None]:
            return [x.get(key) for x in q]
        out.append(f"<h3>Scorecard {escape(card)}</h3><div class=grid>")
        out.append(line_chart(f"{card}: score distribution (median; p25-p75, p5-p95)",
                              [("median", col("p50"))],
                              [(col("p5"), col("p95"), "#1f77b4"),
                               (col("p25"), col("p75"), "#1f77b4")], x_labels=dates))
        out.append(line_chart(f"{card}: Gini of scores",
                              [("Gini", [r.get("gini") for r in months])], x_labels=dates))
        if data["tiers"]:
            names = list(months[-1].get("tiers", {}))
            series = []
            for name in names:
                shares = []
                for r in months:
                    total = r.get("subjects")
                    c = (r.get("tiers") or {}).get(name)
                    shares.append(None if c is None or not total else c / total)
                series.append((name, shares))
            out.append(line_chart(f"{card}: share of subjects in each tier", series, low=0.0,
                                  x_labels=dates))
        mobility = data.get("mobility")
        if mobility:
            years = mobility["years"]
            out.append(bar_chart(f"{card}: share changing tier per year",
                                 [f"year {y['year']}" for y in years],
                                 [("changed", [y["changed_share"] for y in years]),
                                  ("up", [y["up_share"] for y in years]),
                                  ("down", [y["down_share"] for y in years])]))
        out.append("</div>")
        if mobility:
            out.append("<p class=note>Year-to-year transitions, pooled (row: tier a year "
                       "before; share of the row)</p>")
            out.append(_table(*transition_table(data)))
    if report["measures"]:
        groups = [g["name"] for g in report["groups"]]
        names = list(report["measures"])
        out.append("<h3>Measures by group (last month)</h3>")
        out.append(bar_chart("share of each group with the measure in force", names,
                             [(g, [report["measures"][m]["groups"][g]["share"] for m in names])
                              for g in groups]))
        out.append(_table(["measure", "kind", *groups, "impact ratio", "≥ 4/5"],
                          measure_rows(report)))
        out.append(line_chart("share with each measure in force",
                              [(m, report["measures"][m]["in_force_share_by_month"])
                               for m in names
                               if report["measures"][m]["in_force_share_by_month"]], low=0.0,
                              x_labels=month_labels(report["start"], report["months"])))
    probes = report["probes"]
    adverse = [t for t, pr in probes.items() if (pr.get("recovery") or {}).get("subjects")]
    out.append("<h3>One more event for everyone</h3>")
    if adverse:
        horizon = probes[adverse[0]]["recovery"]["horizon_months"]
        out.append(bar_chart("months until standing is back (no further events)", adverse,
                             [("median", [probes[t]["recovery"]["median_months"]
                                          for t in adverse]),
                              ("p90", [probes[t]["recovery"]["p90_months"] for t in adverse])],
                             missing=f"not within {horizon} months"))
    rows = []
    for t, pr in probes.items():
        crossings = [f"{card} {'↓' if k == 'down' else '↑'}{tier}: "
                     f"{SUPPRESSED if n is None else n}"
                     for card, tiers in pr["crossings"].items()
                     for tier, c in tiers.items() for k, n in c.items() if n != 0]
        crossings += [f"{verb} {m}: {SUPPRESSED if n is None else n}"
                      for m, c in pr["measures"].items()
                      for verb, n in (("loses", c["lost"]), ("gains", c["gained"])) if n != 0]
        rows.append([t, f"{pr['points']:+g}", SUPPRESSED if pr["pushed_down"] is None
                     else str(pr["pushed_down"]), "; ".join(crossings) or "none"])
    out.append(_table(["event type", "points", "pushed down", "thresholds crossed"], rows))
    if report["measures_not_simulated"]:
        out.append("<p class=note>Estimated on a random sample by the reference evaluator, "
                   "not in the crossings (holding time or prerequisite): "
                   + escape(", ".join(report["measures_not_simulated"])) + "</p>")
    return "".join(out)


def html_page(report: dict[str, Any], other: dict[str, Any] | None = None) -> str:
    """The page for one report, or for two side by side (``--compare``)."""
    title = f"Impact of {report['policy']['name']}" if other is None else \
        f"Impact of {report['policy']['name']} and {other['policy']['name']}"
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>"
             f"{escape(title)}</title><style>{_STYLE}</style></head><body>"
             f"<h1>{escape(title)}</h1><p class=note>Aggregates only: no subject is listed; "
             f"cells of fewer than 10 subjects are shown as {SUPPRESSED}.</p>"]
    if other is None:
        parts.append(_section(report))
    else:
        parts.append(_table(["figure", f"A: {report['policy']['name']}",
                             f"B: {other['policy']['name']}"],
                            [list(r) for r in comparison_rows(report, other)]))
        parts.append(f"<div class=grid><div>{_section(report)}</div>"
                     f"<div>{_section(other)}</div></div>")
    parts.append("</body></html>\n")
    return "".join(parts)


__all__ = ["bar_chart", "html_page", "line_chart", "month_labels", "text_width"]
