"""Peak memory of a 100,000,000-event population job on DuckDB (out-of-core).

    .venv/bin/python bench/batch_memory.py                       # 5,000,000 subjects, 100M events
    .venv/bin/python bench/batch_memory.py --events 10000000 --subjects 500000

The population (``trustledger synth --profile wide``) is generated in chunks of one
million rows straight into a Parquet file, never whole in memory. The job then runs in a
child process (``rescore`` on DuckDB with a 6 GiB memory limit, spilling beyond it, every
subject's score collected as an Arrow table) and the child's peak resident memory
(``ru_maxrss``) is reported against the 8 GiB budget.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BUDGET = 8 * 2**30

CHILD = """
import sys, time, resource
from datetime import UTC, datetime
from trustledger.batch import duckdb_backend, read_events, rescore
sys.path.insert(0, sys.argv[5])
from batch import wide_policy
policy = wide_policy()
con = duckdb_backend(memory_limit=sys.argv[2], threads=int(sys.argv[3]),
                     temp_directory=sys.argv[4])
started = time.perf_counter()
job = rescore(policy, read_events(con, sys.argv[1]), datetime(2026, 11, 1, tzinfo=UTC),
              consent_all=True, measures=False)
elapsed = time.perf_counter() - started
print(job.subjects, job.table.nbytes, elapsed,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=5_000_000)
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--memory-limit", default="6GB")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from batch import population_file

    started = time.perf_counter()
    path = population_file(args.subjects, args.events, args.seed)
    generation = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"command:    {' '.join(sys.orig_argv) if argv is None else f'main({argv!r})'}")
    print(f"machine:    Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"{args.threads} threads, DuckDB memory_limit {args.memory_limit}")
    print(f"input:      {path.name} ({path.stat().st_size / 2**30:.2f} GiB) "
          f"(ready in {time.perf_counter() - started:.0f} s; generator peak "
          f"{generation / 2**30:.2f} GiB)")
    spill = ROOT / "out" / "spill"
    spill.mkdir(exist_ok=True)
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), args.memory_limit,
                          str(args.threads), str(spill), str(ROOT)],
                         check=True, capture_output=True, text=True).stdout.splitlines()[-1].split()
    subjects, table_bytes, elapsed, peak_kib = int(out[0]), int(out[1]), float(out[2]), \
        int(out[3])
    peak = peak_kib * 1024
    print(f"job:        {args.events:,} events, {subjects:,} subjects in {elapsed:.1f} s "
          f"({args.events / elapsed:,.0f} events/s); result table {table_bytes / 2**20:,.0f} MiB")
    print(f"peak RSS:   {peak / 2**30:.2f} GiB of the job's process "
          f"({'within' if peak <= BUDGET else 'OVER'} the 8 GiB budget)")
    return 0 if peak <= BUDGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
