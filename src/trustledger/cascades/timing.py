"""When time alone can next change a subscribed subject's decision, without scanning anyone else.

Between two *known dates* a subject's inputs change only by decay. The known dates
are: an event occurring (dated in the future), stopping to count (expiry,
overhang, retention), leaving a metric's window; a tier threshold or a policy
version taking effect; a holding time or a notice period ending; a dispute's
deadline; a consent expiring. Between them, a scorecard's total is

    total(t) = c + Σ_h A_h · 2^(-(t - now)/h)

with ``c`` its base plus the live non-decaying points and ``A_h`` the live points
of half-life ``h`` decayed to ``now``. A tier threshold ``m`` is crossed where
``total(t) = m``: with one half-life, in closed form,

    t = now + h · log2(A / (m - c))        (when A and m - c have the same sign, |m - c| < |A|)

with several of the same sign the sum is monotone and the root is found by
bisection; with mixed signs the sum need not be monotone and the check is
repeated every eighth of the shortest half-life (early, never late).

The earliest of these is the *candidate*. A measure's condition is any CEL
expression over decaying inputs, so it has no closed form: the purpose's view just
before the candidate is compared with the view now, and if it differs the first
moment of difference is located by bisection to the millisecond, as the engine
itself locates decay-driven transitions (:mod:`trustledger.engine.measures`).
A moment found early only costs one evaluation; the worker evaluates again then.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from trustledger.cascades.decision import Decided, View, signature
from trustledger.engine import MeasureState
from trustledger.engine.history import History, build_history, ts
from trustledger.ledger.chain import from_us
from trustledger.scoring import Assessment

Probe = Callable[[datetime], tuple[Any, ...] | None]
"""The :func:`~trustledger.cascades.decision.signature` of the purpose's view at a moment."""

RESOLUTION_S = 0.001
"""Scheduled moments are rounded up to the next millisecond after the change."""
_HORIZON_HALF_LIVES = 10.0


def next_change(decided: Decided, after: datetime, probe: Probe,
                extra: Iterable[datetime] = (), history: History | None = None) -> datetime | None:
    """The first moment after ``after`` at which time alone may change ``decided``'s view.

    ``extra`` adds known dates from outside the evaluation (a consent's expiry, a
    policy version's ``effective_from``). ``None``: nothing can change by time alone.
    ``history``: the history of ``decided``'s scored events at ``after``, when the
    caller has it (the maintained evaluation's: the same entries, since no event
    occurs after the moment it serves); otherwise it is built here.
    """
    candidates = [ts(moment) for moment in extra if moment > after]
    now = ts(after)
    assessment = decided.assessment
    if assessment is not None:
        if history is None:
            history = build_history(assessment.policy, list(assessment.scored), after, None,
                                    assessment.opt_ins)
        candidates.extend(_known_dates(assessment, history, after))
        candidates.extend(_tier_crossings(assessment, history, after, decided.view))
    candidates = [t for t in candidates if t > now and math.isfinite(t)]
    if not candidates:
        return None
    candidate_us = _round_up(min(candidates))
    current = signature(decided.view)
    now_us = round(now * 1e6)
    before_us = candidate_us - round(RESOLUTION_S * 1e6)

    def differs(moment_us: int) -> bool:
        return bool(probe(from_us(moment_us)) != current)

    if before_us > now_us and differs(before_us):
        # A measure changed by decay before the candidate: find the first moment it differs.
        low, high = now_us, before_us
        while high - low > round(RESOLUTION_S * 1e6):
            mid = (low + high) // 2
            if differs(mid):
                high = mid
            else:
                low = mid
        candidate_us = high
    return from_us(candidate_us)


def _round_up(t: float) -> int:
    """The next whole millisecond strictly after ``t``, in µs (a change at ``t`` is seen then)."""
    return (math.floor(t * 1000.0) + 1) * 1000


def _known_dates(assessment: Assessment, history: History, after: datetime) -> list[float]:
    policy = assessment.policy
    now = ts(after)
    out: list[float] = [ts(e.occurred_at) for e in assessment.scored if e.occurred_at > after]
    decays = False
    for entry in history.entries:
        if entry.counted:
            out.append(entry.end)
            decays = decays or (entry.half_life is not None and entry.live_at(now))
    for members in history.by_metric.values():
        out.extend(window_end for entry, window_end in members if entry.counted)
    for card in policy.scorecards.values():
        for tier in card.tiers:
            out.extend(start for start, _ in tier.thresholds[1:])
    for measure in assessment.evaluation.measures.values():
        if measure.held_until is not None:
            out.append(ts(measure.held_until))
        notice = policy.measures[measure.name].notice
        if measure.state is MeasureState.SET_BACK and measure.since and notice is not None:
            out.append(ts(notice.after(measure.since)))  # the notice given ends then
    out.extend(ts(d.deadline) for d in assessment.disputes)
    if decays:
        # Measures over decaying inputs have no closed form: look again after a while.
        longest = max((e.half_life or 0.0) for e in history.entries)
        out.append(now + _HORIZON_HALF_LIVES * longest)
    return out


def _tier_crossings(assessment: Assessment, history: History, after: datetime,
                    view: View) -> list[float]:
    policy = assessment.policy
    now = ts(after)
    out: list[float] = []
    for name in view.get("scorecards", {}):
        card = policy.scorecards[name]
        if not history.available(name):
            continue
        static = card.base
        by_half_life: dict[float, float] = {}
        for entry in history.by_scorecard[name]:
            if not entry.live_at(now):
                continue
            points = entry.capped[name]
            hl = entry.half_life
            if hl is None:
                static += points
            else:
                by_half_life[hl] = by_half_life.get(hl, 0.0) + points * entry.decay(now)
        terms = [(hl, a) for hl, a in by_half_life.items() if a != 0.0]
        if not terms:
            continue
        for tier in card.tiers:
            low = tier.min_at(now)
            if low is not None:
                crossing = _crossing(terms, low - static)
                if crossing is not None:
                    out.append(now + crossing)
    return out


def _crossing(terms: list[tuple[float, float]], gap: float) -> float | None:
    """Seconds until ``Σ A·2^(-Δ/h)`` (decaying towards 0) reaches ``gap``; ``None``: never."""
    if len(terms) == 1:
        hl, amount = terms[0]
        if gap == 0.0 or amount / gap <= 1.0:
            return None
        return hl * math.log2(amount / gap)
    signs = {a > 0 for _, a in terms}
    if len(signs) > 1:
        return min(hl for hl, _ in terms) / 8.0
    total = sum(a for _, a in terms)
    if gap == 0.0 or total / gap <= 1.0:
        return None

    def value(delta: float) -> float:
        return math.fsum(a * math.pow(2.0, -delta / hl) for hl, a in terms)

    high = min(hl for hl, _ in terms)
    while abs(value(high)) > abs(gap):
        high *= 2.0
    low = 0.0
    while high - low > RESOLUTION_S / 10:
        mid = (low + high) / 2
        if abs(value(mid)) > abs(gap):
            low = mid
        else:
            high = mid
    return high
