"""The operator statistics' maintained and columnar paths equal the reference path.

Seeded random populations under ``policies/sesame.yaml`` (an opt-in scorecard, a measure
with a holding time), on real SQLite and PostgreSQL: events late and out of order,
corrections and retractions, opt-ins granted, withdrawn and expiring, disputes (frozen
items), human reviews, an erasure — then more of them, with the clock moved, and the
maintained population brought up to date from the changes alone. Every subject's scores,
tiers and measures in force are compared (as a multiset: the statistics never name a
subject), and the aggregates with small cells suppressed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.clock import FixedClock
from tests.policies.support import example
from trustledger.api.settings import Settings
from trustledger.api.statistics import (
    Figures,
    MaintainedPopulation,
    Progress,
    aggregate,
    columnar_population,
    constant_for,
    population,
)
from trustledger.errors import InputError
from trustledger.ledger.models import EventIn
from trustledger.principals import ServiceLedger
from trustledger.rights.consent import Consent, grant_opt_in, withdraw_consent
from trustledger.rights.dispute import open_dispute
from trustledger.rights.erasure import erase
from trustledger.rights.review import request_review
from trustledger.scoring import assess_subject

SESAME = example("sesame")
START = datetime(2026, 3, 1, tzinfo=UTC)
KINDS = ["repayment_on_time", "repayment_late", "bill_paid", "bill_overdue", "debt_default",
         "identity_verified", "rental_returned"]


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[ServiceLedger]:
    clock.now = START
    with ServiceLedger.open(database_url, clock=clock) as opened:
        yield opened


class Population:
    """A random population being written to a ledger (names kept only by the test)."""

    def __init__(self, ledger: ServiceLedger, clock: FixedClock, rng: random.Random) -> None:
        self.ledger, self.clock, self.rng = ledger, clock, rng
        self.made: dict[str, list[str]] = {}
        self.consents: dict[str, Consent] = {}
        self.number = 0

    def event(self, subject: str, future: bool = False) -> EventIn:
        rng = self.rng
        kind = rng.choice(KINDS)
        table: dict[str, dict[str, Any]] = {
            "repayment_on_time": {"amount": rng.choice([50.0, 400.0, 4000.0])},
            "repayment_late": {"days_late": rng.randint(1, 90), "amount": 100.0},
            "bill_paid": {},
            "bill_overdue": {"days_overdue": rng.randint(1, 400)},
            "debt_default": {"amount": 1000.0},
            "identity_verified": {"method": "eid"},
            "rental_returned": {"late_hours": rng.choice([0, 0, 5, 50])},
        }
        attributes = table[kind]
        days = -rng.uniform(1, 20) if future else rng.uniform(0, 900)
        self.number += 1
        made = self.made.setdefault(subject, [])
        body: dict[str, Any] = {"source": "bank", "source_event_id": f"e{self.number}",
                                "subject": subject, "type": kind, "attributes": attributes,
                                "occurred_at": self.clock.now - timedelta(days=days)}
        roll = rng.random()
        if made and roll < 0.05:
            body.update(type="retraction", attributes={}, supersedes=rng.choice(made))
        elif made and roll < 0.1:
            body["supersedes"] = rng.choice(made)
        made.append(body["source_event_id"])
        return EventIn(**body)

    def subjects(self, n: int) -> None:
        """``n`` subjects with 1 to 12 events each; about half opted in."""
        events = []
        for i in range(n):
            subject = f"s{i:03d}"
            events += [self.event(subject) for _ in range(self.rng.randint(1, 12))]
        plain = [e for e in events if e.supersedes is None]
        self.rng.shuffle(plain)  # appended out of order; corrections after what they correct
        self.ledger.append_events(plain)
        for correction in (e for e in events if e.supersedes is not None):
            self.ledger.append_event(correction)
        for i in range(n):
            if self.rng.random() < 0.55:
                self.opt_in(f"s{i:03d}")

    def opt_in(self, subject: str) -> None:
        expires = None
        if self.rng.random() < 0.2:
            expires = self.clock.now + timedelta(days=self.rng.choice([3, 40]))
        self.consents[subject] = grant_opt_in(self.ledger, subject, "sesame",
                                              expires_at=expires)

    def change(self, subject: str) -> str:
        """One random change about ``subject``; what it was."""
        rng, ledger = self.rng, self.ledger
        roll = rng.random()
        if roll < 0.4:
            for _ in range(rng.randint(1, 3)):
                ledger.append_event(self.event(subject, future=rng.random() < 0.1))
            return "event"
        if roll < 0.55:
            consent = self.consents.pop(subject, None)
            if consent is None:
                self.opt_in(subject)
                return "granted"
            if consent.withdrawn_at is None and (consent.expires_at is None
                                                 or consent.expires_at > self.clock.now):
                withdraw_consent(ledger, subject, consent.seq)
            return "withdrawn"
        if roll < 0.75:
            target = rng.choice(list(ledger.events(subject)))
            assert target.seq is not None
            try:
                open_dispute(ledger, subject, target.seq, "not mine")
            except InputError as exc:  # already disputed: nothing recorded
                assert "already disputed" in str(exc), exc
            return "dispute"
        if roll < 0.95:
            current = assess_subject(ledger, subject, SESAME, self.clock.now).evaluation
            adverse = [m for m, r in current.measures.items()
                       if r.state.value in ("denied", "active")]
            if adverse:
                try:
                    request_review(ledger, current, adverse[0], statement="please")
                except InputError as exc:
                    assert "already under review" in str(exc), exc
            return "review"
        erase(ledger, subject)
        return "erased"


def rows(figures: Figures) -> list[tuple[Any, ...]]:
    """Each subject's figures, as a sorted list (no names)."""
    out = []
    for i in range(figures.subjects):
        out.append((tuple((figures.scores[c][i] is None, figures.scores[c][i] or 0.0)
                          for c in SESAME.scorecards),
                    tuple(str(figures.tiers[c][i]) for c in SESAME.scorecards),
                    tuple(figures.in_force[m][i] for m in SESAME.measures)))
    return sorted(out)


def assert_same(got: Figures, want: Figures, settings: Settings) -> None:
    """Same subjects' scores (to 1e-9), tiers and measures; the same statistics."""
    mine, reference = rows(got), rows(want)
    assert len(mine) == len(reference)
    for a, b in zip(mine, reference, strict=True):
        assert a[1:] == b[1:]
        for (none_a, x), (none_b, y) in zip(a[0], b[0], strict=True):
            assert none_a == none_b and math.isclose(x, y, rel_tol=0, abs_tol=1e-9), (a, b)
    assert aggregate(got, SESAME, settings) == aggregate(want, SESAME, settings)


def reference(ledger: ServiceLedger, at: datetime) -> Figures:
    return Figures.of(population(ledger, SESAME, at, [0, 0]), SESAME)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_maintained_and_columnar_paths_equal_the_reference(
        ledger: ServiceLedger, clock: FixedClock, seed: int) -> None:
    rng = random.Random(seed)
    world = Population(ledger, clock, rng)
    world.subjects(60)
    settings = Settings(database_url="sqlite://", clock=clock)
    kept = MaintainedPopulation()
    want = reference(ledger, clock.now)
    assert_same(kept.figures(ledger, SESAME, clock.now, Progress()), want, settings)
    assert_same(columnar_population(ledger, SESAME, clock.now, Progress()), want, settings)
    seen: set[str] = set()
    for _ in range(4):
        for subject in rng.sample(sorted(world.made), 8):
            if not ledger.events(subject) or subject in seen:
                continue
            what = world.change(subject)
            seen.add(what)
            if what == "erased":
                world.made.pop(subject)
        clock.advance(days=rng.choice([0.0, 2.0, 35.0, 100.0]))
        want = reference(ledger, clock.now)
        # Brought up to date from the changes alone (not read again), then read now.
        assert_same(kept.figures(ledger, SESAME, clock.now, Progress()), want, settings)
        assert_same(columnar_population(ledger, SESAME, clock.now, Progress()), want,
                    settings)
    assert {"event", "dispute", "review"} <= seen, seen


def test_small_cells_are_suppressed_alike(ledger: ServiceLedger, clock: FixedClock) -> None:
    """A population with cells of 1 to 9 subjects: every path hides the same cells."""
    world = Population(ledger, clock, random.Random(7))
    world.subjects(25)
    settings = Settings(database_url="sqlite://", clock=clock)
    want = aggregate(reference(ledger, clock.now), SESAME, settings)
    hidden = [cell for card in want["scorecards"].values()
              for cell in (*card["histogram"], *card["tiers"]) if cell["suppressed"]]
    assert hidden and all(cell["subjects"] is None for cell in hidden)
    for got in (MaintainedPopulation().figures(ledger, SESAME, clock.now, Progress()),
                columnar_population(ledger, SESAME, clock.now, Progress())):
        assert aggregate(got, SESAME, settings) == want


def test_a_subject_without_opt_in_has_constant_figures() -> None:
    """Sesame's one scorecard is opt-in and every measure reads it."""
    assert constant_for(SESAME, frozenset())
    assert not constant_for(SESAME, frozenset({"sesame"}))
