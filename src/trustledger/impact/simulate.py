"""The simulation: a synthetic population living under a policy, month by month.

1. Each subject gets a group (a label, by the scenario's shares), a propensity per event
   type (events a month, drawn from the group's distribution) and, per opt-in scorecard,
   consent (by the scenario's share).
2. Each month ``m`` (instant: the 15th, 12:00 UTC), every subject's count of each event
   type and attribute variant is drawn: Poisson with mean propensity x variant share x
   feedback factors, by inverse transform of a uniform drawn from ``(seed, m, type,
   variant)`` — so two policies compared on one seed see the same people and the same
   luck, and differ only where their measures feed back into behaviour.
3. The policy evaluates every subject at that instant (:class:`VectorState`), and the
   measures in force feed back into the next month's propensities.
4. After the last month, each event type is *probed*: one more such event for every
   subject at the next instant — how many cross each threshold — and, for those it
   pushes down, how many months until their standing is back (no further events).
5. Measures the vectorised path cannot evaluate (a holding time or a prerequisite) are
   estimated on a random sample of subjects by the reference ``evaluate`` on their events.

Only aggregates leave :func:`simulate`; subject arrays stay inside.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from trustledger.aggregates import SMALLEST_CELL, below_four_fifths, suppress
from trustledger.engine.evaluate import evaluate
from trustledger.engine.events import Event
from trustledger.errors import InputError
from trustledger.impact.population import (
    PRIOR_MONTHS,
    RealPopulation,
    ResolvedHistory,
    estimate_rates,
    first_instant,
    forward_variants,
    replay_history,
    resolve_history,
)
from trustledger.impact.scenario import MAX_RATE, Scenario, scenario_json
from trustledger.impact.vector import VariantKey, VectorPlan, VectorReading, VectorState
from trustledger.policy.compiled import CompiledPolicy
from trustledger.policy.models import MeasureKind

REPORT_FORMAT = "trustledger.impact/1"
"""Format tag of :func:`simulate`'s report."""

QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
"""Score quantiles reported per month."""

Observer = Callable[[int, datetime, Mapping[VariantKey, np.ndarray], VectorReading], None]
"""Called after each month with (month, instant, event counts, reading) — for tests."""


def instant(start: datetime, month: int) -> datetime:
    """The simulation's instant of month ``month`` (0-based): the 15th, 12:00 UTC."""
    index = start.year * 12 + start.month - 1 + month
    return datetime(index // 12, index % 12 + 1, 15, 12, tzinfo=UTC)


def poisson(u: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Poisson counts by inverse transform of uniforms ``u`` (monotone in ``lam``)."""
    n = np.zeros(u.shape, dtype=np.int64)
    p = np.exp(-lam)
    cdf = p.copy()
    rows = np.flatnonzero(u > cdf)
    k = 0
    while len(rows) and k < 2000:
        k += 1
        p[rows] *= lam[rows] / k
        cdf[rows] += p[rows]
        n[rows] += 1
        rows = rows[u[rows] > cdf[rows]]
        # Rounding can leave the cdf a hair under 1: stop once terms stop adding anything.
        rows = rows[p[rows] > 0]
    return n


def gini(values: np.ndarray) -> float:
    """The Gini coefficient of ``values`` (shifted to start at 0 if any is negative)."""
    x = np.sort(values[~np.isnan(values)])
    if not len(x):
        return math.nan
    if x[0] < 0:
        x = x - x[0]
    total = x.sum()
    if total == 0:
        return 0.0
    n = len(x)
    ranks = np.arange(1, n + 1)
    return float(2.0 * np.dot(ranks, x) / (n * total) - (n + 1) / n)


def nearest_rank(values: np.ndarray, q: float) -> float:
    """The nearest-rank quantile (the ⌈q·n⌉-th smallest; ``inf`` values allowed)."""
    x = np.sort(values)
    return float(x[max(0, math.ceil(q * len(x)) - 1)])


def suppressed(counts: list[int]) -> list[int | None]:
    """Counts of 1 to 9 subjects hidden, with a second cell when only one would be."""
    return suppress(counts, SMALLEST_CELL)


@dataclass
class _Population:
    """Who is simulated: group labels, propensities, consent and what is drawn each month.

    ``draws[type]``: (variant index in the plan, share of the type's events) pairs.
    ``history``/``real``: an exported population's resolved events, else None.
    """

    groups: np.ndarray
    group_names: tuple[str, ...]
    rates: dict[str, np.ndarray]
    available: dict[str, np.ndarray]
    draws: dict[str, tuple[tuple[int, float], ...]]
    start: datetime
    history: ResolvedHistory | None = None
    real: RealPopulation | None = None
    prior_months: float = PRIOR_MONTHS


def _consent(scenario: Scenario, size: int, seed: int) -> dict[str, np.ndarray]:
    c_seq = np.random.SeedSequence(seed).spawn(3)[2]
    crng = np.random.default_rng(c_seq)
    return {card: crng.random(size) < share for card, share in scenario.opt_in.items()}


def _population(scenario: Scenario, size: int, seed: int) -> _Population:
    root = np.random.SeedSequence(seed)
    g_seq, r_seq, _ = root.spawn(3)
    shares = np.array([g.share for g in scenario.groups])
    groups = np.random.default_rng(g_seq).choice(len(shares), size=size, p=shares)
    rng = np.random.default_rng(r_seq)
    rates: dict[str, np.ndarray] = {}
    for tname, behaviour in scenario.events.items():
        rate = np.zeros(size)
        for gi, group in enumerate(scenario.groups):
            rows = np.flatnonzero(groups == gi)
            rate[rows] = behaviour.rate_for(group.name).draw(rng, len(rows))
        rates[tname] = rate
    draws = {t: tuple((v, variant.share) for v, variant in enumerate(b.variants))
             for t, b in scenario.events.items()}
    return _Population(groups, scenario.group_names, rates, _consent(scenario, size, seed),
                       draws, scenario.start)


def _real_population(policy: CompiledPolicy, scenario: Scenario, real: RealPopulation,
                     seed: int, prior_months: float) -> _Population:
    history = resolve_history(policy, real)
    start = first_instant(history, policy)
    size = len(real)
    rates = estimate_rates(policy, history, size, start, prior_months)
    return _Population(real.groups, real.group_names, rates, _consent(scenario, size, seed),
                       forward_variants(history), start, history, real, prior_months)


def events_of(plan: VectorPlan, month: int, moment: datetime,
              counts: Mapping[VariantKey, np.ndarray], subject: int) -> list[Event]:
    """One subject's events of one month, as the reference engine takes them.

    Their ids sort in the order :class:`VectorState` applies them (``when`` types first,
    then policy order, variant, sequence). Used to prove the simulation equal to
    :func:`~trustledger.engine.evaluate`; the report never lists subjects.
    """
    out = []
    # Only the variants given (a real history's types can have thousands), in order.
    for name, v in sorted(counts, key=lambda k: (plan.positions[k[0]], k[1])):
        variant = plan.variants[name][v]
        for j in range(int(counts[(name, v)][subject])):
            key = f"{month:04d}-{plan.positions[name]:03d}-{v:06d}-{j:05d}"
            out.append(Event("impact-sim", key, f"subject-{subject}", name, moment,
                             moment, dict(variant.attributes)))
    return out


def simulate(policy: CompiledPolicy, scenario: Scenario, *, subjects: int = 100_000,
             months: int = 60, seed: int = 0, probe_months: int = 120,
             sample: int = 400, observer: Observer | None = None,
             population: RealPopulation | None = None,
             prior_months: float = PRIOR_MONTHS) -> dict[str, Any]:
    """Run ``scenario`` under ``policy``; the aggregate report (see ``docs/impact.md``).

    ``sample``: how many subjects, drawn at random, the reference
    :func:`~trustledger.engine.evaluate` evaluates at the last month for the measures the
    vectorised path does not (holding time, prerequisite); their figures are estimates.

    ``population``: an exported real population (:mod:`trustledger.impact.population`)
    instead of a synthetic one — ``subjects`` is then its size; each subject starts from
    their recorded history, their propensities are estimated from it (``prior_months``:
    the weight of the population's mean), the scenario contributes its feedback rules and
    opt-in shares only, and the first month is the first after the export's last event.
    """
    if population is not None:
        subjects = len(population)
        if not (prior_months > 0 and math.isfinite(prior_months)):
            raise InputError(f"prior_months must be a number more than 0 (got {prior_months})")
    if subjects < 1:
        raise InputError(f"subjects must be at least 1 (got {subjects})")
    if months < 1:
        raise InputError(f"months must be at least 1 (got {months})")
    if seed < 0:
        raise InputError(f"seed must be a whole number >= 0 (got {seed})")
    if probe_months < 1:
        raise InputError(f"probe_months must be at least 1 (got {probe_months})")
    if sample < 0:
        raise InputError(f"sample must be at least 0 (got {sample})")
    people = (_population(scenario, subjects, seed) if population is None
              else _real_population(policy, scenario, population, seed, prior_months))
    plan = VectorPlan(policy, {t: [v.attributes for v in b.variants]
                               for t, b in scenario.events.items()}
                      if people.history is None else people.history.variants)
    for i, rule in enumerate(scenario.feedback):
        if rule.measure in plan.not_simulated:
            raise InputError(f"scenario {scenario.source}: feedback[{i}].measure: "
                             f"{rule.measure} has a holding time or a prerequisite, which "
                             "the simulation does not evaluate (see docs/impact.md)")
    start = people.start
    state = VectorState(plan, subjects, start, people.available,
                        instant(start, months + probe_months))
    if people.history is not None:
        replay_history(state, people.history)
    collector = _Collector(policy, scenario, plan, people, months)
    # Before any simulated event (a real population: after its history): what feeds back
    # into month 0.
    reading = state.read(start)
    collector.baseline(reading)
    sampled = _sample(seed, subjects, sample) if plan.not_simulated else np.zeros(0, int)
    sampled_counts: list[dict[VariantKey, np.ndarray]] = []
    type_index = {t: i for i, t in enumerate(people.draws)}
    for m in range(months):
        moment = instant(start, m)
        factors = _feedback(scenario, reading, subjects)
        counts: dict[VariantKey, np.ndarray] = {}
        for tname, draws in people.draws.items():
            # Capped after feedback too: beyond it e^-lam underflows and the month is
            # saturated anyway.
            lam = np.minimum(people.rates[tname] * factors.get(tname, 1.0), MAX_RATE)
            for v, share in draws:
                u = np.random.default_rng([seed, m, type_index[tname], v]).random(subjects)
                counts[(tname, v)] = poisson(u, lam * share)
        # The policy is given event counts per type and attributes, nothing else: the
        # group labels never reach it.
        assert all(key[0] in policy.event_types for key in counts)
        state.apply(moment, counts)
        reading = state.read(moment)
        collector.month(m, counts, reading)
        if len(sampled):
            sampled_counts.append({k: n[sampled] for k, n in counts.items()})
        if observer is not None:
            observer(m, moment, counts, reading)
    probes = _probes(policy, people, plan, state, instant(start, months), start, months,
                     probe_months)
    estimates = _reference_measures(policy, plan, people, sampled, sampled_counts, start)
    return collector.report(seed, probes, plan, sampled, estimates)


def _sample(seed: int, size: int, wanted: int) -> np.ndarray:
    """Sorted indices of ``wanted`` subjects drawn at random (all of them if fewer)."""
    spawned = np.random.SeedSequence(seed).spawn(4)[3]
    rng = np.random.default_rng(spawned)
    return np.sort(rng.choice(size, size=min(size, wanted), replace=False))


def _reference_measures(policy: CompiledPolicy, plan: VectorPlan, population: _Population,
                        sampled: np.ndarray, counts: list[dict[VariantKey, np.ndarray]],
                        start: datetime) -> dict[str, np.ndarray]:
    """Measures with a holding time or a prerequisite of the sampled subjects, last month.

    The reference evaluator on each sampled subject's events: exact for each of them.
    """
    out = {name: np.zeros(len(sampled), dtype=bool) for name in plan.not_simulated}
    if not len(sampled) or not counts:
        return out
    valid_at = instant(start, len(counts) - 1)
    real = population.real
    for j, subject in enumerate(sampled):
        events = [e for m, month in enumerate(counts)
                  for e in events_of(plan, m, instant(start, m), month, j)]
        if real is not None:
            # A real subject: their recorded events, then the simulated ones as theirs.
            name = real.subjects[subject]
            events = [*real.events[subject], *(replace(e, subject=name) for e in events)]
        opt_ins = {c for c, mask in population.available.items() if mask[subject]}
        result = evaluate(policy, events, valid_at, opt_ins=opt_ins)
        for name in plan.not_simulated:
            out[name][j] = result.measures[name].in_force
    return out


def _feedback(scenario: Scenario, reading: VectorReading, size: int) -> dict[str, np.ndarray]:
    factors: dict[str, np.ndarray] = {}
    for rule in scenario.feedback:
        state = reading.measures[rule.measure]
        applies = state if rule.on else ~state
        for tname, factor in rule.multiply.items():
            current = factors.setdefault(tname, np.ones(size))
            current[applies] *= factor
    return factors


def _real_scenario(data: dict[str, Any]) -> dict[str, Any]:
    """What of the scenario an exported population uses: its feedback and opt-in shares."""
    return {"name": data["name"], "feedback": data["feedback"], "opt_in": data["opt_in"],
            "note": "an exported population: rates and attributes come from each subject's "
                    "history, groups from the labels file; only feedback and opt-in shares "
                    "are the scenario's"}


def _population_entry(population: _Population) -> dict[str, Any]:
    """Where an exported population came from and what was left out (counts only)."""
    real, history = population.real, population.history
    assert real is not None and history is not None
    return {"source": "export", "file": Path(real.source).name, "subjects": len(real),
            "labelled": _count(real.labelled),
            "history_entries_counted": len(history.entries),
            "events_not_counted": history.not_counted,
            "erased_events_skipped": real.erased, "other_entries": real.other_entries,
            "rates": "estimated: (events + a x population rate) / (observed months + a)",
            "prior_months": population.prior_months}


def _count(n: int | np.integer[Any]) -> int | None:
    value = int(n)
    return None if 0 < value < SMALLEST_CELL else value


def _share(n: int, of: int) -> float | None:
    if of < SMALLEST_CELL or 0 < n < SMALLEST_CELL or 0 < of - n < SMALLEST_CELL:
        return None
    return round(n / of, 6)


class _Collector:
    """Aggregates of each month; subject arrays are read and dropped."""

    def __init__(self, policy: CompiledPolicy, scenario: Scenario, plan: VectorPlan,
                 population: _Population, months: int) -> None:
        self.policy, self.scenario, self.plan = policy, scenario, plan
        self.population, self.months = population, months
        self.cards = {n: c for n, c in policy.scorecards.items()}
        self.series: dict[str, list[dict[str, Any]]] = {n: [] for n in self.cards}
        self.year_ranks: dict[str, list[np.ndarray]] = {n: [] for n in self.cards}
        self.measure_series: dict[str, list[float | None]] = {n: [] for n in plan.stateless}
        self.final_measures: dict[str, np.ndarray] = {}
        self.event_totals: dict[str, int] = {t: 0 for t in population.draws}
        self.final: VectorReading | None = None

    def baseline(self, reading: VectorReading) -> None:
        for name in self.cards:
            self.year_ranks[name].append(reading.ranks[name].copy())

    def month(self, m: int, counts: Mapping[VariantKey, np.ndarray],
              reading: VectorReading) -> None:
        for (tname, _), n in counts.items():
            self.event_totals[tname] += int(n.sum())
        for name, card in self.cards.items():
            scores = reading.scores[name]
            ok = ~np.isnan(scores)
            x = scores[ok]
            row: dict[str, Any] = {"month": m, "date": reading.valid_at.date().isoformat(),
                                   "subjects": _count(len(x))}
            if len(x) >= SMALLEST_CELL:
                qs = np.quantile(x, QUANTILES)
                row["quantiles"] = {f"p{round(q * 100)}": round(float(v), 4)
                                    for q, v in zip(QUANTILES, qs, strict=True)}
                row["mean"] = round(float(x.mean()), 4)
                row["gini"] = round(gini(x), 6)
            if card.tiers:
                ranks = reading.ranks[name][ok]
                counts_t = [int((ranks == r).sum()) for r in range(len(card.tiers))]
                below = int((ranks == -1).sum())
                shown = suppressed([*counts_t, below])
                row["tiers"] = {t.name: c for t, c in zip(card.tiers, shown, strict=False)}
                if below:
                    row["tiers"]["(below every tier)"] = shown[-1]
            self.series[name].append(row)
            if m % 12 == 11:
                self.year_ranks[name].append(reading.ranks[name].copy())
        size = len(self.population.groups)
        for name, state in reading.measures.items():
            self.measure_series[name].append(_share(int(state.sum()), size))
        self.final = reading

    def report(self, seed: int, probes: dict[str, Any], plan: VectorPlan,
               sampled: np.ndarray, estimates: Mapping[str, np.ndarray]) -> dict[str, Any]:
        policy, scenario = self.policy, self.scenario
        assert self.final is not None
        groups = self.population.groups
        names = self.population.group_names
        group_sizes = [int((groups == i).sum()) for i in range(len(names))]
        out: dict[str, Any] = {
            "format": REPORT_FORMAT,
            "policy": {"name": policy.name, "title": policy.model.title, "hash": policy.hash},
            "scenario": scenario_json(scenario),
            "subjects": len(groups), "months": self.months, "seed": seed,
            "start": self.population.start.date().isoformat(),
            "groups": [{"name": g, "subjects": s}
                       for g, s in zip(names, suppressed(group_sizes), strict=True)],
            "events": {t: _count(n) for t, n in self.event_totals.items()},
            "measures_not_simulated": list(plan.not_simulated),
            "condition_paths": dict(sorted(plan.paths.items())),
            "scorecards": {}, "measures": {}, "probes": probes,
        }
        if self.population.real is not None:
            out["scenario"] = _real_scenario(out["scenario"])
            out["population"] = _population_entry(self.population)
        for name, card in self.cards.items():
            entry: dict[str, Any] = {
                "label": card.label, "opt_in": card.opt_in,
                "tiers": [t.name for t in card.tiers], "months": self.series[name],
            }
            if card.tiers:
                entry["mobility"] = _mobility(self.year_ranks[name], len(card.tiers))
            entry["histogram"] = _histogram(self.final.scores[name], card.floor, card.ceiling)
            out["scorecards"][name] = entry
        for name, state in self.final.measures.items():
            out["measures"][name] = _measure_entry(
                policy, name, state, groups, names,
                self.measure_series[name])
        for name, state in estimates.items():
            entry = _measure_entry(policy, name, state, groups[sampled],
                                   names, [])
            entry["estimated_from_sample"] = len(sampled)
            out["measures"][name] = entry
        return out


def _measure_entry(policy: CompiledPolicy, name: str, state: np.ndarray, groups: np.ndarray,
                   names: tuple[str, ...], series: list[float | None]) -> dict[str, Any]:
    """One measure's shares per group and adverse-impact ratio (small cells suppressed)."""
    m = policy.measures[name]
    favourable = state if m.kind is MeasureKind.PRIVILEGE else ~state
    per_group: dict[str, Any] = {}
    rates: list[float] = []
    complete = True
    for gi, g in enumerate(names):
        rows = groups == gi
        total, on = int(rows.sum()), int(state[rows].sum())
        per_group[g] = {"subjects": _count(total), "in_force": _count(on),
                        "share": _share(on, total)}
        if _share(on, total) is None and not (on == 0 and total >= SMALLEST_CELL):
            complete = False
        elif total:
            rates.append(int(favourable[rows].sum()) / total)
    ratio = None
    if complete and rates and max(rates) > 0 and len(rates) == len(names):
        ratio = round(min(rates) / max(rates), 6)
    return {"kind": m.kind.value, "label": m.label, "domain": m.domain,
            "severity": m.severity.value if m.severity else None,
            "in_force_share_by_month": series, "groups": per_group, "impact_ratio": ratio,
            "four_fifths_rule": None if ratio is None else not below_four_fifths(ratio)}


def _mobility(ranks: list[np.ndarray], tiers: int) -> dict[str, Any]:
    years = []
    matrix = np.zeros((tiers + 1, tiers + 1), dtype=np.int64)  # last row/col: below every tier
    for y in range(1, len(ranks)):
        a, b = ranks[y - 1], ranks[y]
        ok = (a != -2) & (b != -2)
        a, b = a[ok], b[ok]
        n = len(a)
        changed, up, down = int((a != b).sum()), int((b > a).sum()), int((b < a).sum())
        years.append({"year": y, "subjects": _count(n), "changed_share": _share(changed, n),
                      "up_share": _share(up, n), "down_share": _share(down, n)})
        ia = np.where(a < 0, tiers, a)
        ib = np.where(b < 0, tiers, b)
        np.add.at(matrix, (ia, ib), 1)
    # The "below every tier" row and column only when someone was ever there.
    size = tiers + 1 if matrix[tiers].any() or matrix[:, tiers].any() else tiers
    matrix = matrix[:size, :size]
    rows = []
    for r in range(size):
        counts = [int(c) for c in matrix[r]]
        shown = suppressed(counts)
        total = sum(counts)
        rows.append({"counts": shown,
                     "shares": [None if s is None or total < SMALLEST_CELL else
                                round(s / total, 6) for s in shown]})
    return {"years": years, "transitions": rows,
            "note": "pooled year-to-year transitions; rows: tier a year before, columns: "
                    "tier now; a last row and column, if any: below every tier"}


def _histogram(scores: np.ndarray, floor: float | None, ceiling: float | None
               ) -> dict[str, Any]:
    x = scores[~np.isnan(scores)]
    if len(x) < SMALLEST_CELL:
        return {"edges": [], "counts": []}
    low = floor if floor is not None else float(np.floor(x.min()))
    high = ceiling if ceiling is not None else float(np.ceil(x.max()))
    if high <= low:
        high = low + 1
    edges = np.linspace(low, high, 31)
    counts, _ = np.histogram(np.clip(x, low, high), bins=edges)
    return {"edges": [round(float(e), 4) for e in edges],
            "counts": suppressed([int(c) for c in counts])}


def _worse(policy: CompiledPolicy, size: int, after: VectorReading,
           ranks_ref: Mapping[str, np.ndarray], privileges_ref: Mapping[str, np.ndarray],
           restrictions_ref: Mapping[str, np.ndarray]) -> np.ndarray:
    """Whose standing in ``after`` is below the reference (tier rank or a measure)."""
    worse = np.zeros(size, dtype=bool)
    for name, card in policy.scorecards.items():
        if card.tiers:
            worse |= after.ranks[name] < ranks_ref[name]
    for name, state in after.measures.items():
        if name in privileges_ref:
            worse |= privileges_ref[name] & ~state
        else:
            worse |= state & ~restrictions_ref[name]
    return worse


def _probes(policy: CompiledPolicy, population: _Population, plan: VectorPlan,
            state: VectorState, moment: datetime, start: datetime, months: int,
            horizon: int) -> dict[str, Any]:
    """One more event of each type for everyone at ``moment``: crossings and recovery."""
    before = state.read(moment)
    privileges = {n for n, m in policy.measures.items() if m.kind is MeasureKind.PRIVILEGE}
    out: dict[str, Any] = {}
    counterfactual: list[VectorReading] = []
    neutral = state.fork()
    for tname, draws in population.draws.items():
        v = max(draws, key=lambda d: (d[1], -d[0]))[0]
        variant = plan.variants[tname][v]
        fork = state.fork()
        fork.apply(moment, {(tname, v): np.ones(state.size, dtype=np.int64)})
        after = fork.read(moment)
        crossings: dict[str, Any] = {}
        for name, card in policy.scorecards.items():
            if not card.tiers:
                continue
            a, b = before.ranks[name], after.ranks[name]
            rows = []
            for r in range(1, len(card.tiers)):
                down = int(((a >= r) & (b < r) & (b != -2)).sum())
                up = int(((a < r) & (a != -2) & (b >= r)).sum())
                rows.append((card.tiers[r].name, down, up))
            # Crossings overlap (one event can cross several thresholds) and have no
            # published total, so each cell is suppressed on its own.
            crossings[name] = {t: {"down": _count(d), "up": _count(u)} for t, d, u in rows}
        measures: dict[str, Any] = {}
        for name, s_before in before.measures.items():
            s_after = after.measures[name]
            lost, gained = int((s_before & ~s_after).sum()), int((~s_before & s_after).sum())
            measures[name] = {"lost": _count(lost), "gained": _count(gained)}
        ranks_ref = before.ranks
        priv_ref = {n: s for n, s in before.measures.items() if n in privileges}
        restr_ref = {n: s for n, s in before.measures.items() if n not in privileges}
        pushed = _worse(policy, state.size, after, ranks_ref, priv_ref, restr_ref)
        n_pushed = int(pushed.sum())
        entry: dict[str, Any] = {
            "attributes": dict(variant.attributes), "points": variant.points,
            "crossings": crossings, "measures": measures, "pushed_down": _count(n_pushed),
        }
        if n_pushed:
            entry["recovery"] = _recovery(policy, fork, neutral, counterfactual, before,
                                          privileges, pushed, start, months, horizon)
        out[tname] = entry
    return out


def _recovery(policy: CompiledPolicy, fork: VectorState, neutral: VectorState,
              counterfactual: list[VectorReading], before: VectorReading,
              privileges: set[str], pushed: np.ndarray, start: datetime, months: int,
              horizon: int) -> dict[str, Any]:
    """Months until the pushed subjects' standing is back (see ``docs/impact.md``)."""
    waiting = pushed.copy()
    months_back = np.full(len(pushed), np.inf)
    for k in range(1, horizon + 1):
        moment = instant(start, months + k)
        if len(counterfactual) < k:
            counterfactual.append(neutral.read(moment))
        cf = counterfactual[k - 1]
        after = fork.read(moment)
        # Back: no worse than before the event, or than without it (whichever is lower).
        ranks_ref = {n: np.minimum(before.ranks[n], cf.ranks[n]) for n in before.ranks}
        priv_ref = {n: before.measures[n] & cf.measures[n] for n in before.measures
                    if n in privileges}
        restr_ref = {n: before.measures[n] | cf.measures[n] for n in before.measures
                     if n not in privileges}
        back = waiting & ~_worse(policy, len(pushed), after, ranks_ref, priv_ref, restr_ref)
        months_back[back] = k
        waiting &= ~back
        if not waiting.any():
            break
    values = months_back[pushed]
    n = len(values)
    not_back = int(np.isinf(values).sum())
    if n < SMALLEST_CELL:
        return {"subjects": None}
    median, p90 = nearest_rank(values, 0.5), nearest_rank(values, 0.9)
    return {"subjects": n, "median_months": None if math.isinf(median) else int(median),
            "p90_months": None if math.isinf(p90) else int(p90),
            "not_back_within_horizon": _share(not_back, n) if not_back else 0.0,
            "horizon_months": horizon}


__all__ = ["QUANTILES", "REPORT_FORMAT", "SMALLEST_CELL", "Observer", "events_of", "gini",
           "instant", "nearest_rank", "poisson", "simulate", "suppressed"]
