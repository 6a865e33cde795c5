"""The ``trustledger impact`` command: simulate a policy on a population, report its impact.

``trustledger impact POLICY`` runs one policy; ``trustledger impact --compare A B`` runs
two on the same simulated population (same seed, same scenario, same people and luck).
The terminal shows a summary; ``--json`` and ``--html`` write the full aggregate report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from trustledger.errors import InputError


def impact(
    policy: Annotated[Path | None, typer.Argument(
        help="Policy file to simulate (omit with --compare).")] = None,
    subjects: Annotated[int | None, typer.Option(
        help="Simulated subjects (default 100,000; not with --population).",
        show_default=False)] = None,
    months: Annotated[int, typer.Option(help="Simulated months.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same population).")] = 0,
    scenario: Annotated[Path | None, typer.Option(
        help="Scenario file, YAML or JSON (default: the policy's bundled scenario).")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the full report as JSON here.")] = None,
    html_out: Annotated[Path | None, typer.Option(
        "--html", help="Write a self-contained HTML page with charts here.")] = None,
    markdown_out: Annotated[Path | None, typer.Option(
        "--markdown", help="Write a Markdown summary here (as docs/impact/*.md).")] = None,
    compare: Annotated[tuple[Path, Path] | None, typer.Option(
        help="Two policy files to run side by side on the same population.")] = None,
    probe_months: Annotated[int, typer.Option(
        help="How far after the last month recovery is followed.")] = 120,
    sample: Annotated[int, typer.Option(
        help="Subjects the reference evaluator scores for measures with a holding time or a "
             "prerequisite (estimates).")] = 400,
    population: Annotated[Path | None, typer.Option(
        help="A ledger export (.parquet or .jsonl, as `trustledger export` writes): "
             "simulate its real subjects from their recorded histories.")] = None,
    groups: Annotated[Path | None, typer.Option(
        help="With --population: group labels for the report, CSV or Parquet with "
             "columns subject,group (never given to the policy).")] = None,
    prior_months: Annotated[float, typer.Option(
        help="With --population: weight, in months, of the population's mean rate in each "
             "subject's estimated propensities.")] = 12.0,
) -> None:
    """Simulate a policy on a synthetic (or exported real) population and report its impact."""
    from trustledger.impact.html import html_page
    from trustledger.impact.report import markdown, print_comparison, print_summary
    from trustledger.impact.scenario import default_scenario, load_scenario
    from trustledger.impact.simulate import simulate
    from trustledger.policy import load_policy

    if (policy is None) == (compare is None):
        raise InputError("give either POLICY or --compare A B (not both, not neither)")
    if markdown_out is not None and compare is not None:
        raise InputError("--markdown summarises one policy; use --json or --html with "
                         "--compare")
    if population is not None and subjects is not None:
        raise InputError("--subjects: an exported population (--population) has its own "
                         "subjects; give one or the other")
    if groups is not None and population is None:
        raise InputError("--groups labels the subjects of --population; give --population")
    real = None
    if population is not None:
        from trustledger.impact.population import load_population

        real = load_population(population, groups)
    size = subjects if subjects is not None else 100_000
    files = [policy] if policy is not None else list(compare or ())
    policies = [load_policy(f) for f in files]
    plans = []
    for compiled in policies:
        plans.append(load_scenario(scenario, compiled) if scenario is not None
                     else default_scenario(policies[0]) if compiled is policies[0]
                     else _shared_default(policies[0], compiled))
    console = Console()
    reports: list[dict[str, Any]] = []
    for compiled, plan in zip(policies, plans, strict=True):
        started = time.perf_counter()
        reports.append(simulate(compiled, plan, subjects=size, months=months, seed=seed,
                                probe_months=probe_months, sample=sample, population=real,
                                prior_months=prior_months))
        who = f"{size:,} subjects" if real is None else \
            f"{len(real):,} subjects of {population}"
        console.print(f"simulated {compiled.name}: {who} x {months} months "
                      f"in {time.perf_counter() - started:.1f} s")
    if len(reports) == 1:
        print_summary(reports[0], console)
        document: dict[str, Any] = reports[0]
        page = html_page(reports[0]) if html_out else ""
    else:
        print_comparison(reports[0], reports[1], console)
        document = {"format": "trustledger.impact-comparison/1", "a": reports[0],
                    "b": reports[1]}
        page = html_page(reports[0], reports[1]) if html_out else ""
    if json_out is not None:
        json_out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n",
                            encoding="utf-8")
        console.print(f"wrote {json_out}")
    if html_out is not None:
        html_out.write_text(page, encoding="utf-8")
        console.print(f"wrote {html_out}")
    if markdown_out is not None:
        command = f"trustledger impact {policy} " + \
                  (f"--subjects {size}" if real is None else f"--population {population}" +
                   (f" --groups {groups}" if groups else "")) + \
                  f" --months {months} --seed {seed}" + \
                  (f" --scenario {scenario}" if scenario else "") + \
                  (f" --sample {sample}" if sample != 400 else "") + \
                  f" --markdown {markdown_out}"
        markdown_out.write_text(markdown(reports[0], command), encoding="utf-8")
        console.print(f"wrote {markdown_out}")


def _shared_default(first: Any, second: Any) -> Any:
    """B runs A's scenario (one population); its event types must be B's too."""
    from trustledger.impact.scenario import default_scenario, scenario_from_dict, scenario_json

    base = default_scenario(first)
    data = scenario_json(base)
    data = {"scenario": data["name"], "start": data["start"][:7], "groups": data["groups"],
            "events": {t: {k: v for k, v in spec.items() if k != "groups" or v}
                       for t, spec in data["events"].items()},
            "feedback": [f for f in data["feedback"] if f["measure"] in second.measures],
            "opt_in": {c: s for c, s in data["opt_in"].items() if c in second.scorecards
                       and second.scorecards[c].opt_in}}
    return scenario_from_dict(data, second, f"{base.source} (for {second.name})")


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root CLI."""
    app.command()(impact)


__all__ = ["impact", "register"]
