"""An evaluation packed into bytes and read back equal: a decision kept for reuse.

A decision's :class:`~trustledger.engine.result.Evaluation` (a purpose's scorecards and
measures at one moment, with their reasons) is what the service reuses while it is
fresh (``decision_max_age``). :func:`pack_evaluation` keeps all of it — every field of
every scorecard, contribution, reason, set-back, feature, measure, metric and event
outcome — so that a restart or another worker process reuses the decision a worker
made instead of reading the subject's state again. :func:`unpack_evaluation` gives back
an equal object (``==``), or raises :class:`~trustledger.errors.InputError`; a packed
evaluation that would not read back equal (a float orjson cannot carry) is refused at
packing (:func:`pack_evaluation` returns ``None``).

Encoding: orjson of lists (field order), zlib-compressed; moments as whole microseconds
since the epoch. Pure: no I/O, no clock.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from trustledger.engine.result import (
    Contribution,
    Evaluation,
    EventOutcome,
    FeatureScore,
    MeasureResult,
    MeasureState,
    PointsSetBack,
    Reason,
    ScorecardResult,
)
from trustledger.errors import InputError
from trustledger.policy.models import MeasureKind
from trustledger.policy.taxonomy import Gravity

FORMAT = 1
"""The packed evaluation's layout version: another version is never read."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _t(moment: datetime | None) -> int | None:
    return None if moment is None else (moment - _EPOCH) // _US


def _m(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _at(us: int) -> datetime:
    if type(us) is not int:
        raise TypeError(f"not a moment: {us!r}")
    return _EPOCH + timedelta(microseconds=us)


def _key(key: tuple[str, str] | None) -> list[str] | None:
    return None if key is None else list(key)


def _reasons(reasons: tuple[Reason, ...]) -> list[Any]:
    return [[r.text, _key(r.event), r.points] for r in reasons]


def _contribution(c: Contribution) -> list[Any]:
    return [list(c.event), c.type, c.label, _t(c.occurred_at), c.points, c.capped,
            c.points_now, _t(c.counts_until), c.counted, c.why_not, list(c.notes)]


def _scorecard(card: ScorecardResult) -> list[Any]:
    return [card.name, card.consented, card.score, card.tier, card.total,
            [_contribution(c) for c in card.contributions], _reasons(card.reasons),
            card.model,
            [[f.feature, f.description, f.source, f.value, f.bin, f.points, f.max_points]
             for f in card.features],
            [[b.measure, b.prerequisite, _t(b.at), b.to, b.points, _t(b.counts_until),
              b.counted, b.text] for b in card.set_backs]]


def _measure(m: MeasureResult) -> list[Any]:
    return [m.name, m.label, m.kind.value, m.domain,
            None if m.severity is None else m.severity.value, m.state.value, m.in_force,
            _t(m.since), _t(m.held_until), _reasons(m.reasons)]


def _outcome(o: EventOutcome) -> list[Any]:
    return [list(o.event), o.type, _t(o.occurred_at), _t(o.recorded_at), o.seq, o.points,
            o.points_now, o.counted, o.why_not, _t(o.counts_until)]


def pack_evaluation(evaluation: Evaluation) -> bytes | None:
    """``evaluation`` packed; ``None`` when it would not read back equal (never stored)."""
    e = evaluation
    body = [FORMAT, e.policy, e.policy_hash, e.subject, _t(e.valid_at), _t(e.known_at),
            e.ledger_seq, [_scorecard(c) for c in e.scorecards.values()],
            [[name, value] for name, value in e.metrics.items()],
            [_measure(m) for m in e.measures.values()], [_outcome(o) for o in e.events],
            [[name, value] for name, value in e.attributes.items()]]
    try:
        data = zlib.compress(orjson.dumps(body), 6)
    except orjson.JSONEncodeError:
        return None
    try:
        same = unpack_evaluation(data) == evaluation
    except InputError:
        same = False
    return data if same else None


def _reason_of(row: list[Any]) -> Reason:
    text, event, points = row
    return Reason(text, None if event is None else (event[0], event[1]), points)


def _card_of(row: list[Any]) -> ScorecardResult:
    (name, consented, score, tier, total, contributions, reasons, model, features,
     set_backs) = row
    return ScorecardResult(
        name, consented, score, tier, total,
        tuple(Contribution((c[0][0], c[0][1]), c[1], c[2], _at(c[3]), c[4], c[5], c[6],
                           _m(c[7]), c[8], c[9], tuple(c[10])) for c in contributions),
        tuple(map(_reason_of, reasons)), model,
        tuple(FeatureScore(*f) for f in features),
        tuple(PointsSetBack(b[0], b[1], _at(b[2]), b[3], b[4], _m(b[5]), b[6], b[7])
              for b in set_backs))


def _measure_of(row: list[Any]) -> MeasureResult:
    name, label, kind, domain, severity, state, in_force, since, held_until, reasons = row
    return MeasureResult(name, label, MeasureKind(kind), domain,
                         None if severity is None else Gravity(severity), MeasureState(state),
                         in_force, _m(since), _m(held_until),
                         tuple(map(_reason_of, reasons)))


def unpack_evaluation(data: bytes) -> Evaluation:
    """The evaluation :func:`pack_evaluation` packed.

    Raises :class:`~trustledger.errors.InputError` when ``data`` cannot be read or is of
    another :data:`FORMAT`.
    """
    try:
        body = orjson.loads(zlib.decompress(data))
        if body[0] != FORMAT:
            raise InputError(f"a packed evaluation is of format {body[0]}, not {FORMAT}")
        (_, policy, policy_hash, subject, valid_at, known_at, ledger_seq, cards, metrics,
         measures, events, attributes) = body
        return Evaluation(
            policy=policy, policy_hash=policy_hash, subject=subject, valid_at=_at(valid_at),
            known_at=_m(known_at), ledger_seq=ledger_seq,
            scorecards={row[0]: _card_of(row) for row in cards},
            metrics={name: value for name, value in metrics},
            measures={row[0]: _measure_of(row) for row in measures},
            events=tuple(EventOutcome((o[0][0], o[0][1]), o[1], _at(o[2]), _at(o[3]), o[4],
                                      o[5], o[6], o[7], o[8], _m(o[9])) for o in events),
            attributes={name: value for name, value in attributes})
    except InputError:
        raise
    except (zlib.error, orjson.JSONDecodeError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"a packed evaluation cannot be read: {exc}") from None


__all__ = ["FORMAT", "pack_evaluation", "unpack_evaluation"]
