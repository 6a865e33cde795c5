"""The same population expression on Spark local mode, for the record (and DuckDB beside it).

    SPARK_LOCAL_IP=127.0.0.1 .venv/bin/python bench/batch_spark.py  # 500,000 subjects, 10M events

The file is ``trustledger synth --profile wide`` (see ``bench/batch.py``). The job is
``rescore`` with the same Ibis expression on a ``local[2]`` SparkSession (4 GiB driver,
4 shuffle partitions) and on embedded DuckDB; three runs each, medians reported; the two
results are checked equal (1e-9). Spark is for populations beyond one machine, not for
speed on one.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from trustledger.batch import duckdb_backend, read_events, rescore, spark_backend, spark_session

ROOT = Path(__file__).resolve().parent
VALID_AT = datetime(2026, 11, 1, tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=500_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from batch import max_difference, population_file, wide_policy

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    policy = wide_policy()
    path = population_file(args.subjects, args.events, args.seed)
    started = time.perf_counter()
    session = spark_session(memory="4g", partitions=4)
    session.sparkContext.setLogLevel("ERROR")
    spark = spark_backend(session)
    print(f"command:    {' '.join(sys.orig_argv) if argv is None else f'main({argv!r})'}")
    print(f"machine:    Python {platform.python_version()}, Spark {session.version} "
          f"local[2], {os.cpu_count()} cores (session start {time.perf_counter() - started:.1f} s)")
    print(f"input:      {path.name}, {args.events:,} events, {args.subjects:,} subjects")
    results = {}
    for name in ("spark", "duckdb"):
        times: list[float] = []
        for _ in range(args.runs):
            backend = spark if name == "spark" else duckdb_backend()
            begun = time.perf_counter()
            job = rescore(policy, read_events(backend, path, name=f"events_{len(times)}"),
                          VALID_AT, consent_all=True, measures=False)
            times.append(time.perf_counter() - begun)
            if name == "duckdb":
                backend.disconnect()
        results[name] = job.table.select(["subject", "score__wide"]).rename_columns(
            ["subject", "score"])
        median = statistics.median(times)
        print(f"{name:<7} runs {', '.join(f'{t:.1f}' for t in times)} s; median {median:.1f} s "
              f"({args.events / median:,.0f} events/s)")
    session.stop()
    print(f"equal:      max |diff| {max_difference(results['spark'], results['duckdb']):.1e} "
          f"over {results['spark'].num_rows:,} subjects")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
