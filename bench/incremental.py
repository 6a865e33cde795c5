"""Incremental update cost: one new event for a subject with 10 vs 10,000 prior events.

    .venv/bin/python bench/incremental.py
    .venv/bin/python bench/incremental.py --small 10 --large 10000 --updates 2000

For each history size, a subject's :class:`SubjectState` is built from that many prior
events (Sesame policy: caps per month, decay, expiry, a ``when`` condition; not timed),
then ``--updates`` new events are applied one by one, each after the previous one (the
service's case), and the CPU time per ``apply`` is measured (``time.process_time``: the
machine is shared, so wall time is noisy); likewise a ``read`` of the present after
each. Three runs each, interleaved, medians reported, with the ratio large/small (the
aim is <= 1.5: the cost does not grow with the history).
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from trustledger.engine import Event
from trustledger.engine.incremental import SubjectState
from trustledger.policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2020, 1, 1, tzinfo=UTC)
KINDS = [("repayment_on_time", 0.38), ("bill_paid", 0.22), ("rental_returned", 0.15),
         ("repayment_late", 0.08), ("bill_overdue", 0.08), ("identity_verified", 0.06),
         ("debt_default", 0.03)]


def attributes(kind: str, rng: random.Random) -> dict[str, object]:
    if kind == "repayment_on_time":
        return {"amount": round(rng.uniform(50, 5000), 2)}
    if kind == "repayment_late":
        return {"days_late": rng.randint(1, 90), "amount": round(rng.uniform(50, 5000), 2)}
    if kind == "bill_overdue":
        return {"days_overdue": rng.randint(1, 200)}
    if kind == "rental_returned":
        return {"late_hours": 0 if rng.random() < 0.8 else rng.randint(1, 96)}
    if kind == "identity_verified":
        return {"method": "eid"}
    if kind == "debt_default":
        return {"amount": round(rng.uniform(500, 50000), 2)}
    return {}


def stream(count: int, seed: int, start: datetime, step: timedelta) -> list[Event]:
    rng = random.Random(seed)
    names, weights = zip(*KINDS, strict=True)
    out = []
    moment = start
    for i in range(count):
        kind = rng.choices(names, weights)[0]
        moment += step
        out.append(Event("bench", f"{seed}-{i}", "alice", kind, moment, moment,
                         attributes(kind, rng)))
    return out


def measure(prior: int, updates: int, seed: int) -> tuple[float, float]:
    """Microseconds per apply and per read, after ``prior`` events."""
    policy = load_policy(ROOT / "policies" / "sesame.yaml")
    # The history spans six years whatever its size; new events follow it, an hour apart.
    step = timedelta(days=6 * 365) / max(prior, 1)
    history = stream(prior, seed, START, step)
    state = SubjectState.empty(policy, {"sesame"})
    for event in history:
        state.apply(event)
    last = history[-1].occurred_at if history else START
    news = stream(updates, seed + 1, last, timedelta(hours=1))
    apply_s = read_s = 0.0
    clock = time.process_time  # CPU time: the machine is shared, wall time is noisy
    for event in news:
        started = clock()
        state.apply(event)
        middle = clock()
        state.read(event.occurred_at)
        apply_s += middle - started
        read_s += clock() - middle
    return apply_s / updates * 1e6, read_s / updates * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"command:  {' '.join(sys.orig_argv) if argv is None else f'main({argv!r})'}")
    print(f"machine:  Python {platform.python_version()} on {platform.machine()}, one core")
    medians = {}
    results: dict[int, list[tuple[float, float]]] = {args.small: [], args.large: []}
    for r in range(args.runs):  # interleaved, so a busy moment hits both sizes alike
        for prior in (args.small, args.large):
            results[prior].append(measure(prior, args.updates, 1000 + r))
    for prior, runs in results.items():
        apply_us = statistics.median(r[0] for r in runs)
        read_us = statistics.median(r[1] for r in runs)
        medians[prior] = (apply_us, read_us)
        print(f"{prior:>7,} prior events: apply {apply_us:7.1f} µs, read {read_us:7.1f} µs "
              f"(runs: {', '.join(f'{r[0]:.1f}/{r[1]:.1f}' for r in runs)})")
    small, large = medians[args.small], medians[args.large]
    print(f"ratio {args.large:,}/{args.small:,}: apply {large[0] / small[0]:.2f}, "
          f"read {large[1] / small[1]:.2f} (aim: <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
