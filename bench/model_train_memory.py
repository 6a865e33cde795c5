"""Peak memory of ``trustledger model train`` on a 3,000,000-row file (the budget: 2 GiB).

Generates the planted synthetic set (:mod:`trustledger.models.synthetic`: numerical
features with informative missingness, a 1,500-value category, a proxy, an identifier
column) as Parquet with its audit file and data dictionary, then runs the real command
in a child process — 5-fold validation, holdout, final fit, fairness report and proxy
screen, artifact and card — and reads the child's peak resident set size
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``), so the generator's own memory is not counted.

    .venv/bin/python bench/model_train_memory.py [--rows 3000000] [--format parquet|csv]
        [--keep DIR]

Writes ``bench/out/model_train_memory_<format>.json``; exits non-zero above the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trustledger.models.synthetic import planted_credit

ROOT = Path(__file__).resolve().parent.parent
BUDGET_BYTES = 2 * 1024**3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Folder for the generated files (default: a temporary one).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        data = folder / f"planted.{args.format}"
        audit = folder / f"planted_audit.{args.format}"
        started = time.perf_counter()
        if not data.is_file():
            planted = planted_credit(args.rows, seed=args.seed)
            if args.format == "csv":
                planted.data.to_csv(data, index=False)
                planted.audit.to_csv(audit, index=False)
            else:
                planted.data.to_parquet(data, index=False)
                planted.audit.to_parquet(audit, index=False)
            data.with_name("planted.columns.json").write_text(
                json.dumps(planted.dictionary), encoding="utf-8")
            del planted
        generated = time.perf_counter() - started
        command = [sys.executable, "-c", "from trustledger.cli import main; main()",
                   "model", "train", str(data), "--target", "default", "--id", "row_id",
                   "--audit", str(audit), "--models", str(folder / "models")]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              env={**os.environ, "COLUMNS": "120"})
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"training failed (exit {done.returncode})")
        result = {"rows": args.rows, "format": args.format, "file_bytes": data.stat().st_size,
                  "peak_rss_bytes": peak, "peak_rss_gib": round(peak / 1024**3, 3),
                  "budget_gib": 2, "train_seconds": round(seconds, 1),
                  "generate_seconds": round(generated, 1), "cpus": os.cpu_count(),
                  "load_average": os.getloadavg(), "output": done.stdout.splitlines()[-12:]}
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"model_train_memory_{args.format}.json").write_text(json.dumps(result, indent=2) + "\n",
                                                 encoding="utf-8")
    print("\n".join(done.stdout.splitlines()[-12:]))
    print(f"{args.rows:,} rows ({result['file_bytes'] / 1e6:.0f} MB {args.format}): trained in "
          f"{seconds:.0f} s, peak RSS {peak / 1024**3:.2f} GiB (budget 2 GiB)")
    if peak > BUDGET_BYTES:
        raise SystemExit("over the 2 GiB budget")


if __name__ == "__main__":
    main()
