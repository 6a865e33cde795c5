"""A policy decision with a statistical scorecard vs the model's compiled scoring alone.

Trains the German Credit scorecard into a temporary models folder (as the tests do),
loads ``tests/policies/german_credit.yaml`` over it and measures, in one process on one
core, the single-decision latency p50/p99 of

* ``evaluate(policy, events, valid_at, attributes=...)``: the whole reference evaluation
  (metrics, the statistical score with reason codes, the measure replayed over the
  subject's history) for a subject with ``--events`` events;
* ``CompiledScorecard.score(features)``: the model alone, the floor of the above.

Run: ``.venv/bin/python bench/statistical_policy.py [--events 10]``; writes
bench/out/statistical_policy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from trustledger.engine import Event, evaluate
from trustledger.models import CompiledScorecard, save_artifact
from trustledger.models.features import load_dictionary
from trustledger.models.train import TrainingOptions, quiet_optbinning, train_file
from trustledger.policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "german_credit.csv"
POLICY = ROOT / "tests" / "policies" / "german_credit.yaml"
ATTRIBUTES = {"duration_months": 48, "housing": "rent", "amount": 5951,
              "checking_account": "0 <= ... < 200 DM", "purpose": "radio/television"}


def latencies_us(fn: Callable[[], Any], count: int) -> tuple[float, float]:
    """p50 and p99 of ``count`` calls, in microseconds."""
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000.0)
    q = np.percentile(np.asarray(samples), [50, 99])
    return float(q[0]), float(q[1])


def history(n: int) -> list[Event]:
    """``n`` events over two years: credits opened, and a late repayment every fifth."""
    start = datetime(2026, 1, 2, tzinfo=UTC)
    out = []
    for i in range(n):
        kind = "repayment_late" if i % 5 == 4 else "credit_opened"
        moment = start + timedelta(days=73 * i)
        out.append(Event("bank", f"e{i}", "alice", kind, moment, moment, {}))
    return out


def main() -> None:
    """Train, load the policy, time both paths, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    with tempfile.TemporaryDirectory() as folder, quiet_optbinning():
        models = Path(folder)
        trained = train_file(DATA, load_dictionary(DATA.with_name("german_credit.columns.json")),
                             TrainingOptions(target="creditability"))
        save_artifact(trained.artifact, models)
        policy = load_policy(POLICY, models_dir=models)
        scorer = CompiledScorecard.load(models, trained.artifact.content_hash)
    events = history(args.events)
    valid_at = events[-1].occurred_at + timedelta(days=1) if events else \
        datetime(2026, 6, 1, tzinfo=UTC)
    features: dict[str, Any] = dict.fromkeys(scorer.features)
    features.update(duration_in_month=48, housing="rent", credit_amount=5951)
    for _ in range(200):  # warm up
        evaluate(policy, events, valid_at, attributes=ATTRIBUTES)
    decision = latencies_us(lambda: evaluate(policy, events, valid_at, attributes=ATTRIBUTES),
                            args.count)
    model = latencies_us(lambda: scorer.score(features), args.count)
    results = {
        "events": args.events, "count": args.count,
        "evaluate_p50_us": round(decision[0], 1), "evaluate_p99_us": round(decision[1], 1),
        "model_score_p50_us": round(model[0], 1), "model_score_p99_us": round(model[1], 1),
        "python": platform.python_version(), "load_average": list(os.getloadavg()),
    }
    print(f"evaluate, statistical policy, {args.events} events: p50 {decision[0]:.0f} µs, "
          f"p99 {decision[1]:.0f} µs")
    print(f"CompiledScorecard.score alone: p50 {model[0]:.0f} µs, p99 {model[1]:.0f} µs")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "statistical_policy.json").write_text(json.dumps(results, indent=2) + "\n",
                                                 encoding="utf-8")


if __name__ == "__main__":
    main()
