"""Population batch: trustledger's DuckDB path vs a hand-written DuckDB query vs pandas.

    .venv/bin/python bench/batch.py                        # 1,000,000 subjects, 20,000,000 events
    .venv/bin/python bench/batch.py --subjects 100000 --events 2000000

All three read the same Parquet file (``trustledger synth --profile wide``: 20 event types,
each with its own points, half-life and expiry; the policy is ``synth.WIDE_POLICY``) and
produce every subject's score at one ``valid_at``:

* trustledger: ``rescore`` on DuckDB — the whole job: corrections, knowledge, attribute
  check, expiry, decay, clamp, tier, one row per subject as an Arrow table;
* hand-written: one DuckDB SQL query (join + decay + expiry + clamp, ``GROUP BY``);
* pandas: the same as a vectorised merge/groupby on a DataFrame already in memory (reading
  the file is not timed for pandas);
* for reference, the floor of any per-subject query on this file: ``SELECT subject,
  count(*) ... GROUP BY subject`` alone.

Each is timed three times in this one run; the medians are reported, with events/s and
the ratio to the hand-written query. The scores of the three are checked equal (1e-9).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trustledger.batch import duckdb_backend, make_plan, read_events, rescore
from trustledger.policy import CompiledPolicy, parse_policy
from trustledger.synth import WIDE_POLICY, Population, write_parquet

ROOT = Path(__file__).resolve().parent
VALID_AT = datetime(2026, 11, 1, tzinfo=UTC)
LN2 = math.log(2.0)


def population_file(subjects: int, events: int, seed: int) -> Path:
    path = ROOT / "out" / f"wide-{subjects}-{events}-{seed}.parquet"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        write_parquet(Population(subjects=subjects, events=events, seed=seed, profile="wide"),
                      partial)
        partial.rename(path)
        print(f"generated {events:,} events in {time.perf_counter() - started:.1f} s: {path}")
    return path


def timed(label: str, runs: int, job: Callable[[], pa.Table]) -> tuple[float, pa.Table]:
    times = []
    result = pa.table({})
    for _ in range(runs):
        started = time.perf_counter()
        result = job()
        times.append(time.perf_counter() - started)
    print(f"  {label:<13} runs {', '.join(f'{t:.2f}' for t in times)} s")
    return statistics.median(times), result


def trustledger_job(policy: CompiledPolicy, path: Path, threads: int) -> pa.Table:
    con = duckdb_backend(memory_limit="6GB", threads=threads)
    try:
        job = rescore(policy, read_events(con, path), VALID_AT, consent_all=True,
                      measures=False)
        return job.table.select(["subject", "score__wide"]).rename_columns(["subject", "score"])
    finally:
        con.disconnect()


def handwritten_sql(policy: CompiledPolicy) -> str:
    rows = []
    for name, et in policy.event_types.items():
        spec = policy.model.event_types[name]
        assert et.expiry is not None and et.half_life is not None
        expiry, retention = et.expiry, et.retention
        rows.append(f"('{name}', {float(spec.points)!r}, {et.half_life!r}, "  # type: ignore[arg-type]
                    f"INTERVAL '{expiry.months} months {expiry.days} days', "
                    f"INTERVAL '{retention.months} months {retention.days} days')")
    at = VALID_AT.replace(tzinfo=None).isoformat()  # UTC, as naive timestamps
    return f"""
        WITH types(type, points, half_life, expiry, retention) AS (VALUES {", ".join(rows)}),
        e AS (SELECT subject, type, CAST(occurred_at AS TIMESTAMP) AS o
              FROM read_parquet($path))
        SELECT e.subject,
               least(950.0, greatest(350.0, 600.0 + sum(
                   CASE WHEN e.o <= TIMESTAMP '{at}'
                         AND e.o + t.expiry > TIMESTAMP '{at}'
                         AND e.o + t.retention > TIMESTAMP '{at}'
                        THEN t.points * exp(-{LN2!r} * (epoch(TIMESTAMP '{at}') - epoch(e.o))
                                            / t.half_life)
                        ELSE 0.0 END))) AS score
        FROM e JOIN types AS t USING (type)
        GROUP BY e.subject"""


def handwritten_job(sql: str, path: Path, threads: int) -> pa.Table:
    con = duckdb.connect(config={"threads": threads, "memory_limit": "6GB"})
    try:
        result: pa.Table = con.execute(sql, {"path": str(path)}).to_arrow_table()
        return result
    finally:
        con.close()


def pandas_frames(policy: CompiledPolicy, path: Path) -> tuple[Any, Any]:
    import pandas as pd

    plan = make_plan(policy, VALID_AT)
    events = pq.read_table(path, columns=["subject", "type", "occurred_at"]).to_pandas()
    events["occurred_us"] = events["occurred_at"].astype("int64") // 1000 \
        if str(events["occurred_at"].dtype).endswith("ns, UTC]") else \
        events["occurred_at"].astype("int64")
    types = pd.DataFrame({
        "type": [t.name for t in plan.types],
        "points": [t.constant for t in plan.types],
        "lam": [t.lam for t in plan.types],
        "counts_from": [t.occurred_from for t in plan.types],
    })
    return events[["subject", "type", "occurred_us"]], types


def pandas_job(events: Any, types: Any) -> pa.Table:
    merged = events.merge(types, on="type", how="inner")
    occurred = merged["occurred_us"].to_numpy()
    v_us = int(VALID_AT.timestamp() * 1_000_000)
    alive = (occurred >= merged["counts_from"].to_numpy()) & (occurred <= v_us)
    age = (v_us - occurred) / 1e6
    value = np.where(alive, merged["points"].to_numpy() * np.exp(-merged["lam"].to_numpy() * age),
                     0.0)
    totals = merged.assign(value=value).groupby("subject", sort=False)["value"].sum()
    scores = np.clip(600.0 + totals.to_numpy(), 350.0, 950.0)
    return pa.table({"subject": pa.array(totals.index.to_numpy(), pa.string()),
                     "score": pa.array(scores, pa.float64())})


def max_difference(a: pa.Table, b: pa.Table) -> float:
    left = dict(zip(a.column("subject").to_pylist(), a.column("score").to_pylist(), strict=True))
    right = dict(zip(b.column("subject").to_pylist(), b.column("score").to_pylist(),
                     strict=True))
    assert left.keys() == right.keys(), "different subjects"
    return max((abs(left[k] - right[k]) for k in left), default=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)

    policy = parse_policy(WIDE_POLICY, "synth.WIDE_POLICY")
    path = population_file(args.subjects, args.events, args.seed)
    size = path.stat().st_size / 2**20
    print(f"command:    {' '.join(sys.orig_argv) if argv is None else f'main({argv!r})'}")
    print(f"machine:    Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
          f"{os.cpu_count()} cores, {args.threads} threads")
    print(f"input:      {path.name} ({size:,.0f} MiB), {args.events:,} events, "
          f"{args.subjects:,} subjects, policy {policy.name} ({len(policy.event_types)} types)")
    ours_t, ours = timed("trustledger", args.runs,
                         lambda: trustledger_job(policy, path, args.threads))
    sql = handwritten_sql(policy)
    hand_t, hand = timed("hand-written", args.runs, lambda: handwritten_job(sql, path,
                                                                            args.threads))
    floor_sql = "SELECT subject, count(*) AS n FROM read_parquet($path) GROUP BY subject"
    floor_t, _ = timed("GROUP BY only", args.runs, lambda: handwritten_job(floor_sql, path,
                                                                           args.threads))
    events, types = pandas_frames(policy, path)
    pandas_t, frame = timed("pandas", args.runs, lambda: pandas_job(events, types))
    print(f"equal:      trustledger vs hand-written max |diff| {max_difference(ours, hand):.1e}, "
          f"vs pandas {max_difference(ours, frame):.1e} ({ours.num_rows:,} subjects)")
    for label, seconds in (("trustledger", ours_t), ("hand-written", hand_t),
                           ("pandas", pandas_t), ("GROUP BY only", floor_t)):
        print(f"{label:<13} median {seconds:6.2f} s  {args.events / seconds:>13,.0f} events/s"
              f"  {seconds / hand_t:5.2f}x the hand-written query")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
