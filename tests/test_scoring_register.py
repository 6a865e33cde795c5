"""The event-type register in the ledger: two operators, append-only versions, bound publications.

Real ledgers (SQLite and PostgreSQL), real principals, real records: every refusal names
its field and records nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.governance import APPROVER, PROPOSER, SHIPPED, operators, put_in_force
from trustledger.errors import (
    ConfigError,
    ConflictError,
    InputError,
    LintError,
    NotFoundError,
    PolicyError,
)
from trustledger.ledger import Ledger
from trustledger.principals import (
    PermissionDeniedError,
    Role,
    ServiceLedger,
    add_principal,
    revoke_principal,
    rotate_key,
)
from trustledger.registry import (
    APPROVED,
    PROPOSED,
    NoRegisterError,
    allowed_types,
    approve_register,
    propose_register,
    register_by_hash,
    register_in_force,
    registers,
    source_types,
)
from trustledger.scoring import PUBLISHED, publish_policy, published_policies

ROOT = Path(__file__).resolve().parent.parent
SESAME = ROOT / "policies" / "sesame.yaml"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
TEXT = SHIPPED.read_text(encoding="utf-8")
SECOND = TEXT.replace("title: Event types of the shipped example policies",
                      "title: Event types of the shipped example policies, second version")
THIRD = TEXT.replace("title: Event types of the shipped example policies",
                     "title: Event types of the shipped example policies, third version")


@pytest.fixture
def ledger(database_url: str) -> Iterator[ServiceLedger]:
    """A ledger with two operators (no register yet)."""
    with ServiceLedger.open(database_url, clock=lambda: NOW) as opened:
        operators(opened, PROPOSER, APPROVER, "third-operator")
        yield opened


def _unchanged(ledger: Ledger) -> tuple[int, str]:
    return ledger.head()


def test_without_an_approved_register_none_is_in_force_and_the_message_says_how(
        ledger: ServiceLedger) -> None:
    with pytest.raises(NoRegisterError, match=r"register propose FILE --by OPERATOR.*"
                                              r"register approve HASH --by OTHER"):
        register_in_force(ledger)
    proposal = propose_register(ledger, TEXT, PROPOSER)
    assert proposal.status == "pending"
    with pytest.raises(NoRegisterError):  # proposed is not approved: no fallback either
        register_in_force(ledger)
    with pytest.raises(NoRegisterError, match="no event-type register is in force"):
        publish_policy(ledger, SESAME)


def test_a_second_operator_approves_and_the_register_is_in_force(ledger: ServiceLedger) -> None:
    proposal = propose_register(ledger, TEXT, PROPOSER)
    approved = approve_register(ledger, proposal.hash, APPROVER)
    assert (approved.status, approved.proposed_by, approved.approved_by) == (
        "in_force", PROPOSER, APPROVER)
    current = register_in_force(ledger)
    assert current.hash == proposal.hash and current.name == "shipped"
    kinds = [e.kind for e in ledger.records() if e.kind in (PROPOSED, APPROVED)]
    assert kinds == [PROPOSED, APPROVED]
    recorded = next(ledger.records(kind=PROPOSED)).payload
    assert recorded is not None
    assert recorded["source"] == TEXT and recorded["proposed_by"] == PROPOSER


def test_the_proposer_cannot_approve_their_own_proposal(ledger: ServiceLedger) -> None:
    proposal = propose_register(ledger, TEXT, PROPOSER)
    before = _unchanged(ledger)
    with pytest.raises(ConflictError, match=r"approved_by: 'register-proposer' proposed this "
                                            r"register; a second operator must approve it"):
        approve_register(ledger, proposal.hash, PROPOSER)
    assert ledger.head() == before
    assert registers(ledger)[0].status == "pending"


@pytest.mark.parametrize("who", ["nobody", "bank-a", "gone-operator"])
def test_only_active_operators_propose_and_approve(ledger: ServiceLedger, who: str) -> None:
    put_in_force(ledger)  # so a source can be issued
    add_principal(ledger, "bank-a", Role.SOURCE, accreditations=("bill_paid",),
                  domains=("finance",))
    gone = add_principal(ledger, "gone-operator", Role.OPERATOR).principal
    revoke_principal(ledger, gone.id)
    before = _unchanged(ledger)
    with pytest.raises(PermissionDeniedError, match=f"proposed_by: '{who}' is not an active "
                                                    "operator principal"):
        propose_register(ledger, SECOND, who)
    assert ledger.head() == before
    proposal = propose_register(ledger, SECOND, PROPOSER)
    before = _unchanged(ledger)
    with pytest.raises(PermissionDeniedError, match=f"approved_by: '{who}' is not an active "
                                                    "operator principal"):
        approve_register(ledger, proposal.hash, who)
    assert ledger.head() == before


def test_a_refused_register_is_not_recorded_and_the_error_names_line_and_rule(
        ledger: ServiceLedger) -> None:
    before = _unchanged(ledger)
    bad = TEXT.replace("    category: credit_repayment\n", "    category: political_opinion\n",
                       1)
    with pytest.raises(LintError) as refused:
        propose_register(ledger, bad, PROPOSER, "bad-register.yaml")
    problem = refused.value.problems[0]
    assert problem.location.file == "bad-register.yaml" and problem.location.line is not None
    assert problem.rule and "political_opinion" in str(refused.value)
    with pytest.raises(PolicyError, match=r"broken\.yaml:\d+"):
        propose_register(ledger, "register: [unclosed", PROPOSER, "broken.yaml")
    assert ledger.head() == before
    assert registers(ledger) == []


def test_unknown_and_malformed_hashes_are_refused(ledger: ServiceLedger) -> None:
    before = _unchanged(ledger)
    with pytest.raises(NotFoundError, match=r"hash: no register sha256:0{64} was proposed"):
        approve_register(ledger, "sha256:" + "0" * 64, APPROVER)
    with pytest.raises(InputError, match="hash: 'abc' is not a register hash"):
        approve_register(ledger, "abc", APPROVER)
    with pytest.raises(NotFoundError, match="hash: no register"):
        register_by_hash(ledger, "sha256:" + "1" * 64)
    assert ledger.head() == before


def test_an_approved_proposal_is_not_approved_twice(ledger: ServiceLedger) -> None:
    proposal = propose_register(ledger, TEXT, PROPOSER)
    approve_register(ledger, proposal.hash, APPROVER)
    before = _unchanged(ledger)
    with pytest.raises(ConflictError, match=r"hash: register sha256:\w+ was already approved "
                                            r"by 'register-approver' and is in force"):
        approve_register(ledger, proposal.hash, "third-operator")
    with pytest.raises(ConflictError, match="is already in force"):
        propose_register(ledger, TEXT, "third-operator")
    assert ledger.head() == before


def test_a_proposal_overtaken_by_another_approval_is_superseded(ledger: ServiceLedger) -> None:
    first = propose_register(ledger, SECOND, PROPOSER)
    second = propose_register(ledger, THIRD, "third-operator")
    approve_register(ledger, second.hash, APPROVER)
    before = _unchanged(ledger)
    with pytest.raises(ConflictError, match=r"hash: the proposal of sha256:\w+ is superseded"):
        approve_register(ledger, first.hash, APPROVER)
    assert ledger.head() == before
    statuses = {p.hash: (p.status, p.superseded_by) for p in registers(ledger)}
    assert statuses == {first.hash: ("superseded", second.hash),
                        second.hash: ("in_force", None)}
    again = propose_register(ledger, SECOND, PROPOSER)  # proposed again: a new proposal
    assert again.seq > first.seq and again.status == "pending"
    approve_register(ledger, again.hash, APPROVER)
    assert register_in_force(ledger).hash == first.hash


def test_every_version_stays_readable_and_a_replaced_one_needs_a_new_proposal(
        ledger: ServiceLedger) -> None:
    first = put_in_force(ledger, TEXT)
    second = put_in_force(ledger, SECOND)
    assert register_in_force(ledger).hash == second.hash != first.hash
    assert register_by_hash(ledger, first.hash).source == TEXT
    assert [p.status for p in registers(ledger)] == ["replaced", "in_force"]
    with pytest.raises(ConflictError, match="later replaced; propose it again"):
        approve_register(ledger, first.hash, "third-operator")


def test_a_pending_version_proposed_again_is_the_same_proposal(ledger: ServiceLedger) -> None:
    first = propose_register(ledger, TEXT, PROPOSER)
    before = _unchanged(ledger)
    again = propose_register(ledger, TEXT, "third-operator")
    assert again == first and ledger.head() == before


# -- publications ----------------------------------------------------------------------------


def test_a_publication_records_its_register_and_compiles_against_it(
        ledger: ServiceLedger) -> None:
    first = put_in_force(ledger)
    published = publish_policy(ledger, SESAME)
    payload = next(ledger.records(kind=PUBLISHED)).payload
    assert payload is not None and payload["register"] == first.hash
    assert published.register_hash == first.hash
    # A newer register does not change what a published version means.
    second = put_in_force(ledger, SECOND)
    recorded = published_policies(ledger)[0]
    assert recorded.register_hash == first.hash != second.hash
    assert recorded.compile().register_hash == first.hash
    assert recorded.compile().hash == published.hash


def test_the_same_version_under_another_register_is_refused(ledger: ServiceLedger) -> None:
    put_in_force(ledger)
    publish_policy(ledger, SESAME)
    assert publish_policy(ledger, SESAME).seq == published_policies(ledger)[0].seq  # idempotent
    put_in_force(ledger, SECOND)
    before = _unchanged(ledger)
    with pytest.raises(ConflictError, match=r"hash: policy sesame .* was published .* under "
                                            r"register sha256:\w+; the register in force is"):
        publish_policy(ledger, SESAME)
    assert ledger.head() == before


def test_a_publication_from_before_the_register_is_refused_when_compiled(
        ledger: ServiceLedger) -> None:
    ledger.append_record(PUBLISHED, {"name": "old", "hash": "sha256:" + "2" * 64,
                                     "effective_from": "2025-01-01T00:00:00+00:00",
                                     "source": SESAME.read_text(encoding="utf-8")})
    old = published_policies(ledger)[0]
    assert old.register_hash is None
    with pytest.raises(ConfigError, match=r"was published before the event-type register and "
                                          r"names none, so it cannot be compiled; a ledger "
                                          r"recorded before the register .* must be rebuilt"):
        old.compile()


# -- sources and their domains ----------------------------------------------------------------


def test_a_source_is_accredited_per_domain(ledger: ServiceLedger) -> None:
    put_in_force(ledger)
    issued = add_principal(ledger, "court", Role.SOURCE,
                           accreditations=("breach_judgement", "unpaid_debt_judgement"),
                           domains=("commerce", "finance"))
    assert issued.principal.domains == ("commerce", "finance")
    audit = [e.payload for e in ledger.records(kind="principal.added")][-1]
    assert audit is not None and audit["domains"] == ["commerce", "finance"]
    rotated = rotate_key(ledger, issued.principal.id)
    assert rotated.principal.domains == ("commerce", "finance")


@pytest.mark.parametrize(("accredit", "domains", "message"), [
    (("breach_judgement",), ("finance",),
     "accreditations: event type 'breach_judgement' is in domain 'commerce' (register "
     "shipped); source 'court' is accredited for domain(s) 'finance' only"),
    (("bill_paid",), ("lgal",), "domains: 'lgal' is not a domain of the register in force"),
    (("no_such_type",), ("finance",),
     "accreditations: event type 'no_such_type' is not in the register in force"),
    (("bill_paid",), (), "domains: a source must be accredited for at least one domain"),
    (("bill_paid",), ("finance", "finance"), "domains: a domain is listed twice"),
    (("bill_paid",), ("Finance",), "domains: 'Finance' is not an identifier"),
])
def test_an_accreditation_the_register_does_not_bear_out_is_refused(
        ledger: ServiceLedger, accredit: tuple[str, ...], domains: tuple[str, ...],
        message: str) -> None:
    put_in_force(ledger)
    before = _unchanged(ledger)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        add_principal(ledger, "court", Role.SOURCE, accreditations=accredit, domains=domains)
    assert ledger.head() == before


def test_domains_are_for_sources_and_need_a_register(ledger: ServiceLedger) -> None:
    with pytest.raises(ConflictError, match="accreditations: no event-type register is in "
                                            "force"):
        add_principal(ledger, "court", Role.SOURCE, accreditations=("bill_paid",),
                      domains=("finance",))
    with pytest.raises(InputError, match="domains: only sources have them, not a reviewer"):
        add_principal(ledger, "rev", Role.REVIEWER, domains=("finance",))


def test_a_source_may_report_its_accredited_types_of_its_domains_only(
        ledger: ServiceLedger) -> None:
    put_in_force(ledger)
    bank = add_principal(ledger, "bank", Role.SOURCE,
                         accreditations=("bill_paid", "repayment_late"),
                         domains=("finance",)).principal
    register = register_in_force(ledger)
    assert allowed_types(register, bank) == {"bill_paid", "repayment_late"}
    # The register moves bill_paid to another domain: the bank may no longer report it.
    moved = TEXT.replace("  bill_paid:\n    label: bill paid\n    domain: finance",
                         "  bill_paid:\n    label: bill paid\n    domain: utilities")
    assert moved != TEXT
    put_in_force(ledger, moved)
    assert allowed_types(register_in_force(ledger), bank) == {"repayment_late"}
    assert source_types(register_in_force(ledger), [bank]) == {"bank": {"repayment_late"}}


def test_two_approvals_at_once_leave_exactly_one_in_force(ledger: ServiceLedger) -> None:
    """Approvals are serialised by the ledger's write lock: of two pending proposals approved
    at the same moment, one is in force and the other is refused as superseded."""
    first = propose_register(ledger, SECOND, PROPOSER)
    second = propose_register(ledger, THIRD, PROPOSER)
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def approve(register_hash: str, by: str) -> None:
        start.wait()
        try:
            approve_register(ledger, register_hash, by)
            outcomes[register_hash] = "approved"
        except ConflictError as exc:
            outcomes[register_hash] = str(exc)

    threads = [threading.Thread(target=approve, args=(first.hash, APPROVER)),
               threading.Thread(target=approve, args=(second.hash, "third-operator"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(v == "approved" for v in outcomes.values()) == [False, True]
    winner = next(h for h, v in outcomes.items() if v == "approved")
    loser = next(h for h, v in outcomes.items() if v != "approved")
    assert "is superseded" in outcomes[loser]
    assert register_in_force(ledger).hash == winner
    assert len(list(ledger.records(kind=APPROVED))) == 1


def test_a_self_approval_written_around_the_rules_does_not_count(ledger: ServiceLedger) -> None:
    proposal = propose_register(ledger, TEXT, PROPOSER)
    ledger.append_record(APPROVED, {"hash": proposal.hash, "approved_by": PROPOSER})
    with pytest.raises(NoRegisterError):
        register_in_force(ledger)
    assert registers(ledger)[0].status == "pending"
    approve_register(ledger, proposal.hash, APPROVER)  # a second operator still can
    assert register_in_force(ledger).hash == proposal.hash
