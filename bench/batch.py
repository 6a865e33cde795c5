"""Population batch: trustledger's DuckDB path vs the best hand-written DuckDB query.

    .venv/bin/python bench/batch.py                        # 1,000,000 subjects, 20,000,000 events
    .venv/bin/python bench/batch.py --subjects 100000 --events 2000000

Every job reads the same population (``trustledger synth --profile wide``: 20 event types,
each with its own points, half-life and expiry; the policy is ``synth.WIDE_POLICY``) and
produces every subject's score at one ``valid_at``, from two files of it:

* the **string-keyed** events file (subject and type names, timestamps);
* the **integer-keyed** export of the same events (``trustledger.batch.write_keyed``:
  dense integer subject and type keys, times in integer microseconds, and the two
  mapping tables), written once before the timings.

Jobs, each timed three times in this one run, round-robin (medians reported):

* trustledger: ``rescore`` on DuckDB, the whole job (corrections, knowledge, attribute
  check, expiry, decay, clamp, tier; one row per subject, named, as an Arrow table), on
  each file;
* hand-written: the most efficient single DuckDB query we know for these scores: each
  type's cut-off (the later of expiry and retention, ``epoch_us(TIMESTAMP v - INTERVAL
  …)``) and decay rate computed once as numbers in a ``VALUES`` table, the filter and
  decay done on integer ``epoch_us(occurred_at)``, ``GROUP BY subject`` (on the keyed
  file: integer keys, no names);
* for reference, the floor of any per-subject query: ``GROUP BY subject`` alone;
* ``--pandas``: also a vectorised pandas merge/groupby on a DataFrame already in memory.

The scores of trustledger and the hand-written query are checked equal (1e-9) on both
files; the figures are events/s and the ratio to the hand-written query on the same file.
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

from trustledger.batch import (
    duckdb_backend,
    make_plan,
    read_events,
    read_keyed,
    rescore,
    write_keyed,
)
from trustledger.policy import CompiledPolicy
from trustledger.synth import WIDE_POLICY, Population, write_parquet

ROOT = Path(__file__).resolve().parent
VALID_AT = datetime(2026, 11, 1, tzinfo=UTC)
LN2 = math.log(2.0)


def wide_policy() -> CompiledPolicy:
    """``synth.WIDE_POLICY`` compiled: its declarations become its event-type register."""
    sys.path.insert(0, str(ROOT.parent))
    from tests.policies.support import parse_declared

    return parse_declared(WIDE_POLICY, "synth.WIDE_POLICY")


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


def interleaved(runs: int, jobs: dict[str, Callable[[], pa.Table]]
                ) -> dict[str, tuple[float, pa.Table]]:
    """Each job ``runs`` times, round-robin (so load from other processes hits all alike);
    per job the median time and its last result."""
    times: dict[str, list[float]] = {label: [] for label in jobs}
    results: dict[str, pa.Table] = {}
    for _ in range(runs):
        for label, job in jobs.items():
            started = time.perf_counter()
            results[label] = job()
            times[label].append(time.perf_counter() - started)
    for label, spent in times.items():
        print(f"  {label:<21} runs {', '.join(f'{t:.2f}' for t in spent)} s")
    return {label: (statistics.median(spent), results[label]) for label, spent in times.items()}


def trustledger_job(policy: CompiledPolicy, path: Path, threads: int,
                   keyed: bool = False) -> pa.Table:
    con = duckdb_backend(memory_limit="6GB", threads=threads)
    try:
        keys = None
        if keyed:
            events, keys = read_keyed(con, path)
        else:
            events = read_events(con, path)
        job = rescore(policy, events, VALID_AT, consent_all=True, measures=False, keys=keys)
        return job.table.select(["subject", "score__wide"]).rename_columns(["subject", "score"])
    finally:
        con.disconnect()


def keyed_folder(path: Path) -> Path:
    folder = path.with_suffix(".keyed")
    if not (folder / "events.parquet").exists():
        started = time.perf_counter()
        con = duckdb_backend(memory_limit="6GB")
        try:
            write_keyed(con, path, folder)
        finally:
            con.disconnect()
        print(f"wrote the keyed export in {time.perf_counter() - started:.1f} s: {folder}")
    return folder


def handwritten_sql(policy: CompiledPolicy, keyed: dict[str, int] | None = None) -> str:
    """The efficient query: per-type constants once, integer arithmetic per event.

    ``keyed``: type name to key, for the integer-keyed export (``occurred_us`` stored).
    """
    rows = []
    at = VALID_AT.replace(tzinfo=None).isoformat()  # UTC, as naive timestamps
    for name, et in policy.event_types.items():
        spec = policy.model.event_types[name]
        assert et.expiry is not None and et.half_life is not None
        cuts = [f"epoch_us(TIMESTAMP '{at}' - INTERVAL '{d.months} months {d.days} days')"
                for d in (et.expiry, et.retention)]
        key = f"'{name}'" if keyed is None else str(keyed[name])
        rows.append(f"({key}, {float(spec.points)!r}, "  # type: ignore[arg-type]
                    f"{LN2 / (et.half_life * 1e6)!r}, greatest({', '.join(cuts)}))")
    v_us = int(VALID_AT.timestamp()) * 1_000_000
    occurred = "occurred_us" if keyed is not None else "epoch_us(occurred_at)"
    return f"""
        WITH types(type, points, lam, cut) AS (VALUES {", ".join(rows)}),
        e AS (SELECT subject, type, {occurred} AS o FROM read_parquet($path))
        SELECT e.subject,
               least(950.0, greatest(350.0, 600.0 + sum(
                   CASE WHEN e.o > t.cut AND e.o <= {v_us}
                        THEN t.points * exp(-t.lam * ({v_us} - e.o)) ELSE 0.0 END))) AS score
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


def named(table: pa.Table, folder: Path) -> pa.Table:
    """A keyed result (subject keys) with the subjects' names."""
    names = pq.read_table(folder / "subjects.parquet").column("subject").combine_chunks()
    return table.set_column(0, "subject", names.take(table.column("subject")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--pandas", action="store_true", help="also time pandas")
    args = parser.parse_args(argv)

    policy = wide_policy()
    path = population_file(args.subjects, args.events, args.seed)
    folder = keyed_folder(path)
    keyed_events = folder / "events.parquet"
    types = dict(zip(*(pq.read_table(folder / "types.parquet").column(c).to_pylist()
                       for c in ("type", "key")), strict=True))
    size = path.stat().st_size / 2**20
    print(f"command:    {' '.join(sys.orig_argv) if argv is None else f'main({argv!r})'}")
    print(f"machine:    Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
          f"{os.cpu_count()} cores, {args.threads} threads; load before: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"input:      {path.name} ({size:,.0f} MiB), keyed export "
          f"{keyed_events.stat().st_size / 2**20:,.0f} MiB; {args.events:,} events, "
          f"{args.subjects:,} subjects, policy {policy.name} ({len(policy.event_types)} types)")
    sql, sql_k = handwritten_sql(policy), handwritten_sql(policy, types)
    floor_sql = "SELECT subject, count(*) AS n FROM read_parquet($path) GROUP BY subject"
    jobs: dict[str, Callable[[], pa.Table]] = {
        "trustledger": lambda: trustledger_job(policy, path, args.threads),
        "hand-written": lambda: handwritten_job(sql, path, args.threads),
        "GROUP BY only": lambda: handwritten_job(floor_sql, path, args.threads),
        "trustledger, keyed": lambda: trustledger_job(policy, folder, args.threads, keyed=True),
        "hand-written, keyed": lambda: handwritten_job(sql_k, keyed_events, args.threads),
        "GROUP BY only, keyed": lambda: handwritten_job(floor_sql, keyed_events, args.threads),
    }
    if args.pandas:
        events, types_frame = pandas_frames(policy, path)
        jobs["pandas"] = lambda: pandas_job(events, types_frame)
    found = interleaved(args.runs, jobs)
    ours, hand = found["trustledger"][1], found["hand-written"][1]
    ours_k, hand_k = found["trustledger, keyed"][1], found["hand-written, keyed"][1]
    equal = (f"equal:      trustledger vs hand-written max |diff| "
             f"{max_difference(ours, hand):.1e}; keyed: trustledger vs hand-written "
             f"{max_difference(ours_k, named(hand_k, folder)):.1e}, keyed vs string-keyed "
             f"trustledger {max_difference(ours_k, ours):.1e} ({ours.num_rows:,} subjects)")
    if args.pandas:
        equal += f"; pandas {max_difference(ours, found['pandas'][1]):.1e}"
    print(equal)
    for label, (seconds, _) in found.items():
        against = found["hand-written, keyed" if "keyed" in label else "hand-written"][0]
        print(f"{label:<21} median {seconds:6.2f} s  {args.events / seconds:>13,.0f} events/s"
              f"  {seconds / against:5.2f}x the hand-written query on the same file")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
