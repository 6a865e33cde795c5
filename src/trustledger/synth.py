"""A deterministic synthetic population: subjects and the events sources report about them.

The same ``(subjects, events, seed, end, years, profile)`` always yields the same rows, so
demos, tests and benchmarks are reproducible. Each profile writes the event types and
attributes of one shipped policy (``sesame``, ``rongcheng``, ``reputation`` in
``policies/``), or the 20 attribute-free types of :data:`WIDE_POLICY` (``wide``, for
benchmarks, rows unchanged since the benchmarks were measured). In the policy profiles every
subject has a latent conduct, an activity and a tenure: who an event is about, what kind it
is, how bad and when, follow from them as :data:`CALIBRATION` says (how it was tuned:
docs/impact.md, "The demo population"). Rows are made column by column (NumPy and Arrow
compute, no per-row Python), so 100,000,000 events are generated in chunks at about a
million rows per second.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trustledger.errors import InputError

DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)
"""The default end of the simulated history (events occur in the years before it)."""

EVENT_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("source_event_id", pa.string()),
        ("subject", pa.string()),
        ("type", pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")),
        ("attributes", pa.string()),
    ]
)
"""Columns of a synthetic event table; ``attributes`` holds a JSON object per row."""

# (family, source): the good and the bad outcome of each kind of behaviour.
_FAMILIES: tuple[tuple[str, str, float], ...] = (
    ("repayment", "bank-a", 0.46),
    ("bill", "utility-a", 0.22),
    ("rental", "rentals-a", 0.20),
    ("identity", "id-check-a", 0.12),
)


WIDE_TYPES = tuple(f"kind_{i:02d}" for i in range(20))
"""The 20 event types of the ``wide`` profile (no attributes; see :data:`WIDE_POLICY`)."""

_WIDE_WEIGHTS = np.arange(20, 0, -1) / np.arange(20, 0, -1).sum()
_WIDE_SOURCES = ("bank-a", "utility-a", "rentals-a", "telco-a")
PROFILES = ("sesame", "rongcheng", "reputation", "wide")
"""The event mixes :func:`generate` can produce: one per shipped policy (its event types),
and ``wide`` for benchmarks."""


def _wide_policy() -> str:
    lines = ["# Twenty event types, each with its own points, half-life and expiry:",
             "# the benchmark policy of bench/batch.py (trustledger synth --profile wide).",
             "policy: wide", "title: Twenty event types (benchmark)",
             "effective_from: 2023-01-01", "event_types:"]
    for i, name in enumerate(WIDE_TYPES):
        points = (5 + 3 * i) * (-1 if i % 3 == 0 else 1) / (2 if i % 4 == 1 else 1)
        half_life = (30, 90, 180, 365, 730)[i % 5]
        expiry = ("P1Y", "P18M", "P2Y", "P3Y", "P540D", "P5Y")[i % 6]
        lines += [f"  {name}:", "    domain: finance", "    category: credit_repayment",
                  f"    gravity: {'moderate' if i % 3 == 0 else 'minor'}",
                  f"    points: {points:g}", f"    decay: {{half_life: P{half_life}D}}",
                  f"    expiry: {{after: {expiry}}}", "    retention: P6Y"]
    lines += ["scorecards:", "  wide:", f"    events: [{', '.join(WIDE_TYPES)}]",
              "    base: 600", "    floor: 350", "    ceiling: 950"]
    return "\n".join(lines) + "\n"


WIDE_POLICY = _wide_policy()
"""The policy of the ``wide`` profile: 20 types, constant points, decay and expiry each,
one scorecard clamped to 350-950 (no caps, conditions or measures: the columnar path)."""


@dataclass(frozen=True)
class Population:
    """Sizes and seed of a synthetic population."""

    subjects: int
    events: int
    seed: int = 0
    end: datetime = DEFAULT_END
    years: float = 3.0
    profile: str = "sesame"
    """``sesame``, ``rongcheng`` or ``reputation`` (the event types of that policy in
    ``policies/``) or ``wide`` (the 20 types of :data:`WIDE_POLICY`, for benchmarks)."""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise InputError(f"profile: {self.profile!r} is not one of {', '.join(PROFILES)}")
        if self.subjects < 1:
            raise InputError("subjects: must be at least 1")
        if self.events < 0:
            raise InputError("events: must not be negative")
        if self.end.tzinfo is None:
            raise InputError("end: must be timezone-aware")


def subject_id(index: int) -> str:
    """The id of the synthetic subject with this index."""
    return f"subject-{index:07d}"


def chunks(population: Population, *, chunk: int = 1_000_000) -> Iterator[pa.Table]:
    """The population's events as Arrow tables of at most ``chunk`` rows, one at a time.

    Only one chunk is in memory at once, so any number of events can be written.
    """
    rng = np.random.default_rng(population.seed)
    if population.profile == "wide":
        # The benchmarks' profile keeps its rows exactly as before the calibration (bench/
        # figures were measured on them): uniform subjects, one draw discarded.
        rng.beta(8.0, 2.0, size=population.subjects)
        traits = None
    else:
        traits = _traits(rng, population)
    start = 0
    while start < population.events:
        n = min(chunk, population.events - start)
        yield _chunk(rng, population, traits, start, n)
        start += n


def generate(population: Population, *, chunk: int = 1_000_000) -> list[pa.Table]:
    """Generate the population's events as Arrow tables of at most ``chunk`` rows each."""
    return list(chunks(population, chunk=chunk))


def write_parquet(population: Population, path: Path) -> int:
    """Write the population's events to a Parquet file, chunk by chunk; returns the rows."""
    rows = 0
    with pq.ParquetWriter(path, EVENT_SCHEMA) as writer:
        for table in chunks(population):
            writer.write_table(table)
            rows += table.num_rows
    return rows


@dataclass(frozen=True)
class _Traits:
    """Per subject: latent conduct (standard normal, higher is better), activity, tenure.

    ``cumulative`` is the running share of the population's events, by subject: each
    event's subject is drawn from it (activity x tenure: events accumulate over time).
    """

    conduct: np.ndarray
    cumulative: np.ndarray
    tenure: np.ndarray
    """Share of the history the subject has been reported on (joined later: shorter)."""


def _traits(rng: np.random.Generator, population: Population) -> _Traits:
    c = CALIBRATION[population.profile]
    conduct = rng.standard_normal(population.subjects)
    noise = rng.standard_normal(population.subjects)
    if population.profile == "reputation":
        # Pareto activity: a few members contribute most (a heavy upper tail of reputation).
        activity = (1.0 - rng.random(population.subjects)) ** (-1.0 / c["pareto_alpha"])
    else:
        rho = c["activity_conduct"]
        latent = rho * conduct + np.sqrt(1.0 - rho * rho) * noise
        activity = np.exp(c["activity_sigma"] * latent)
    tenure = c["tenure_min"] + (1.0 - c["tenure_min"]) * rng.random(population.subjects)
    cumulative = np.cumsum(activity * tenure)
    return _Traits(conduct, cumulative / cumulative[-1], tenure)


def _chunk(
    rng: np.random.Generator,
    population: Population,
    traits: _Traits | None,
    start: int,
    n: int,
) -> pa.Table:
    span_us = int(population.years * 365.25 * 86400 * 1_000_000)
    end_us = int(population.end.timestamp() * 1_000_000)
    if traits is None:
        subject_idx = rng.integers(0, population.subjects, size=n)
        kinds = rng.choice(len(WIDE_TYPES), size=n, p=_WIDE_WEIGHTS)
        offset_us = rng.integers(0, span_us, size=n)
        types = _strings(kinds, WIDE_TYPES)
        sources = _strings(kinds % 4, _WIDE_SOURCES)
        attributes = _strings(np.zeros(n, np.int32), ["{}"])
    else:
        subject_idx = np.minimum(np.searchsorted(traits.cumulative, rng.random(n), "right"),
                                 population.subjects - 1)
        # Uniform over the subject's own tenure, which ends at ``end``.
        offset_us = (rng.random(n) * traits.tenure[subject_idx] * span_us).astype(np.int64)
        conduct = traits.conduct[subject_idx]
        make = {"sesame": _sesame_rows, "rongcheng": _rongcheng_rows,
                "reputation": _reputation_rows}[population.profile]
        sources, types, attributes = make(rng, conduct, CALIBRATION[population.profile])
    occurred = pa.array(end_us - offset_us, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    ids = _numbered("syn-", np.arange(start, start + n), 10)
    subjects = _numbered("subject-", subject_idx, 7)
    return pa.Table.from_arrays([sources, ids, subjects, types, occurred, attributes],
                                schema=EVENT_SCHEMA)


def _expit(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _lognormal_int(rng: np.random.Generator, median: np.ndarray | float, sigma: float,
                   low: int, high: int, n: int) -> np.ndarray:
    """Integers ``ceil(lognormal)`` clipped to ``[low, high]``."""
    drawn = np.ceil(np.exp(np.log(median) + sigma * rng.standard_normal(n)))
    return np.clip(drawn, low, high).astype(np.int64)


def _sesame_rows(rng: np.random.Generator, conduct: np.ndarray, c: dict[str, float],
                 ) -> tuple[pa.Array, pa.Array, pa.Array]:
    n = len(conduct)
    family = rng.choice(len(_FAMILIES), size=n, p=[f[2] for f in _FAMILIES])
    good = rng.random(n) >= _expit(c["bad_logit"] - c["bad_slope"] * conduct)
    defaulted = rng.random(n) < _expit(c["default_logit"] - c["default_slope"] * conduct)
    amount = np.round(np.exp(np.log(c["amount_median"]) + c["amount_slope"] * conduct
                             + c["amount_sigma"] * rng.standard_normal(n)), 2)
    days_late = _lognormal_int(rng, c["days_late_median"] * np.exp(-c["days_late_slope"]
                                                                    * conduct),
                               c["days_late_sigma"], 1, 365, n)
    late_hours = _lognormal_int(rng, c["late_hours_median"], c["late_hours_sigma"], 1, 240, n)
    return _sesame(family, good, defaulted, amount, days_late, late_hours)

def _numbered(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, vectorised (``subject-0000042``)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


_SESAME_TYPES = ("repayment_on_time", "debt_default", "repayment_late", "bill_paid",
                 "bill_overdue", "rental_returned", "identity_verified")


def _strings(codes: np.ndarray, values: tuple[str, ...] | list[str]) -> pa.Array:
    """``values[codes]`` as an Arrow string array, without Python strings per row."""
    return pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()),
                                          pa.array(values, pa.string())).cast(pa.string())


def _sesame(family: np.ndarray, good: np.ndarray, defaulted: np.ndarray, amount: np.ndarray,
            days_late: np.ndarray, late_hours: np.ndarray,
            ) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Sources, types and JSON attributes of the Sesame event types, column by column."""
    repayment, bill, rental = family == 0, family == 1, family == 2
    kind = np.select([repayment & good, repayment & ~good & defaulted, repayment & ~good,
                      bill & good, bill & ~good, rental], [0, 1, 2, 3, 4, 5], default=6)
    text = pc.cast(pa.array(amount), pa.string())
    days = pc.cast(pa.array(days_late), pa.string())
    money = pc.binary_join_element_wise('{"amount":', text, "}", "")
    late = pc.binary_join_element_wise('{"amount":', text, ',"days_late":', days, "}", "")
    overdue = pc.binary_join_element_wise('{"days_overdue":', days, "}", "")
    hours = pc.cast(pa.array(np.where(good, 0, late_hours)), pa.string())
    returned = pc.binary_join_element_wise('{"late_hours":', hours, "}", "")
    method = _strings(good.astype(np.int32), ['{"method":"video"}', '{"method":"document"}'])
    empty = _strings(np.zeros(len(kind), np.int32), ["{}"])
    attributes = pc.case_when(
        pc.make_struct(*(pa.array(kind == k) for k in (0, 1, 2, 4, 5, 6))),
        money, money, late, overdue, returned, method, empty)
    sources = _strings(family.astype(np.int32), [f[1] for f in _FAMILIES])
    return sources, _strings(kind.astype(np.int32), _SESAME_TYPES), attributes


# Rongcheng: (type, domain's source, share of the deductions). Shares follow the rates of
# the bundled impact scenario (impact/scenarios/rongcheng.yaml), plus the rare types it omits.
_RONGCHENG: tuple[tuple[str, str, float], ...] = (
    ("contract_breach", "market-regulator", 0.07),
    ("breach_judgement", "court", 0.02),
    ("commercial_fraud", "market-regulator", 0.006),
    ("counterfeit_goods", "market-regulator", 0.006),
    ("other_commercial_untrustworthiness", "market-regulator", 0.04),
    ("bank_arrears", "bank-a", 0.24),
    ("private_lending_breach", "bank-a", 0.07),
    ("illegal_fundraising_investigation", "financial-regulator", 0.003),
    ("guarantee_breach", "bank-a", 0.04),
    ("unpaid_debt_judgement", "court", 0.02),
    ("late_public_fees", "utility-a", 0.43),
    ("fee_arrears_judgement", "court", 0.04),
    ("heating_tampering", "utility-a", 0.006),
    ("utility_theft", "utility-a", 0.007),
    ("utility_equipment_destroyed", "utility-a", 0.002),
)


def _rongcheng_rows(rng: np.random.Generator, conduct: np.ndarray, c: dict[str, float],
                    ) -> tuple[pa.Array, pa.Array, pa.Array]:
    n = len(conduct)
    shares = np.array([t[2] for t in _RONGCHENG])
    kind = rng.choice(len(_RONGCHENG), size=n, p=shares / shares.sum())
    deduction = _strings(rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1]),
                         ['{"deduction":5}', '{"deduction":10}', '{"deduction":30}',
                          '{"deduction":50}'])
    cycles = _strings(_lognormal_int(rng, c["cycles_median"] * np.exp(-c["cycles_slope"]
                                                                     * conduct),
                                     c["cycles_sigma"], 1, 12, n) - 1,
                      [f'{{"cycles":{k}}}' for k in range(1, 13)])
    empty = _strings(np.zeros(n, np.int32), ["{}"])
    names = [t[0] for t in _RONGCHENG]
    attributes = pc.case_when(
        pc.make_struct(pa.array(kind == names.index("other_commercial_untrustworthiness")),
                       pa.array(kind == names.index("bank_arrears"))),
        deduction, cycles, empty)
    sources = _strings(kind.astype(np.int32), [t[1] for t in _RONGCHENG])
    return sources, _strings(kind.astype(np.int32), names), attributes


# Reputation: (type, share of a member's events); the bundled scenario's mean rates
# (impact/scenarios/reputation.yaml), before conduct moves votes to downvotes and flags.
_REPUTATION: tuple[tuple[str, float], ...] = (
    ("question_upvoted", 0.21),
    ("answer_upvoted", 0.51),
    ("answer_accepted", 0.08),
    ("accepted_an_answer", 0.065),
    ("downvote_received", 0.095),
    ("downvote_cast", 0.032),
    ("spam_flags_reached", 0.0),
    ("bounty_awarded", 0.0045),
    ("bounty_offered", 0.0025),
)


def _reputation_rows(rng: np.random.Generator, conduct: np.ndarray, c: dict[str, float],
                     ) -> tuple[pa.Array, pa.Array, pa.Array]:
    n = len(conduct)
    shares = np.array([t[1] for t in _REPUTATION])
    kind = rng.choice(len(_REPUTATION), size=n, p=shares / shares.sum())
    # Poorer conduct: some upvotes become downvotes received, a few rows moderation flags.
    upvote = kind <= 1
    kind = np.where(upvote & (rng.random(n) < _expit(c["downvote_logit"]
                                                     - c["downvote_slope"] * conduct)),
                    4, kind)
    kind = np.where(rng.random(n) < _expit(c["spam_logit"] - c["spam_slope"] * conduct), 6,
                    kind)
    bounty = _strings(rng.choice(4, size=n, p=[0.4, 0.35, 0.15, 0.1]),
                      ['{"amount":50}', '{"amount":100}', '{"amount":200}',
                       '{"amount":500}'])
    empty = _strings(np.zeros(n, np.int32), ["{}"])
    attributes = pc.case_when(pc.make_struct(pa.array(kind >= 7)), bounty, empty)
    sources = _strings(np.zeros(n, np.int32), ["community-a"])
    return sources, _strings(kind.astype(np.int32), [t[0] for t in _REPUTATION]), attributes


CALIBRATION: dict[str, dict[str, float]] = {
    "sesame": {
        "activity_sigma": 0.7, "activity_conduct": 0.7, "tenure_min": 0.3,
        "bad_logit": -3.5, "bad_slope": 1.5,
        "default_logit": -2.5, "default_slope": 1.0,
        "amount_median": 2600.0, "amount_slope": 0.5, "amount_sigma": 0.8,
        "days_late_median": 7.0, "days_late_slope": 0.5, "days_late_sigma": 1.0,
        "late_hours_median": 5.0, "late_hours_sigma": 1.2,
    },
    "rongcheng": {
        "activity_sigma": 1.8, "activity_conduct": -1.0, "tenure_min": 1.0,
        "cycles_median": 1.5, "cycles_slope": 0.3, "cycles_sigma": 0.7,
    },
    "reputation": {
        "pareto_alpha": 2.0, "tenure_min": 0.1,
        "downvote_logit": -2.5, "downvote_slope": 0.8,
        "spam_logit": -7.5, "spam_slope": 1.5,
    },
}
"""The generator's calibration per profile (docs/impact.md, "The demo population").

``activity_*``: a subject's share of the events is ``exp(sigma x latent)`` with
``latent = rho x conduct + sqrt(1 - rho^2) x noise`` (``reputation``: Pareto).
``*_logit`` / ``*_slope``: the probability of an adverse outcome is
``expit(logit - slope x conduct)``; ``*_median`` / ``*_sigma``: lognormal sizes."""


def horizon(population: Population) -> tuple[datetime, datetime]:
    """The time span the population's events occur in: ``(start, end)``."""
    return population.end - timedelta(days=population.years * 365.25), population.end
