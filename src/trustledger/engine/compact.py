"""A maintained evaluation packed into a few hundred bytes, and restored without its events.

:func:`pack` keeps of a :class:`~trustledger.engine.maintained.MaintainedEvaluation`
only what a read at a later moment needs:

* the entries that still count after the measures' replay position (an entry that
  stopped counting, was corrected, withdrawn or never fitted is gone for good: reads
  only move forward): per entry its key, type, occurrence, knowledge, points, the end
  of its counting and why, the expiry and its overhang witness, its capped points and
  cap notes per scorecard, and when it leaves each windowed metric. These are the
  scores' sinks and the reasons' candidates at once: a score at ``t`` is the base plus
  their decayed points, the reasons are the largest of them;
* the measures' replay in progress: every measure's track (state, since, holding time,
  set-back and notice), the pending decision instants, the instant processed last, and
  the forward-decay accumulators of the measures' inputs (per half-life, with their
  landmark), counts and static sums, exactly as floats;
* what it reflects: the policy hash, the subject, the ledger seq of its latest event,
  the opt-ins, the horizon and the latest read.

:func:`unpack` rebuilds the object from that (no events, no
:func:`~trustledger.engine.history.build_history`, no replay) and its reads go on exactly
as the packed object's would: the decision-time parts of each
:class:`~trustledger.engine.result.Evaluation` (scores, totals, tiers, reasons, metrics,
measures with ``since``, ``held_until`` and their reasons) equal
:func:`~trustledger.engine.evaluate` bit for bit (a property test checks it). Its
contributions and event outcomes list only the entries still counting
(:attr:`MaintainedEvaluation.partial`): the full per-event derivation needs the events.

Encoding: orjson (already a dependency) of lists, zlib-compressed with a preset
dictionary made from the policy (its hash and the measures' initial tracks: what every
state of the policy repeats). Moments that are whole microseconds (every moment derived
from a datetime) are stored as integers; an entry's end, expiry and window exits as
microseconds after its occurrence (a retention or window is the same for every event
of a type, so they repeat), and the pending decision instants that are entries' ends
(nearly all of them) as those entries' positions. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from trustledger.engine.events import Event
from trustledger.engine.history import INF, Entry, History, after
from trustledger.engine.maintained import MaintainedEvaluation
from trustledger.engine.measures import Track, _Inputs, _Runner
from trustledger.errors import InputError
from trustledger.policy.compiled import CompiledPolicy

FORMAT = 2
"""The packed layout's version: a state of another version is rebuilt, never read.

2: moments relative to the entry's occurrence, pending instants as entries' ends, and
the policy's preset dictionary (1: absolute moments, no dictionary)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_END_REASONS = ("retention", "expiry", "overhang", "")
_TRACK_FIELDS = tuple(f.name for f in fields(Track) if f.name != "points_set_back")


def _t(x: float | None) -> int | float | str | None:
    """A moment: whole microseconds as an integer, infinities as text, else the float."""
    if x is None:
        return None
    if math.isinf(x):
        return "+" if x > 0 else "-"
    us = round(x * 1_000_000)
    return us if us / 1_000_000 == x else x


def _moment(v: Any) -> float:
    if v == "+":
        return INF
    if v == "-":
        return -INF
    if isinstance(v, int):
        return v / 1_000_000
    return float(v)


def _maybe(v: Any) -> float | None:
    return None if v is None else _moment(v)


def _after(x: float | None, occurred_us: int) -> int | float | str | None:
    """A moment of an entry: whole microseconds after its occurrence, else as :func:`_t`."""
    v = _t(x)
    return v - occurred_us if type(v) is int else v


def _since(v: Any, occurred_us: int) -> float:
    """The moment :func:`_after` stored."""
    return (occurred_us + v) / 1_000_000 if type(v) is int else _moment(v)


def pack(state: MaintainedEvaluation) -> bytes:
    """``state`` packed (see the module docstring); read it back with :func:`unpack`.

    Raises :class:`~trustledger.errors.InputError` for a state that cannot be served
    at all (an event not yet occurred when it was built): there is nothing to keep.
    """
    if not state._complete:
        raise InputError("a maintained evaluation built before one of its events occurred "
                         "is not packed: build it again once the event has occurred")
    policy = state.policy
    runner = state._runner
    previous = state._previous
    history = state.history
    kept = [x for x in history.entries if x.counted and x.end > previous]
    index = {id(x): i for i, x in enumerate(kept)}
    layout = _layout(policy)
    type_index = layout.type_index
    cards = layout.cards
    windowed = [(m.types, m.window) for m in policy.metrics.values() if m.window]
    entries = []
    position_of_end: dict[float, int] = {}
    for i, x in enumerate(kept):
        etype = x.type
        assert etype is not None  # counted
        e = x.event
        witness = x.overhang_by
        occurred_us = (e.occurred_at - _EPOCH) // timedelta(microseconds=1)
        position_of_end.setdefault(x.end, i)
        entries.append([
            e.source, e.source_event_id, type_index[e.type],
            occurred_us, _t(x.known), x.points,
            _after(x.end, occurred_us), _END_REASONS.index(x.end_reason),
            True if x.expiry is not None and x.expiry == x.end
            else _after(x.expiry, occurred_us),
            None if witness is None else [witness.event.source, witness.event.source_event_id,
                                          type_index[witness.event.type], _t(witness.o)],
            [x.capped[name] for name in etype.scorecards],
            [[cards.index(name), text] for name, text in x.cap_notes.items()],
            [_after(after(window, e.occurred_at), occurred_us) for types_, window in windowed
             if e.type in types_],
            e.seq,
        ])
    # The pending decision instants, in order: an entry's end as the entry's position.
    at_ends: list[int] = []
    others: list[int | float | str | None] = []
    for t in sorted(state._heap):
        i = position_of_end.get(t, -1)
        if i >= 0:
            at_ends.append(i)
        else:
            others.append(_t(t))
    inputs: list[Any] = []
    if runner is not None:
        s = runner.state
        assert not s.pending, "maintainable policies set back no points"
        inputs = [s.landmark, [s.static[n] for n in s.names], [s.count[n] for n in s.names],
                  [[[hl, acc] for hl, acc in s.forward[n].items()] for n in s.names],
                  [[[index[id(entry)], value] for entry, value in s.live[n].values()]
                   for n in s.names],
                  list(runner.last_raw)]
    tracks = []
    for name in policy.measures:
        track = state._tracks[name] if runner is None else runner.tracks[name]
        assert track.points_set_back is None, "maintainable policies set back no points"
        row = [getattr(track, f) for f in _TRACK_FIELDS]
        tracks.append([_t(v) if isinstance(v, float) else
                       (list(v) if isinstance(v, tuple) else v) for v in row])
    body = [
        FORMAT, policy.hash, state._subject, state._ledger_seq, sorted(state.opt_ins),
        _t(state.horizon), _t(state._read), _t(previous), state._continuous,
        [at_ends, others], tracks, inputs, entries,
    ]
    packer = zlib.compressobj(6, zdict=layout.zdict)
    return packer.compress(orjson.dumps(body)) + packer.flush()


def header(policy: CompiledPolicy, data: bytes) -> tuple[int, str]:
    """The format version and policy hash of a state packed for ``policy``.

    Raises :class:`InputError` for bytes that cannot be read, or were packed with
    another policy version's dictionary.
    """
    body = _load(policy, data)
    return body[0], body[1]


def dictionary(policy: CompiledPolicy) -> bytes:
    """The preset zlib dictionary every state packed for ``policy`` is compressed with."""
    return _layout(policy).zdict


def moments(policy: CompiledPolicy, data: bytes) -> tuple[float, float]:
    """The horizon and latest read of a state packed for ``policy``, without unpacking it.

    Raises :class:`~trustledger.errors.InputError` as :func:`unpack` does for bytes that
    cannot be read, of another :data:`FORMAT` or packed for another policy version.
    """
    body = _load(policy, data)
    _check(body, policy)
    return _moment(body[5]), _moment(body[6])


def _check(body: list[Any], policy: CompiledPolicy) -> None:
    version, policy_hash = body[0], body[1]
    if version != FORMAT:
        raise InputError(f"a packed subject state is of format {version}, not {FORMAT}")
    if policy_hash != policy.hash:
        raise InputError(f"a packed subject state is for policy {str(policy_hash)[:19]}, "
                         f"not {policy.hash[:19]}")


def _load(policy: CompiledPolicy, data: bytes) -> list[Any]:
    zdict = dictionary(policy)
    # A zlib stream (deflate, its header checksum right) compressed with a preset
    # dictionary names it (FDICT, then its Adler-32): another dictionary is another
    # policy version's.
    if len(data) >= 6 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0 \
            and data[1] & 0x20 and int.from_bytes(data[2:6], "big") != zlib.adler32(zdict):
        raise InputError("a packed subject state is for another policy version, "
                         f"not {policy.hash[:19]}")
    try:
        body = orjson.loads(zlib.decompressobj(zdict=zdict).decompress(data))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise InputError(f"a packed subject state cannot be read: {exc}") from None
    if not isinstance(body, list) or len(body) != 13:
        raise InputError("a packed subject state has an unknown layout")
    return body


def unpack(policy: CompiledPolicy, data: bytes) -> MaintainedEvaluation:
    """The maintained evaluation :func:`pack` packed, for ``policy``; no events needed.

    Lean: one :class:`~trustledger.engine.history.Entry` per entry still counting, the
    inputs' sums and the tracks as packed, and not the measures' list of input changes
    still to come (:meth:`MaintainedEvaluation.complete_changes` makes it when a read
    passes a decision instant).

    Raises :class:`~trustledger.errors.InputError` when ``data`` cannot be read, is of
    another :data:`FORMAT`, or was packed for another policy version (build again).
    """
    body = _load(policy, data)
    _check(body, policy)
    (_, _, subject, ledger_seq, opt_ins, horizon, read, previous,
     continuous, heap, tracks_data, inputs, entries_data) = body
    layout = _layout(policy)
    event_types = policy.event_types
    entries: list[Entry] = []
    windows: list[dict[str, float]] = []
    for (source, sid, ti, occurred_us, known, points, end, why, expiry, witness, capped,
         notes, ends, seq) in entries_data:
        type_name = layout.types[ti]
        etype = event_types[type_name]
        occurred = _EPOCH + timedelta(microseconds=occurred_us)
        o = occurred_us / 1_000_000
        until = _since(end, occurred_us)
        x = Entry(Event(source, sid, subject, type_name, occurred, occurred, seq=seq), etype,
                  o, o, known=known / 1_000_000 if type(known) is int else _moment(known),
                  base_points=points, points=points, counted=True,
                  end=until, end_reason=_END_REASONS[why],
                  expiry=until if expiry is True else
                  None if expiry is None else _since(expiry, occurred_us))
        if witness is not None:
            w_source, w_sid, w_ti, w_o = witness
            w_type = layout.types[w_ti]
            wo = _moment(w_o)
            x.overhang_by = Entry(Event(w_source, w_sid, subject, w_type, _EPOCH, _EPOCH),
                                  event_types[w_type], wo, wo, known=wo)
        x.capped = dict(zip(etype.scorecards, capped, strict=True))
        if notes:
            x.cap_notes = {layout.cards[ci]: text for ci, text in notes}
        names = layout.windowed.get(type_name, ())
        windows.append({name: _since(v, occurred_us)
                        for name, v in zip(names, ends, strict=True)} if names else {})
        entries.append(x)
    consented = frozenset(opt_ins)
    history = History(policy, entries, consented, {}, {})
    for name, card_events in layout.card_events:
        history.by_scorecard[name] = [x for x in entries if x.event.type in card_events]
    for name, metric_types in layout.metric_types:
        history.by_metric[name] = [(x, w.get(name, INF)) for x, w in zip(entries, windows,
                                                                          strict=True)
                                   if x.event.type in metric_types]
    state = object.__new__(MaintainedEvaluation)
    state.policy = policy
    state.opt_ins = consented
    state._items = [x.event for x in entries]
    state._ledger_seq = ledger_seq
    state._subject = subject
    state.history = history
    state.horizon = _moment(horizon)
    state._complete = True
    state.partial = True
    measures = layout.measures
    state._inputs = layout.inputs
    tracks = {}
    for m, row in zip(measures, tracks_data, strict=True):
        track = Track()
        for f, v in zip(_TRACK_FIELDS, row, strict=True):
            if f == "blocked":
                v = tuple(v)
            elif f in _TRACK_MOMENTS:
                v = _maybe(v)
            setattr(track, f, v)
        tracks[m.name] = track
    state._tracks = tracks
    at_ends, others = heap
    state._heap = sorted([*(entries[i].end for i in at_ends), *map(_moment, others)])
    state._continuous = continuous
    state._previous = _moment(previous)
    state._read = _moment(read)
    state._runner = None
    state._changes_left_out = False
    if measures:
        # The replay's inputs without their changes still to come (complete_changes):
        # made on a history with no entries, then given the real one.
        runner = _Runner(History(policy, [], consented, layout.no_cards, layout.no_metrics),
                         measures, tracks, state._inputs, INF)
        runner.history = runner.state.history = history
        _restore_inputs(runner.state, inputs, entries)
        runner.last_raw = tuple(inputs[5])
        state._runner = runner
        state._changes_left_out = True
    return state


_TRACK_MOMENTS = frozenset({"hold_end", "set_back_since", "notice_end", "effective_since"})


class _Layout:
    """What unpacking reads of a policy, worked out once per compiled policy."""

    def __init__(self, policy: CompiledPolicy) -> None:
        self.types = sorted(policy.event_types)
        self.type_index = {name: i for i, name in enumerate(self.types)}
        self.cards = list(policy.scorecards)
        self.windowed: dict[str, tuple[str, ...]] = {
            t: tuple(name for name, m in policy.metrics.items() if m.window and t in m.types)
            for t in self.types}
        self.card_events = [(name, card.events) for name, card in policy.scorecards.items()]
        self.metric_types = [(name, m.types) for name, m in policy.metrics.items()]
        self.measures = list(policy.measures.values())
        self.inputs = sorted({n for m in self.measures for n in (*m.metrics, *m.scorecards)})
        self.no_cards: dict[str, list[Entry]] = {name: [] for name in policy.scorecards}
        self.no_metrics: dict[str, list[tuple[Entry, float]]] = {
            name: [] for name in policy.metrics}
        untouched = [[_t(v) if isinstance(v, float) else v
                      for v in (getattr(Track(), f) for f in _TRACK_FIELDS)]]
        self.zdict = orjson.dumps([untouched * len(self.measures)]) \
            + orjson.dumps([FORMAT, policy.hash])[:-1] + b","
        """The preset dictionary: what every state of the policy repeats (its hash, and
        each measure's track as it starts)."""


_LAYOUTS: dict[str, tuple[CompiledPolicy, _Layout]] = {}


def _layout(policy: CompiledPolicy) -> _Layout:
    found = _LAYOUTS.get(policy.hash)
    if found is None or found[0] is not policy:
        if len(_LAYOUTS) > 64:
            _LAYOUTS.clear()
        found = _LAYOUTS[policy.hash] = (policy, _Layout(policy))
    return found[1]


def _restore_inputs(s: _Inputs, inputs: list[Any], entries: list[Entry]) -> None:
    """Put the measures' inputs' sums back where the packed replay left them."""
    landmark, static, count, forward, live, _ = inputs
    s.landmark = landmark
    s.static = dict(zip(s.names, static, strict=True))
    s.count = dict(zip(s.names, count, strict=True))
    s.forward = {n: {hl: acc for hl, acc in group}
                 for n, group in zip(s.names, forward, strict=True)}
    s.live = {n: {id(entries[i]): (entries[i], value) for i, value in group}
              for n, group in zip(s.names, live, strict=True)}


__all__ = ["FORMAT", "dictionary", "header", "moments", "pack", "unpack"]
