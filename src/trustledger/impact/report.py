"""An impact report as text: a Rich terminal summary and a Markdown summary for the docs.

Both read only the aggregate report :func:`~trustledger.impact.simulate` returns (no
subject appears in it; suppressed cells are ``null`` and shown as ``<10``). The Markdown
summary is deterministic — no timings, no paths of the machine — so ``make impact-docs``
regenerates the committed files byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from trustledger.aggregates import ratio_text

SUPPRESSED = "<10"
"""How a suppressed cell (fewer than 10 subjects) is shown."""


def _n(value: Any) -> str:
    if value is None:
        return SUPPRESSED
    if isinstance(value, float):
        return f"{value:,.4g}"
    return f"{value:,}"


def _pct(value: float | None) -> str:
    return SUPPRESSED if value is None else f"{100 * value:.1f}%"


def _months(value: int | None, horizon: int | None) -> str:
    return f"> {horizon}" if value is None else str(value)


def year_rows(report: dict[str, Any], card: str) -> list[dict[str, Any]]:
    """The month rows at each year's end (and the last month)."""
    rows = report["scorecards"][card]["months"]
    return [r for r in rows if r["month"] % 12 == 11 or r["month"] == len(rows) - 1]


def _score_rows(report: dict[str, Any], card: str) -> list[list[str]]:
    out = []
    for r in year_rows(report, card):
        q = r.get("quantiles")
        out.append([f"{r['month'] + 1}", r["date"],
                    *([_n(q["p10"]), _n(q["p50"]), _n(q["p90"]), _n(r["mean"]),
                       f"{r['gini']:.4f}"] if q else ["-"] * 5)])
    return out


def _probe_header(report: dict[str, Any]) -> list[str]:
    first = next(iter(report["probes"].values()), None)
    if first is None:
        return []
    cards = list(first["crossings"])
    thresholds = [f"{card} ≥ {tier}" if len(cards) > 1 else f"≥ {tier}"
                  for card in cards for tier in first["crossings"][card]]
    return ["event type", "points", "pushed down", *thresholds, *first["measures"],
            "median", "p90"]


def _cell(down: int | None, up: int | None, down_mark: str = "↓", up_mark: str = "↑") -> str:
    parts = [f"{mark}{_n(n)}" for mark, n in ((down_mark, down), (up_mark, up)) if n != 0]
    return " ".join(parts) or "·"


def _probe_rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    for tname, p in report["probes"].items():
        rec = p.get("recovery")
        cells = [_cell(c["down"], c["up"]) for tiers in p["crossings"].values()
                 for c in tiers.values()]
        cells += [_cell(c["lost"], c["gained"], "-", "+") for c in p["measures"].values()]
        followed = bool(rec and rec.get("subjects"))
        out.append([tname, f"{p['points']:+g}", _n(p["pushed_down"]), *cells,
                    _months(rec["median_months"], rec["horizon_months"])
                    if rec and followed else "-",
                    _months(rec["p90_months"], rec["horizon_months"])
                    if rec and followed else "-"])
    return out


def measure_rows(report: dict[str, Any]) -> list[list[str]]:
    """Per measure: name, kind, each group's share in force, impact ratio, four-fifths rule."""
    groups = [g["name"] for g in report["groups"]]
    out = []
    for name, m in report["measures"].items():
        ratio = m["impact_ratio"]
        kind = m["kind"] + (f" (sample of {m['estimated_from_sample']:,})"
                            if "estimated_from_sample" in m else "")
        out.append([name, kind, *(_pct(m["groups"][g]["share"]) for g in groups),
                    "-" if ratio is None else ratio_text(ratio),
                    "-" if ratio is None else ("yes" if m["four_fifths_rule"] else "NO")])
    return out


def transition_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """A scorecard's pooled year-to-year transitions: header and rows (shares of each row)."""
    transitions = data["mobility"]["transitions"]
    names = [*data["tiers"], "below every tier"][:len(transitions)]
    return (["from \\ to", *names],
            [[names[i], *(_pct(s) for s in row["shares"])] for i, row in enumerate(transitions)])


def population_line(population: dict[str, Any]) -> str:
    """One line on an exported population: where from and what was left out (counts)."""
    return (f"exported population {population['file']}: {population['subjects']:,} "
            f"subjects, {population['history_entries_counted']:,} recorded events counted, "
            f"{population['events_not_counted']:,} not counted (superseded, withdrawn, "
            f"unknown type or attributes), {population['erased_events_skipped']:,} erased "
            f"and skipped; propensities from each subject's history (prior "
            f"{population['prior_months']:g} months)")


def print_summary(report: dict[str, Any], console: Console) -> None:
    """The report's main figures as Rich tables."""
    console.print(f"[bold]{report['policy']['title']}[/] ({report['policy']['name']}, "
                  f"{report['policy']['hash'][:19]}) — scenario {report['scenario']['name']}: "
                  f"{report['subjects']:,} subjects x {report['months']} months from "
                  f"{report['start']}, seed {report['seed']}")
    if "population" in report:
        console.print(population_line(report["population"]), markup=False)
    for card, data in report["scorecards"].items():
        table = Table(title=f"{card}: scores at each year's end")
        for col in ("month", "date", "p10", "median", "p90", "mean", "Gini"):
            table.add_column(col, justify="right")
        for row in _score_rows(report, card):
            table.add_row(*row)
        console.print(table)
        mobility = data.get("mobility")
        if mobility:
            table = Table(title=f"{card}: mobility (share changing tier per year)")
            for col in ("year", "changed", "up", "down"):
                table.add_column(col, justify="right")
            for y in mobility["years"]:
                table.add_row(str(y["year"]), _pct(y["changed_share"]), _pct(y["up_share"]),
                              _pct(y["down_share"]))
            console.print(table)
    if report["measures"]:
        table = Table(title="measures in the last month: share of each group in force")
        table.add_column("measure")
        table.add_column("kind")
        for g in report["groups"]:
            table.add_column(g["name"], justify="right")
        table.add_column("impact ratio", justify="right")
        table.add_column("≥ 4/5", justify="right")
        for row in measure_rows(report):
            table.add_row(*row)
        console.print(table)
    table = Table(title="one more event for everyone: subjects crossing each threshold "
                  "(↓ down, ↑ up) or losing (-) / gaining (+) each measure; months until "
                  "those pushed down are back (median / p90)")
    table.add_column("event type (points)")
    table.add_column("pushed down", justify="right")
    table.add_column("crossings")
    table.add_column("back", justify="right")
    header = _probe_header(report)
    for row in _probe_rows(report):
        crossings = [f"{h} {c}" for h, c in zip(header[3:-2], row[3:-2], strict=True)
                     if c != "·"]
        table.add_row(f"{row[0]} ({row[1]})", row[2], ", ".join(crossings) or "none",
                      "-" if row[-2] == "-" else f"{row[-2]} / {row[-1]}")
    console.print(table)
    if report["measures_not_simulated"]:
        console.print("estimated on a random sample by the reference evaluator (holding time "
                      "or prerequisite), not in the crossings: "
                      + ", ".join(report["measures_not_simulated"]))
    console.print(f"cells under 10 subjects are shown as {SUPPRESSED}; no subject is listed")


def print_comparison(a: dict[str, Any], b: dict[str, Any], console: Console) -> None:
    """Two reports on the same population, side by side (shared cards and measures)."""
    console.print(f"[bold]Comparison on one population[/]: {a['subjects']:,} subjects x "
                  f"{a['months']} months, seed {a['seed']}, scenario {a['scenario']['name']}")
    table = Table(title="last month")
    table.add_column("figure")
    table.add_column(f"A: {a['policy']['name']}", justify="right")
    table.add_column(f"B: {b['policy']['name']}", justify="right")
    for label, va, vb in comparison_rows(a, b):
        table.add_row(label, va, vb)
    console.print(table)
    console.print(f"cells under 10 subjects are shown as {SUPPRESSED}; no subject is listed")


def comparison_rows(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, A, B) rows for a comparison."""
    rows: list[tuple[str, str, str]] = []
    for card in sorted(set(a["scorecards"]) | set(b["scorecards"])):
        for key in ("p50", "mean", "gini"):
            values = []
            for r in (a, b):
                data = r["scorecards"].get(card)
                last = data["months"][-1] if data else {}
                value = last.get("quantiles", {}).get(key) if key == "p50" else last.get(key)
                values.append("-" if value is None else _n(value))
            rows.append((f"{card} {('median' if key == 'p50' else key)}", values[0], values[1]))
    for m in sorted(set(a["measures"]) | set(b["measures"])):
        for r_label in ("share", "impact ratio"):
            values = []
            for r in (a, b):
                data = r["measures"].get(m)
                if data is None:
                    values.append("-")
                elif r_label == "share":
                    series = data["in_force_share_by_month"]
                    values.append(_pct(series[-1] if series else None))
                else:
                    ratio = data["impact_ratio"]
                    values.append("-" if ratio is None else ratio_text(ratio))
            rows.append((f"{m} {r_label}", values[0], values[1]))
    for t in sorted(set(a["probes"]) | set(b["probes"])):
        values = []
        for r in (a, b):
            rec = r["probes"].get(t, {}).get("recovery")
            values.append("-" if not rec or not rec.get("subjects") else
                          f"{_months(rec['median_months'], rec['horizon_months'])} / "
                          f"{_months(rec['p90_months'], rec['horizon_months'])}")
        rows.append((f"{t}: months to recover (median / p90)", values[0], values[1]))
    return rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def markdown(report: dict[str, Any], command: str) -> str:
    """The report as a Markdown page (deterministic: the same report gives the same text)."""
    p = report["policy"]
    lines = [f"# Impact report: {p['title']}", "",
             f"Generated by `{command}` (`make impact-docs`); do not edit by hand. "
             "Method and the meaning of each figure: [docs/impact.md](../impact.md).", "",
             f"- policy: `{p['name']}` ({p['hash']})",
             f"- scenario: `{report['scenario']['name']}`, {report['subjects']:,} subjects x "
             f"{report['months']} months from {report['start']}, seed {report['seed']}",
             "- groups: " + ", ".join(f"{g['name']} ({_n(g['subjects'])})"
                                      for g in report["groups"]),
             f"- cells under 10 subjects are shown as `{SUPPRESSED}`; no subject is listed", ""]
    if "population" in report:
        lines[-1:-1] = [f"- {population_line(report['population'])}"]
    for card, data in report["scorecards"].items():
        lines += [f"## Scorecard `{card}`", "", "Scores at each year's end:", ""]
        lines += _md_table(["month", "date", "p10", "median", "p90", "mean", "Gini"],
                           _score_rows(report, card))
        last = data["months"][-1]
        if last.get("tiers"):
            lines += ["", "Tiers in the last month:", ""]
            lines += _md_table(list(last["tiers"]), [[_n(v) for v in last["tiers"].values()]])
        mobility = data.get("mobility")
        if mobility:
            lines += ["", "Mobility (share of subjects whose tier changed over each year):", ""]
            lines += _md_table(["year", "changed", "up", "down"],
                               [[str(y["year"]), _pct(y["changed_share"]), _pct(y["up_share"]),
                                 _pct(y["down_share"])] for y in mobility["years"]])
            lines += ["", "Year-to-year transitions, pooled (row: tier a year before; "
                      "share of the row):", ""]
            lines += _md_table(*transition_table(data))
        lines.append("")
    if report["measures"]:
        groups = [g["name"] for g in report["groups"]]
        lines += ["## Measures by group (last month)", "",
                  "Share of each group with the measure in force; impact ratio = lowest "
                  "group's favourable rate / highest group's (four-fifths rule: ≥ 0.8).", ""]
        lines += _md_table(["measure", "kind", *groups, "impact ratio", "≥ 4/5"],
                           measure_rows(report))
        lines.append("")
    lines += ["## One more event for everyone", "",
              "Each event type's most common variant, added once for every subject after the "
              "last month: how many subjects it pushes down, how many cross each tier threshold "
              "(↓ down, ↑ up) or lose (-) / gain (+) each measure, and the months until "
              "the standing of those pushed down is back (median, 90th percentile).", ""]
    lines += _md_table(_probe_header(report), _probe_rows(report))
    if report["measures_not_simulated"]:
        lines += ["", "Estimated on a random sample of subjects by the reference evaluator, and "
                  "not in the crossings (a holding time or prerequisite depends on the "
                  "measure's own past between instants): "
                  + ", ".join(f"`{m}`" for m in report["measures_not_simulated"]) + "."]
    return "\n".join(lines) + "\n"


__all__ = ["SUPPRESSED", "comparison_rows", "markdown", "measure_rows", "population_line",
           "print_comparison", "print_summary", "transition_table", "year_rows"]
