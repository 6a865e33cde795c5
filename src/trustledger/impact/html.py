"""An impact report as one self-contained HTML page with server-side SVG charts.

No script, no font, no stylesheet from anywhere else: the page opens offline. Charts:
score quantiles over time, Gini over time, tier shares over time, mobility per year and
the transition matrix, group shares per measure, crossings and recovery per event type.
Only the aggregate report is read; suppressed cells are drawn as gaps and labelled ``<10``.
"""

from __future__ import annotations

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
_W, _H, _PAD = 560, 220, 44

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;
text-align:right}th:first-child,td:first-child{text-align:left}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:1rem}
.note{color:#555;font-size:.9rem}svg{background:#fafafa;border:1px solid #eee}
.bad{color:#b00;font-weight:bold}
td:last-child{text-align:left}
"""


def _x(i: float, n: int) -> float:
    return _PAD + (_W - 2 * _PAD) * (i / max(1, n - 1))


def _y(v: float, low: float, high: float) -> float:
    span = (high - low) or 1.0
    return _H - _PAD + (-(_H - 2 * _PAD)) * ((v - low) / span)


def _axes(low: float, high: float, n: int, x_label: str, title: str) -> list[str]:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
           f'role="img" aria-label="{escape(title)}">',
           f'<text x="{_W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" '
           'stroke="#888"/>',
           f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#888"/>',
           f'<text x="{_W / 2}" y="{_H - 8}" text-anchor="middle" font-size="11">'
           f'{escape(x_label)}</text>']
    for k in range(5):
        v = low + (high - low) * k / 4
        y = _y(v, low, high)
        out.append(f'<text x="{_PAD - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">'
                   f'{v:.4g}</text>')
        out.append(f'<line x1="{_PAD}" y1="{y:.1f}" x2="{_W - _PAD}" y2="{y:.1f}" '
                   'stroke="#eee"/>')
    for k in range(0, n, max(1, n // 6)):
        out.append(f'<text x="{_x(k, n):.1f}" y="{_H - _PAD + 14}" text-anchor="middle" '
                   f'font-size="10">{k + 1}</text>')
    return out


def _path(values: Sequence[float | None], low: float, high: float) -> str:
    parts, pen = [], "M"
    for i, v in enumerate(values):
        if v is None:
            pen = "M"
            continue
        parts.append(f"{pen}{_x(i, len(values)):.1f},{_y(v, low, high):.1f}")
        pen = "L"
    return " ".join(parts)


def line_chart(title: str, series: Sequence[tuple[str, Sequence[float | None]]],
               bands: Sequence[tuple[Sequence[float | None], Sequence[float | None], str]] = (),
               x_label: str = "month", low: float | None = None,
               high: float | None = None) -> str:
    """An SVG line chart (months on x) with optional shaded bands (low, high, colour)."""
    values = [v for _, s in series for v in s if v is not None]
    values += [v for lo, hi, _ in bands for v in (*lo, *hi) if v is not None]
    if not values:
        return f"<p class=note>{escape(title)}: no data (all cells suppressed)</p>"
    lo_v = min(values) if low is None else low
    hi_v = max(values) if high is None else high
    if hi_v == lo_v:
        hi_v = lo_v + 1
    n = max(len(s) for _, s in series) if series else len(bands[0][0])
    out = _axes(lo_v, hi_v, n, x_label, title)
    for lo, hi, colour in bands:
        pts = [(i, a, b) for i, (a, b) in enumerate(zip(lo, hi, strict=True))
               if a is not None and b is not None]
        if pts:
            top = " ".join(f"{_x(i, n):.1f},{_y(b, lo_v, hi_v):.1f}" for i, _, b in pts)
            bottom = " ".join(f"{_x(i, n):.1f},{_y(a, lo_v, hi_v):.1f}"
                              for i, a, _ in reversed(pts))
            out.append(f'<polygon points="{top} {bottom}" fill="{colour}" '
                       'fill-opacity="0.18" stroke="none"/>')
    for k, (label, s) in enumerate(series):
        colour = _COLOURS[k % len(_COLOURS)]
        out.append(f'<path d="{_path(s, lo_v, hi_v)}" fill="none" stroke="{colour}" '
                   'stroke-width="1.8"/>')
        out.append(f'<text x="{_W - _PAD + 2}" y="{_PAD + 12 * k}" font-size="10" '
                   f'fill="{colour}">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(title: str, labels: Sequence[str],
              series: Sequence[tuple[str, Sequence[float | None]]],
              missing: str = SUPPRESSED) -> str:
    """Grouped horizontal bars (one group per label); ``None`` is drawn as ``missing``."""
    values = [v for _, s in series for v in s if v is not None]
    high = max(values) if values else 1.0
    high = high or 1.0
    row = 14 * max(1, len(series)) + 8
    height = 30 + row * len(labels) + 14 * len(series)
    left = 190
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" role="img" '
           f'aria-label="{escape(title)}"><text x="{_W / 2}" y="16" text-anchor="middle" '
           f'font-size="13">{escape(title)}</text>']
    for i, label in enumerate(labels):
        y0 = 28 + i * row
        out.append(f'<text x="{left - 6}" y="{y0 + row / 2:.1f}" text-anchor="end" '
                   f'font-size="11">{escape(label)}</text>')
        for k, (_, s) in enumerate(series):
            v = s[i]
            y = y0 + 14 * k
            colour = _COLOURS[k % len(_COLOURS)]
            if v is None:
                out.append(f'<text x="{left + 2}" y="{y + 10}" font-size="10">'
                           f'{escape(missing)}</text>')
                continue
            width = (_W - left - 70) * v / high
            out.append(f'<rect x="{left}" y="{y}" width="{width:.1f}" height="11" '
                       f'fill="{colour}"/><text x="{left + width + 4:.1f}" y="{y + 10}" '
                       f'font-size="10">{v:.4g}</text>')
    for k, (name, _) in enumerate(series):
        y = height - 14 * (len(series) - k) + 8
        out.append(f'<text x="{left}" y="{y}" font-size="10" fill="{_COLOURS[k % 8]}">'
                   f'■ {escape(name)}</text>')
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
        q = [r.get("quantiles") or {} for r in months]

        def col(key: str, q: list[dict[str, Any]] = q) -> list[float | None]:
            return [x.get(key) for x in q]
        out.append(f"<h3>Scorecard {escape(card)}</h3><div class=grid>")
        out.append(line_chart(f"{card}: score distribution (median; p25-p75, p5-p95)",
                              [("median", col("p50"))],
                              [(col("p5"), col("p95"), "#1f77b4"),
                               (col("p25"), col("p75"), "#1f77b4")]))
        out.append(line_chart(f"{card}: Gini of scores", [("Gini", [r.get("gini")
                                                                   for r in months])]))
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
            out.append(line_chart(f"{card}: share of subjects in each tier", series, low=0.0))
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
                               if report["measures"][m]["in_force_share_by_month"]], low=0.0))
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


__all__ = ["bar_chart", "html_page", "line_chart"]
