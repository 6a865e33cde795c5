from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.clock import FixedClock
from trustledger.errors import InputError, NotFoundError
from trustledger.ledger import Ledger
from trustledger.rights import (
    active_consents,
    consents,
    grant_decision_consent,
    grant_opt_in,
    opt_ins,
    withdraw_consent,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)



@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def ledger(database_url: str, clock: FixedClock) -> Iterator[Ledger]:
    with Ledger.open(database_url, clock=clock) as opened:
        yield opened


def test_consent_is_off_by_default(ledger: Ledger) -> None:
    assert opt_ins(ledger, "alice", T0 + timedelta(days=1)) == frozenset()
    assert consents(ledger, "alice") == []


def test_opt_in_counts_from_its_recording_until_withdrawn(ledger: Ledger,
                                                          clock: FixedClock) -> None:
    clock.advance(1)
    grant = grant_opt_in(ledger, "alice", "sesame")
    assert opt_ins(ledger, "alice", T0) == frozenset()  # before it was given
    assert opt_ins(ledger, "alice", clock.advance(1)) == {"sesame"}
    withdrawn_at = clock.advance(1)
    withdraw_consent(ledger, "alice", grant.seq)
    assert opt_ins(ledger, "alice", withdrawn_at) == frozenset()
    # What the ledger said before the withdrawal stays reproducible.
    assert opt_ins(ledger, "alice", withdrawn_at - timedelta(seconds=1)) == {"sesame"}


def test_consent_expires(ledger: Ledger, clock: FixedClock) -> None:
    grant_decision_consent(ledger, "bob", "bank-a", "lending", expires_at=T0 + timedelta(days=30))
    (active,) = active_consents(ledger.records(subject="bob"), T0 + timedelta(days=29))
    assert (active.party, active.purpose) == ("bank-a", "lending")
    assert active_consents(ledger.records(subject="bob"), T0 + timedelta(days=30)) == []


def test_consents_are_per_subject(ledger: Ledger) -> None:
    grant_opt_in(ledger, "alice", "sesame")
    assert opt_ins(ledger, "bob", T0 + timedelta(days=1)) == frozenset()


def test_withdrawing_an_unknown_or_withdrawn_consent_is_refused(ledger: Ledger) -> None:
    grant = grant_opt_in(ledger, "alice", "sesame")
    with pytest.raises(NotFoundError, match="consent_seq"):
        withdraw_consent(ledger, "bob", grant.seq)  # not bob's
    withdraw_consent(ledger, "alice", grant.seq)
    before = ledger.head()
    with pytest.raises(InputError, match="already withdrawn"):
        withdraw_consent(ledger, "alice", grant.seq)
    assert ledger.head() == before


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda lg: grant_opt_in(lg, "alice", " "), "scorecard"),
        (lambda lg: grant_decision_consent(lg, "alice", "", "lending"), "party"),
        (lambda lg: grant_decision_consent(lg, "alice", "bank", " x"), "purpose"),
        (lambda lg: grant_opt_in(lg, "alice", "s", expires_at=datetime(2027, 1, 1)), "expires_at"),
    ],
)
def test_bad_consent_names_the_field_and_writes_nothing(ledger: Ledger, call, field: str) -> None:  # type: ignore[no-untyped-def]
    before = ledger.head()
    with pytest.raises(InputError, match=field):
        call(ledger)
    assert ledger.head() == before
