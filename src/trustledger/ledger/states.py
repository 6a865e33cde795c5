"""Subject states in the database: packed maintained evaluations, one per subject and policy.

The ``subject_states`` table (:data:`trustledger.ledger.schema.subject_states`, Alembic
revision ``0005``) holds derived data, never the record: each row is a
:func:`trustledger.engine.compact.pack` of a subject's maintained evaluation under one
policy version, with

* ``basis_seq``: the ledger seq of the subject's last entry the state reflects (its
  events and rights records, not the access log);
* ``inputs``: a fingerprint of what the state was built from (:func:`fingerprint`: the
  policy, the opt-ins, the events disputes left out, the events kept);
* ``written_at_us``: when it was written;
* ``decision`` (revision ``0006``): the latest decision read from that state, packed
  (:mod:`trustledger.engine.decided`), so a restart or another worker reuses it while
  it is fresh; a row written without one clears it.

A reader serves a row only when both still match the subject as the ledger has it now;
otherwise it builds the state again (and writes it). So a lost or late write costs one
rebuild, never a wrong answer, and rows are written *after* the events that change them
(by whoever reads the subject next), in group commits by :class:`StateWriter`: the
append path stays as it is. Of two writers, the row with the later ``basis_seq`` wins.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import queue
import re
import threading
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import postgresql, sqlite

from trustledger.ledger import Entry, database, entry_of
from trustledger.ledger.chain import COLUMNS, EVENT_KIND, StoredEntry
from trustledger.ledger.schema import subject_states

log = logging.getLogger("trustledger.ledger")
_MAX_GROUP = 500


class Snapshot(NamedTuple):
    """A subject as a decision first needs it, without its events.

    Read by :meth:`SubjectStates.snapshots`.
    """

    at: int
    """The ledger's head when it was read."""
    records: list[Entry]
    """The subject's rights records (its entries but its events and excluded kinds), in
    seq order."""
    basis: int
    """The seq of the subject's last entry of a kind not excluded (0: none)."""
    stored: StoredState | None
    """Its stored state under the policy asked for, if any (stale or not)."""


def _seq(entry: Entry) -> int:
    return entry.seq


@dataclass(frozen=True, slots=True)
class StoredState:
    """One row of ``subject_states``: a packed state and what it reflects.

    ``decision``: the packed evaluation of the latest decision read from ``state``
    (:func:`trustledger.engine.decided.pack_evaluation`), if any.
    """

    subject: str
    policy_hash: str
    basis_seq: int
    inputs: str
    state: bytes
    decision: bytes | None = None


def fingerprint(policy_hash: str, opt_ins: Iterable[str],
                left_out: Iterable[tuple[str, str]]) -> str:
    """A digest of a state's inputs besides the subject's entries.

    The policy, the opt-ins, the events disputes leave out (event keys ``(source,
    source_event_id)``). The events themselves are covered by ``basis_seq``: every
    change to them (an event, a correction, a withdrawal, a purge) is an entry about the
    subject, so it moves the basis. Order does not matter.
    """
    h = hashlib.sha256(policy_hash.encode())
    for part in (sorted(opt_ins), sorted(left_out)):
        h.update(b"\x1e")
        for item in part:
            h.update(b"\x1f")
            h.update(item.encode() if isinstance(item, str) else "\x00".join(item).encode())
    return h.hexdigest()


class SubjectStates:
    """Reads and writes ``subject_states`` on a ledger's database engine."""

    def __init__(self, engine: sa.Engine) -> None:
        """Use the ledger's engine (the table exists once the ledger is migrated)."""
        self._engine = engine
        self._snapshot: tuple[frozenset[str], _Raw] | None = None
        self.snapshots_read = 0
        """How many :meth:`snapshots` statements ran (each for any number of subjects)."""
        self._select = (sa.select(subject_states.c.basis_seq, subject_states.c.inputs,
                                  subject_states.c.state, subject_states.c.decision)
                        .where(subject_states.c.subject == sa.bindparam("subject"),
                               subject_states.c.policy_hash == sa.bindparam("policy_hash")))
        insert = (postgresql.insert(subject_states) if engine.dialect.name == "postgresql"
                  else sqlite.insert(subject_states))
        self._upsert = insert.on_conflict_do_update(
            index_elements=[subject_states.c.subject, subject_states.c.policy_hash],
            set_={"basis_seq": insert.excluded.basis_seq, "inputs": insert.excluded.inputs,
                  "state": insert.excluded.state, "decision": insert.excluded.decision,
                  "written_at_us": insert.excluded.written_at_us},
            where=insert.excluded.basis_seq >= subject_states.c.basis_seq)

    def load(self, subject: str, policy_hash: str) -> StoredState | None:
        """The subject's stored state for a policy version, if any (stale or not)."""
        with self._engine.connect() as conn:
            row = conn.execute(self._select, {"subject": subject,
                                              "policy_hash": policy_hash}).one_or_none()
        if row is None:
            return None
        return StoredState(subject, policy_hash, int(row.basis_seq), str(row.inputs),
                           bytes(row.state),
                           None if row.decision is None else bytes(row.decision))

    def snapshots(self, subjects: Collection[str], policy_hash: str,
                  exclude: Collection[str]) -> dict[str, Snapshot]:
        """What decisions need of some subjects without their events, in one statement.

        For each of ``subjects`` (each once, whatever the order), its :class:`Snapshot`:
        the ledger's head; the subject's entries but its events and the ``exclude`` kinds
        (its rights records: consents, disputes, reviews, purges, erasure), in seq order;
        the seq of its last entry of any kind but ``exclude`` (the basis a stored state
        must reflect); and its stored state under ``policy_hash``, if any (stale or
        not). One statement (one snapshot, one round trip, whatever the number of
        subjects: the database's pages are read once for all of them), compiled once and
        run straight through the driver.
        """
        kinds = frozenset(exclude)
        if self._snapshot is None or self._snapshot[0] != kinds:
            dialect = self._engine.dialect
            self._snapshot = (kinds, _Raw(_snapshot_sql(kinds, dialect.name), dialect))
        wanted = sorted(set(subjects))
        given = wanted if self._engine.dialect.name == "postgresql" else json.dumps(wanted)
        rows = self._snapshot[1].run(self._engine, subjects=given, policy_hash=policy_hash)
        self.snapshots_read += 1
        at, basis = 0, dict.fromkeys(wanted, 0)
        found: dict[str, list[Entry]] = {s: [] for s in wanted}
        stored: dict[str, StoredState] = {}
        for row in rows:
            kind, subject = row[1], row[2]
            if kind == _HEAD:
                at = int(row[0])
            elif kind == _BASIS:
                basis[subject] = int(row[0] or 0)
            elif kind == _STATE:
                stored[subject] = StoredState(
                    subject, policy_hash, int(row[0]), str(row[3]), _blob(row[6]),
                    None if row[9] is None else _blob(row[9]))
            else:
                found[subject].append(entry_of(StoredEntry(*row)))
        return {s: Snapshot(at, sorted(found[s], key=_seq), basis[s], stored.get(s))
                for s in wanted}

    def save(self, states: Sequence[StoredState], written_at_us: int) -> None:
        """Write ``states`` in one transaction; a row with a later ``basis_seq`` is kept."""
        if not states:
            return
        rows = [{"subject": s.subject, "policy_hash": s.policy_hash, "basis_seq": s.basis_seq,
                 "inputs": s.inputs, "state": s.state, "decision": s.decision,
                 "written_at_us": written_at_us}
                for s in states]
        with database.writing(self._engine) as conn:
            conn.execute(self._upsert, rows)

    def forget(self, subject: str) -> None:
        """Delete every stored state of a subject (erasure: no derived data stays)."""
        with database.writing(self._engine) as conn:
            conn.execute(sa.delete(subject_states).where(subject_states.c.subject == subject))


def _blob(data: str | bytes) -> bytes:
    """A blob of the snapshot: base64 text on PostgreSQL (see :func:`_snapshot_sql`)."""
    return base64.b64decode(data) if isinstance(data, str) else bytes(data)


_HEAD = "~head"
_BASIS = "~basis"
_KIND = re.compile(r"[a-z][a-z0-9_.-]*")
_STATE = "~state"


def _snapshot_sql(exclude: frozenset[str], dialect: str) -> str:
    """The statement of :meth:`SubjectStates.snapshots`: records, basis, head and states.

    ``:subjects`` is a JSON array on SQLite (read with ``json_each``), an array on
    PostgreSQL. Every row but the head's names its subject in the ``subject`` column; a
    stored state comes in the ``payload`` column and its decision in ``hash`` (base64
    text on PostgreSQL, whose union cannot mix text and bytes; the blobs themselves on
    SQLite), its inputs digest in ``source``.
    """
    for kind in exclude:
        if not _KIND.fullmatch(kind):  # inlined below: ledger kinds are plain names
            raise ValueError(f"not a ledger kind: {kind!r}")
    excluded = ", ".join(f"'{k}'" for k in sorted(exclude))
    records = ", ".join(f"'{k}'" for k in sorted({*exclude, EVENT_KIND}))
    columns = ", ".join(COLUMNS)
    if dialect == "postgresql":
        state, decision = "encode(state, 'base64')", "encode(decision, 'base64')"
        among = "subject = ANY(:subjects)"
    else:
        state, decision = "state", "decision"
        among = "subject IN (SELECT value FROM json_each(:subjects))"
    return (f"SELECT {columns} FROM entries WHERE {among} "
            f"AND kind NOT IN ({records}) "
            f"UNION ALL SELECT max(seq), '{_BASIS}', subject, NULL, NULL, 0, NULL, '', '', '' "
            f"FROM entries WHERE {among} AND kind NOT IN ({excluded}) GROUP BY subject "
            f"UNION ALL SELECT seq, '{_HEAD}', NULL, NULL, NULL, 0, NULL, '', '', '' "
            "FROM ledger_head WHERE id = 1 "
            f"UNION ALL SELECT basis_seq, '{_STATE}', subject, inputs, NULL, 0, {state}, '', "
            f"'', {decision} "
            f"FROM subject_states WHERE {among} AND policy_hash = :policy_hash")


class _Raw:
    """A statement written with ``:name`` parameters, run straight through the driver."""

    def __init__(self, sql: str, dialect: sa.Dialect) -> None:
        self.names = re.findall(r":(\w+)", sql)
        if dialect.paramstyle == "qmark":
            self.sql = re.sub(r":\w+", "?", sql)
        elif dialect.paramstyle == "pyformat":
            self.sql = re.sub(r":(\w+)", r"%(\1)s", sql)
        else:
            raise ValueError(f"unsupported driver parameter style {dialect.paramstyle}")
        self.positional = dialect.paramstyle == "qmark"

    def run(self, engine: sa.Engine, **given: Any) -> list[Any]:
        """All rows, from a pooled driver connection (one statement: one snapshot)."""
        params: Any = tuple(given[n] for n in self.names) if self.positional else given
        return database.fetch_all(engine, self.sql, params)


class StateWriter:
    """Writes states behind the reads that built them, in group commits, from one thread.

    :meth:`submit` returns at once; the writer thread takes every state submitted
    while the previous commit ran into the next one. A failed commit is logged and its
    states dropped (they are derived: the next reader builds them again).
    """

    def __init__(self, states: SubjectStates, clock_us: Callable[[], int]) -> None:
        """Start the writer thread; ``clock_us`` gives ``written_at_us``."""
        self._states = states
        self._clock_us = clock_us
        self._queue: queue.SimpleQueue[StoredState | None] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self.submitted = 0
        """How many states were submitted (one subject's, written once in a group, may be
        submitted more than once)."""
        self.written = 0
        """How many states were written."""
        self._thread = threading.Thread(target=self._run, name="subject-states", daemon=True)
        self._thread.start()

    def submit(self, state: StoredState) -> None:
        """Queue ``state`` for the next group commit."""
        with self._idle:
            self._pending += 1
            self.submitted += 1
        self._queue.put(state)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every state submitted so far is written (or dropped); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            taken: list[StoredState] = []
            item = self._queue.get()
            while True:
                if item is None:
                    stop = True
                else:
                    taken.append(item)
                if len(taken) >= _MAX_GROUP:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            group: dict[tuple[str, str], StoredState] = {}
            for s in taken:
                key = (s.subject, s.policy_hash)
                if key not in group or group[key].basis_seq <= s.basis_seq:
                    group[key] = s
            try:
                self._states.save(list(group.values()), self._clock_us())
                self.written += len(group)
            except exc.SQLAlchemyError:
                log.exception("writing %d subject states failed; they will be built again",
                              len(group))
            with self._idle:
                self._pending -= len(taken)
                self._idle.notify_all()


__all__ = ["Snapshot", "StateWriter", "StoredState", "SubjectStates", "fingerprint"]
