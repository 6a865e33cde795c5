"""The demo ``make run`` shows: a synthetic population in a ledger, scored by a published policy.

On first run it generates a deterministic population, ingests it, has the event-type
register next to the policy (``policies/register.yaml``) proposed by one demo operator
and approved by a second (:func:`demo_register`), publishes the example policy and
records the opt-ins of a few demo subjects; later runs reuse the ledger. Then it
verifies the chain and scores the demo subjects.

:func:`distribution` rescores a demo population under a policy (the batch job, every
subject treated as opted in) and counts its tiers and measures, small cells suppressed:
``trustledger demo --distribution`` prints it for each shipped policy. How the generator
is calibrated: docs/impact.md, "The demo population".
"""

from __future__ import annotations

import statistics
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from trustledger.aggregates import suppress
from trustledger.engine import Evaluation, evaluate
from trustledger.ledger import Ledger, VerifyReport, ingest_file
from trustledger.policy import load_policy, load_register
from trustledger.policy.compiled import CompiledPolicy
from trustledger.policy.register import Register, find_register
from trustledger.rights import grant_opt_in, opt_ins
from trustledger.scoring import PublishedPolicy, evaluate_subject, publish_policy
from trustledger.synth import PROFILES, Population, subject_id, write_parquet

if TYPE_CHECKING:
    from rich.console import Console

DEMO_SEED = 20261127
"""The seed of every demo population: the same people on every machine."""
SHIPPED_POLICIES = ("sesame", "rongcheng", "reputation")
"""The example policies of ``policies/``; each has a generator profile of its own name."""
DEMO_EVENTS_PER_SUBJECT = {"sesame": 20.0, "rongcheng": 0.5, "reputation": 60.0}
"""Events per subject (over the demo's :data:`DEMO_YEARS`) the calibration is made for.

Rongcheng's table only deducts, and most residents have no deduction at all: 20 events a
subject there would put nearly everyone in grade D."""
DEMO_YEARS = 2.0
"""Years of history before the demo's end (``synth.DEFAULT_END``, 2026-11-01): about the
time the shipped policies (effective from 2025-01-01) have been in force, as in the month
`trustledger impact` reaches by then."""
DEMO_POPULATION = Population(subjects=10_000, events=200_000, seed=DEMO_SEED, years=DEMO_YEARS)
"""The population ``make run`` builds: the same on every machine."""
DEMO_SUBJECTS = 10
"""How many subjects opt in to the demo's opt-in scorecards and are shown."""
DEMO_PROPOSER = "demo-operator"
"""The demo operator who proposes the register (and publishes the policy)."""
DEMO_APPROVER = "demo-approver"
"""The second demo operator, who approves the register (two people change it)."""


def demo_population(profile: str, subjects: int = 10_000, *, seed: int = DEMO_SEED,
                    ) -> Population:
    """The demo population for a shipped policy: its profile, calibrated events per subject."""
    events = round(subjects * DEMO_EVENTS_PER_SUBJECT[profile])
    return Population(subjects=subjects, events=events, seed=seed, years=DEMO_YEARS,
                      profile=profile)


@dataclass(frozen=True)
class DemoReport:
    """What the demo did and found."""

    created: bool
    policy: PublishedPolicy
    verified: VerifyReport
    evaluations: list[Evaluation]


def _profiled(population: Population, compiled: CompiledPolicy) -> Population:
    """The population with the policy's own event types when the policy is a shipped one."""
    if compiled.name in PROFILES and population.profile != "wide":
        return replace(population, profile=compiled.name)
    return population


def demo_register(ledger: Ledger, policy_path: Path) -> Register:
    """Put the register next to ``policy_path`` in force, as two operators do it.

    :data:`DEMO_PROPOSER` proposes it and :data:`DEMO_APPROVER` approves it (each an
    operator principal, issued if missing; their keys are not kept: ``trustledger serve
    --demo`` issues fresh ones). Nothing is recorded if it is in force already.
    """
    from trustledger.principals import Role, ServiceLedger, add_principal, list_principals
    from trustledger.registry import (
        NoRegisterError,
        approve_register,
        propose_register,
        register_in_force,
    )

    path = find_register(policy_path)
    wanted = load_register(path)
    try:
        if register_in_force(ledger).hash == wanted.hash:
            return wanted
    except NoRegisterError:
        pass
    governed = ServiceLedger.of(ledger)
    active = {(p.role, p.name) for p in list_principals(governed)}
    for name in (DEMO_PROPOSER, DEMO_APPROVER):
        if (Role.OPERATOR, name) not in active:
            add_principal(governed, name, Role.OPERATOR)
    proposal = propose_register(governed, wanted.source, DEMO_PROPOSER, str(path))
    approve_register(governed, proposal.hash, DEMO_APPROVER)
    return wanted


def run_demo(
    ledger: Ledger,
    policy_path: Path,
    data_dir: Path,
    at: datetime | None = None,
    *,
    population: Population = DEMO_POPULATION,
    shown: int = DEMO_SUBJECTS,
    status: Callable[[str], None] = lambda _: None,
) -> DemoReport:
    """Build the demo ledger if it is empty, then verify it and score the demo subjects.

    The register next to the policy is put in force first (:func:`demo_register`), then
    the policy is published against it.

    The population's events are those of the policy's profile when the policy is one of
    the shipped ones (``policies/rongcheng.yaml`` gets Rongcheng's deductions, not Sesame's
    repayments). ``at`` is the valid time (default: the ledger's clock, read after the
    set-up, so the opt-ins just recorded are in force).
    """
    created = ledger.head()[0] == 0
    if created:
        population = _profiled(population, load_policy(policy_path))
        status(f"generating {population.events:,} events for {population.subjects:,} subjects")
        parquet = data_dir / "demo-population.parquet"
        write_parquet(population, parquet)
        status("appending them to the ledger")
        ingest_file(ledger, parquet)
        parquet.unlink()
    demo_register(ledger, policy_path)
    policy = publish_policy(ledger, policy_path)
    compiled = policy.compile()
    opt_in_cards = [name for name, card in compiled.scorecards.items() if card.opt_in]
    subjects = [subject_id(i) for i in range(shown)]
    for subject in subjects:
        have = opt_ins(ledger, subject, ledger.now())
        for card in opt_in_cards:
            if card not in have:
                grant_opt_in(ledger, subject, card)
    status("verifying the hash chain")
    verified = ledger.verify()
    valid = at or ledger.now()
    evaluations = [evaluate_subject(ledger, s, compiled, valid) for s in subjects]
    return DemoReport(created, policy, verified, evaluations)


@dataclass(frozen=True)
class CardDistribution:
    """One scorecard over a population: subjects per tier (in the policy's order), median.

    A count of 1 to 9 subjects is ``None`` (suppressed, DESIGN.md safeguard 4).
    """

    scorecard: str
    scored: int
    median: float | None
    tiers: tuple[tuple[str, int | None], ...]


@dataclass(frozen=True)
class MeasureDistribution:
    """One measure over a population: subjects it is in force for, and not.

    A count of 1 to 9 subjects is ``None`` (suppressed).
    """

    measure: str
    kind: str
    in_force: int | None
    not_in_force: int | None


@dataclass(frozen=True)
class Distribution:
    """A population rescored under a policy: aggregates only, never a subject."""

    policy: str
    policy_hash: str
    valid_at: datetime
    population: Population
    subjects: int
    scorecards: tuple[CardDistribution, ...]
    measures: tuple[MeasureDistribution, ...]


def distribution(policy_path: Path, population: Population,
                 valid_at: datetime | None = None) -> Distribution:
    """Rescore ``population`` under the policy with the batch job and count tiers and measures.

    Every subject is treated as opted in (synthetic data), so opt-in scorecards score
    everyone. ``valid_at`` defaults to the population's ``end``: the dates are the
    population's own, never today's. The population's profile is the policy's when the
    policy is a shipped one (as in :func:`run_demo`).
    """
    from trustledger.batch.run import rescore
    from trustledger.batch.sources import duckdb_backend, read_events

    compiled = load_policy(policy_path)
    population = _profiled(population, compiled)
    valid = valid_at or population.end
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "population.parquet"
        write_parquet(population, path)
        backend = duckdb_backend(memory_limit="2GB", temp_directory=scratch)
        try:
            job = rescore(compiled, read_events(backend, path), valid, consent_all=True)
        finally:
            backend.disconnect()
    table = job.table
    # Subjects without any event are not in the job (it reads events); they score as the
    # engine scores an empty history, evaluated once by the reference evaluator.
    quiet = population.subjects - table.num_rows
    empty = evaluate(compiled, [], valid, opt_ins=tuple(compiled.scorecards))
    cards = []
    for name, card in compiled.scorecards.items():
        scores = [s for s in table.column(f"score__{name}").to_pylist() if s is not None]
        counts = Counter(table.column(f"tier__{name}").to_pylist())
        result = empty.scorecards[name]
        if result.score is not None:
            scores += [result.score] * quiet
            counts[result.tier] += quiet
        names = [t.name for t in card.tiers]
        shown = suppress([counts.get(t, 0) for t in names])
        cards.append(CardDistribution(
            name, len(scores), statistics.median(scores) if len(scores) >= 10 else None,
            tuple(zip(names, shown, strict=True))))
    measures = []
    for name, measure in compiled.measures.items():
        column = f"measure__{name}"
        if column not in table.column_names:
            continue
        on = sum(1 for v in table.column(column).to_pylist() if v)
        on += quiet if empty.measures[name].in_force else 0
        in_force, not_in_force = suppress([on, population.subjects - on])
        measures.append(MeasureDistribution(name, measure.kind.value, in_force, not_in_force))
    return Distribution(compiled.name, compiled.hash, valid, population, population.subjects,
                        tuple(cards), tuple(measures))


def _cell(n: int | None, total: int) -> str:
    return "<10" if n is None else f"{n:,} ({n / max(total, 1):.1%})"


def print_distributions(console: Console, folder: Path, subjects: int = 10_000,
                        valid_at: datetime | None = None) -> list[Distribution]:
    """Print (and return) :func:`distribution` of each shipped policy's demo population.

    ``folder`` holds the policies (``policies/``); a shipped policy missing there is skipped.
    What ``trustledger demo --distribution`` shows.
    """
    from rich.markup import escape
    from rich.table import Table

    found = []
    for name in SHIPPED_POLICIES:
        path = folder / f"{name}.yaml"
        if not path.exists():
            continue
        population = demo_population(name, subjects)
        with console.status(f"rescoring the {name} demo population"):
            result = distribution(path, population, valid_at)
        found.append(result)
        console.print(f"[bold]{escape(str(path))}[/] ({result.policy_hash[:19]}…): "
                      f"{result.subjects:,} subjects, {population.events:,} events over "
                      f"{population.years:g} years, seed {population.seed}, scored at "
                      f"{result.valid_at.isoformat()}, everyone opted in")
        for card in result.scorecards:
            median = "-" if card.median is None else f"{card.median:,.0f}"
            if not card.tiers:
                console.print(f"scorecard {card.scorecard}: no tiers; median {median}")
                continue
            table = Table(title=f"scorecard {card.scorecard}: subjects per tier "
                                f"(median {median})")
            for tier, _ in card.tiers:
                table.add_column(tier, justify="right")
            table.add_row(*(_cell(n, card.scored) for _, n in card.tiers))
            console.print(table)
        measures = Table("measure", "kind", "in force", "not in force",
                         title=f"{result.policy}: measures")
        for m in result.measures:
            measures.add_row(m.measure, m.kind, _cell(m.in_force, result.subjects),
                             _cell(m.not_in_force, result.subjects))
        console.print(measures)
    return found
