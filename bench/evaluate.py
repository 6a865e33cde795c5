"""Reference evaluator throughput: events per second on one core.

    .venv/bin/python bench/evaluate.py                      # 10,000 subjects x 20 events, sesame
    .venv/bin/python bench/evaluate.py --subjects 2000 --events 50 --policy policies/sesame.yaml

A synthetic population over the Sesame event types (fixed seed, so runs are comparable) is
built first and not timed; then every subject is evaluated once, in one process, with the
subject's consent to the opt-in scorecard, and the wall-clock time of the evaluations alone
is reported.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from trustledger.engine import Event, evaluate
from trustledger.policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
VALID_AT = datetime(2026, 6, 1, tzinfo=UTC)

# (type, weight, attributes)
MIX: list[tuple[str, float]] = [
    ("repayment_on_time", 0.38), ("bill_paid", 0.22), ("rental_returned", 0.15),
    ("repayment_late", 0.08), ("bill_overdue", 0.08), ("identity_verified", 0.06),
    ("debt_default", 0.03),
]


def attributes(kind: str, rng: random.Random) -> dict[str, Any]:
    if kind == "repayment_on_time":
        return {"amount": round(rng.uniform(50, 5000), 2)}
    if kind == "repayment_late":
        return {"days_late": rng.randint(1, 90), "amount": round(rng.uniform(50, 5000), 2)}
    if kind == "bill_overdue":
        return {"days_overdue": rng.randint(1, 200)}
    if kind == "rental_returned":
        return {"late_hours": 0 if rng.random() < 0.8 else rng.randint(1, 96)}
    if kind == "identity_verified":
        return {"method": rng.choice(["eid", "bank", "passport"])}
    if kind == "debt_default":
        return {"amount": round(rng.uniform(500, 50000), 2)}
    return {}


def population(subjects: int, per_subject: int, seed: int) -> list[list[Event]]:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX, strict=True)
    span = 3 * 365 * 86400
    out = []
    for s in range(subjects):
        events = []
        for i in range(per_subject):
            kind = rng.choices(kinds, weights)[0]
            occurred = VALID_AT - timedelta(seconds=rng.randrange(span))
            recorded = occurred + timedelta(seconds=rng.randrange(3 * 86400))
            events.append(Event("bench", f"{s}-{i}", f"subject-{s}", kind, occurred,
                                min(recorded, VALID_AT), attributes(kind, rng)))
        out.append(events)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=20, help="events per subject")
    parser.add_argument("--policy", type=Path, default=ROOT / "policies" / "sesame.yaml")
    parser.add_argument("--seed", type=int, default=20260601)
    args = parser.parse_args(argv)

    policy = load_policy(args.policy)
    people = population(args.subjects, args.events, args.seed)
    opt_ins = {name for name, card in policy.scorecards.items() if card.opt_in}
    total = sum(len(p) for p in people)

    start = time.perf_counter()
    scored = 0
    for events in people:
        result = evaluate(policy, events, VALID_AT, opt_ins=opt_ins)
        scored += len(result.events)
    elapsed = time.perf_counter() - start

    command = " ".join(sys.orig_argv) if argv is None else f"main({argv!r})"
    print(f"command:    {command}")
    print(f"machine:    Python {platform.python_version()} on {platform.machine()}, one core, "
          "one process")
    print(f"policy:     {policy.name} {policy.hash[:19]}…")
    print(f"population: {args.subjects:,} subjects x {args.events} events = {total:,} events "
          f"({scored:,} evaluated)")
    print(f"time:       {elapsed:.2f} s ({elapsed / args.subjects * 1e3:.3f} ms per subject)")
    print(f"throughput: {total / elapsed:,.0f} events/s, {args.subjects / elapsed:,.0f} "
          "subjects/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
