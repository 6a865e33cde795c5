"""The event-type register in the ledger: proposed by one operator, approved by another.

The register (:mod:`trustledger.policy.register`) says what each event type *is* —
domain, category, gravity, attributes — apart from the policies that score them. Its
versions live in the ledger, append-only, under two-person control:

* :func:`propose_register` validates and lints a register document
  (:func:`~trustledger.policy.register.parse_register`; nothing is recorded if it is
  refused) and appends a :data:`PROPOSED` record: the YAML text, its hash and name, and
  the operator who proposed it;
* :func:`approve_register` appends an :data:`APPROVED` record naming the hash and the
  approving operator, who must be another operator than the proposer. A proposal is
  approved at most once; one proposed before another register was approved is
  *superseded* (it was written against a register no longer in force) and must be
  proposed again;
* :func:`register_in_force` is the latest approved version. There is no fallback to a
  file: a ledger without an approved register has none, and says how to get one.

Every version stays readable by hash (:func:`register_by_hash`); :func:`registers` lists
the proposals with their status. A policy publication records the hash of the register
it was compiled against (:mod:`trustledger.scoring`), and a source principal may report
only the types of its accredited domains (:func:`allowed_types`).

Operators are named by their principal name (``trustledger principal add NAME --role
operator``): the HTTP service takes the caller's, the CLI the ``--by`` option's, and
either must be an active operator principal of the ledger.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from trustledger.errors import ConfigError, ConflictError, InputError, NotFoundError
from trustledger.ledger import Entry, Ledger, entry_of
from trustledger.ledger.schema import entries
from trustledger.policy.register import Register, parse_register
from trustledger.principals.ledger import Record, ServiceLedger
from trustledger.principals.store import PermissionDeniedError, Principal, Role, principals

PROPOSED = "register.proposed"
"""Record kind of a register version proposed (its text, hash, name and proposer)."""
APPROVED = "register.approved"
"""Record kind of a proposed register approved (its hash and approver)."""
KINDS = frozenset({PROPOSED, APPROVED})
"""Every record kind this module appends."""

Status = Literal["pending", "in_force", "replaced", "superseded"]
"""Where a proposal stands: awaiting approval; approved and in force; approved and since
replaced by a later approval; never approved and overtaken by another approval."""

HOW_TO = ("an operator proposes one (`trustledger register propose FILE --by OPERATOR`, "
          "POST /v1/register/proposals) and a second operator approves it (`trustledger "
          "register approve HASH --by OTHER`, POST /v1/register/proposals/{hash}/approval)")
"""How a ledger gets a register in force, for the messages that need one."""

_HASH = re.compile(r"sha256:[0-9a-f]{64}")
_CACHE: dict[str, Register] = {}
_CACHE_MAX = 64


class NoRegisterError(NotFoundError):
    """No event-type register is in force in the ledger (two operators must approve one)."""

    def __init__(self) -> None:
        super().__init__(f"no event-type register is in force in this ledger: {HOW_TO}")


@dataclass(frozen=True, slots=True)
class Proposal:
    """One proposed register version and what became of it."""

    seq: int
    name: str
    hash: str
    source: str
    proposed_by: str
    proposed_at: datetime
    status: Status
    approved_by: str | None = None
    approved_at: datetime | None = None
    approval_seq: int | None = None
    superseded_by: str | None = None
    """For a superseded proposal: the hash whose approval overtook it."""


def fold_registers(records: Iterable[Entry]) -> list[Proposal]:
    """The proposals of register records (both kinds, in seq order), with their status; pure.

    An approval names a hash: it approves the latest pending proposal of that hash before
    it, unless its approver is that proposal's proposer (two people, even for records
    appended around :func:`approve_register`).
    """
    proposals: list[Proposal] = []
    for entry in sorted(records, key=lambda e: e.seq):
        payload = entry.payload
        if payload is None:
            continue
        if entry.kind == PROPOSED:
            proposals.append(Proposal(
                seq=entry.seq, name=str(payload["name"]), hash=str(payload["hash"]),
                source=str(payload["source"]), proposed_by=str(payload["proposed_by"]),
                proposed_at=entry.recorded_at, status="pending"))
        elif entry.kind == APPROVED:
            approved, approver = str(payload["hash"]), str(payload["approved_by"])
            target = next((i for i in range(len(proposals) - 1, -1, -1)
                           if proposals[i].hash == approved
                           and proposals[i].status == "pending"), None)
            if target is None or proposals[target].proposed_by == approver:
                # Approves nothing: approve_register never writes such a record, and one
                # written past it (a self-approval) does not count either.
                continue
            for index, p in enumerate(proposals):
                if index == target:
                    proposals[index] = replace(
                        p, status="in_force", approved_by=approver,
                        approved_at=entry.recorded_at, approval_seq=entry.seq)
                elif p.status == "in_force":
                    proposals[index] = replace(p, status="replaced")
                elif p.status == "pending":
                    proposals[index] = replace(p, status="superseded", superseded_by=approved)
    return proposals


def _records(ledger: Ledger) -> list[Entry]:
    # Approvals first: every proposal an approval names was committed before it, so the
    # proposals read next include it.
    approvals = list(ledger.records(kind=APPROVED))
    return [*ledger.records(kind=PROPOSED), *approvals]


def _records_on(conn: sa.Connection) -> list[Entry]:
    rows = conn.execute(sa.select(*entries.c).where(entries.c.kind.in_(sorted(KINDS)))
                        .order_by(entries.c.seq))
    return [entry_of(row) for row in rows]


def registers(ledger: Ledger) -> list[Proposal]:
    """Every proposed register version with its status, in proposal order."""
    return fold_registers(_records(ledger))


def in_force(proposals: Sequence[Proposal]) -> Proposal:
    """The proposal in force among ``proposals``; :class:`NoRegisterError` if none is."""
    for p in proposals:
        if p.status == "in_force":
            return p
    raise NoRegisterError


def compiled(proposal: Proposal) -> Register:
    """The :class:`Register` a proposal records (validated and linted again, once per process).

    :class:`~trustledger.errors.ConfigError` if the recorded text no longer reads as the
    register it was recorded as (a changed hash).
    """
    found = _CACHE.get(proposal.hash)
    if found is None:
        found = parse_register(proposal.source, f"ledger:{proposal.seq}:register")
        if found.hash != proposal.hash:
            raise ConfigError(f"ledger entry seq={proposal.seq}: the register recorded as "
                              f"{proposal.hash} now reads as {found.hash}")
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[proposal.hash] = found
    return found


def register_in_force(ledger: Ledger) -> Register:
    """The latest approved register; :class:`NoRegisterError` (saying how to get one) if none."""
    return compiled(in_force(registers(ledger)))


def register_on(conn: sa.Connection) -> Register:
    """:func:`register_in_force` read on ``conn`` (inside another unit of work)."""
    return compiled(in_force(fold_registers(_records_on(conn))))


def register_by_hash(ledger: Ledger, register_hash: str) -> Register:
    """Any recorded register version (proposed, in force or past) by its hash."""
    _check_hash(register_hash)
    for p in reversed(registers(ledger)):
        if p.hash == register_hash:
            return compiled(p)
    raise NotFoundError(f"hash: no register {register_hash} is recorded in this ledger; "
                        "`trustledger register list` (GET /v1/register/proposals) lists them")


def _check_hash(value: str) -> None:
    if not _HASH.fullmatch(value):
        raise InputError(f"hash: {value!r} is not a register hash (sha256: and 64 lower-case "
                         "hex digits, as `trustledger register list` shows it)")


def _operator(conn: sa.Connection, name: str, field: str) -> None:
    """Refuse ``name`` unless it is an active operator principal."""
    found = conn.execute(sa.select(principals.c.id).where(
        principals.c.name == name, principals.c.role == Role.OPERATOR.value,
        principals.c.revoked_at_us.is_(None))).first()
    if found is None:
        raise PermissionDeniedError(
            f"{field}: {name!r} is not an active operator principal; only operators propose "
            "and approve registers (`trustledger principal add NAME --role operator`)")


def propose_register(ledger: ServiceLedger, text: str, by: str,
                     file_name: str = "register") -> Proposal:
    """Validate, lint and record a register version proposed by operator ``by``.

    Raises :class:`~trustledger.errors.PolicyError` or
    :class:`~trustledger.errors.LintError` (with locations in ``file_name`` and rules;
    nothing is recorded then), :class:`~trustledger.principals.PermissionDeniedError` if
    ``by`` is not an active operator and :class:`~trustledger.errors.ConflictError` if
    this version is already in force. A version already awaiting approval is returned
    as it was proposed (nothing is recorded again).
    """
    register = parse_register(text, file_name)

    def work(conn: sa.Connection, _now_us: int) -> tuple[Proposal | None, list[Record]]:
        _operator(conn, by, "proposed_by")
        for p in fold_registers(_records_on(conn)):
            if p.hash != register.hash:
                continue
            if p.status == "pending":
                return p, []
            if p.status == "in_force":
                raise ConflictError(f"hash: register {register.hash} is already in force "
                                    f"(approved by {p.approved_by!r}); nothing to propose")
        return None, [Record(PROPOSED, {"name": register.name, "hash": register.hash,
                                        "source": text, "proposed_by": by})]

    earlier, written = ledger.write(work)
    if earlier is not None:
        return earlier
    return _find(ledger, written[0].seq)


def approve_register(ledger: ServiceLedger, register_hash: str, by: str) -> Proposal:
    """Approve the pending proposal of ``register_hash``: it is in force from now on.

    ``by`` must be an active operator other than the proposer. Refused, nothing
    recorded: an unknown hash (:class:`~trustledger.errors.NotFoundError`), the
    proposer approving their own proposal, a proposal already approved or superseded
    (:class:`~trustledger.errors.ConflictError`, naming the field).
    """
    _check_hash(register_hash)

    def work(conn: sa.Connection, _now_us: int) -> tuple[None, list[Record]]:
        _operator(conn, by, "approved_by")
        found = [p for p in fold_registers(_records_on(conn)) if p.hash == register_hash]
        if not found:
            raise NotFoundError(f"hash: no register {register_hash} was proposed; propose it "
                                "first (`trustledger register propose FILE --by OPERATOR`)")
        p = found[-1]
        if p.status == "in_force":
            raise ConflictError(f"hash: register {register_hash} was already approved by "
                                f"{p.approved_by!r} and is in force")
        if p.status == "replaced":
            raise ConflictError(f"hash: register {register_hash} was approved by "
                                f"{p.approved_by!r} and later replaced; propose it again to "
                                "bring it back")
        if p.status == "superseded":
            raise ConflictError(f"hash: the proposal of {register_hash} is superseded: "
                                f"register {p.superseded_by} was approved after it was "
                                "proposed; propose it again, to be reviewed against the "
                                "register in force")
        if p.proposed_by == by:
            raise ConflictError(f"approved_by: {by!r} proposed this register; a second "
                                "operator must approve it")
        # Canonical JSON is checked again by compiling: a record that does not read back
        # is never approved.
        compiled(p)
        return None, [Record(APPROVED, {"hash": register_hash, "approved_by": by})]

    _, written = ledger.write(work)
    approval = written[0].seq
    for p in registers(ledger):
        if p.approval_seq == approval:
            return p
    raise ConfigError(f"ledger entry seq={approval}: the approval just written is not read back")


def _find(ledger: Ledger, seq: int) -> Proposal:
    for p in registers(ledger):
        if p.seq == seq:
            return p
    raise ConfigError(f"ledger entry seq={seq}: the proposal just written is not read back")


# -- sources ------------------------------------------------------------------------------------


def register_domains(register: Register) -> frozenset[str]:
    """Every domain some type of ``register`` is in."""
    return frozenset(t.domain for t in register.event_types.values())


def accreditation_problems(register: Register, name: str, accreditations: Iterable[str],
                           domains: Iterable[str]) -> list[str]:
    """Why a source may not be accredited so under ``register`` (messages naming the field).

    Each domain must be one the register uses; each accredited type must be a registered
    type of one of the source's domains.
    """
    known = register_domains(register)
    wanted = tuple(domains)
    problems = [f"domains: {d!r} is not a domain of the register in force "
                f"({register.name}, {register.hash}); its domains: {', '.join(sorted(known))}"
                for d in wanted if d not in known]
    for kind in accreditations:
        declared = register.event_types.get(kind)
        if declared is None:
            problems.append(f"accreditations: event type {kind!r} is not in the register in "
                            f"force ({register.name}, {register.hash})")
        elif declared.domain not in wanted:
            problems.append(f"accreditations: event type {kind!r} is in domain "
                            f"{declared.domain!r} (register {register.name}); source "
                            f"{name!r} is accredited for domain(s) "
                            f"{', '.join(repr(d) for d in wanted)} only")
    return problems


def allowed_types(register: Register, principal: Principal) -> frozenset[str]:
    """The event types a source may report: its accreditations in its domains, as registered."""
    domains = frozenset(principal.domains)
    return frozenset(t for t in principal.accreditations
                     if (declared := register.event_types.get(t)) is not None
                     and declared.domain in domains)


def domain_problem(register: Register, principal: Principal, kind: str) -> str | None:
    """Why ``principal`` may not report ``kind`` for its domain, if that is why (else ``None``).

    A type the principal is accredited for but whose registered domain is not one of
    its domains; the message names the type and both domains.
    """
    declared = register.event_types.get(kind)
    if kind not in principal.accreditations or declared is None:
        return None
    if declared.domain in principal.domains:
        return None
    return (f"event type {kind!r} is in domain {declared.domain!r} in the register in force "
            f"({register.name}); {principal.name!r} is accredited for domain(s) "
            f"{', '.join(repr(d) for d in principal.domains) or '(none)'} only")


def source_types(register: Register, sources: Iterable[Principal]) -> dict[str, frozenset[str]]:
    """Source name -> the event types it may report (:func:`allowed_types`, keys merged)."""
    allowed: dict[str, frozenset[str]] = {}
    for principal in sources:
        if principal.role is Role.SOURCE:
            allowed[principal.name] = (allowed.get(principal.name, frozenset())
                                       | allowed_types(register, principal))
    return allowed

