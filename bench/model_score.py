"""`trustledger model score` end to end: 1,000,000 rows from Parquet, with reason codes.

Trains the German Credit scorecard (as the tests do), builds a Parquet file of N rows by
resampling the data set's rows (every raw column, 5% of each feature missing, an ``id``
column), then scores it with the real command:

* in process: the ``score`` command function itself (``trustledger.models.commands``),
  Parquet → Parquet and Parquet → CSV, median of --repeats runs;
* as a subprocess: ``trustledger model score …`` (the console script's entry point,
  ``trustledger.cli.main``, in a fresh Python), wall and CPU time and peak RSS
  (``/usr/bin/time``), median of --repeats; the same from the rows written as CSV
  (about 300 MB); and the same command on 10 rows, the fixed cost of a run
  (interpreter, imports, model load);

and checks --check-rows random rows of the output against the per-row path
(``CompiledScorecard.score(mapping)``): same score, same reasons in the same order.

Run: ``.venv/bin/python bench/model_score.py [--rows 1000000] [--repeats 3]``;
writes bench/out/model_score.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from trustledger.models import CompiledScorecard, save_artifact
from trustledger.models.commands import score as score_command
from trustledger.models.features import load_dictionary
from trustledger.models.train import TrainingOptions, train_file

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "german_credit.csv"
MISSING_SHARE = 0.05
TIME = "/usr/bin/time"  # GNU time (Debian package `time`): the child's peak RSS


def build_rows(scorecard: CompiledScorecard, rows: int, path: Path) -> None:
    """N resampled German Credit rows with 5% of each feature missing, and an id."""
    source = pacsv.read_csv(DATA)
    rng = np.random.default_rng(0)
    table = source.take(pa.array(rng.integers(0, source.num_rows, rows)))
    for name in scorecard.features:
        i = table.schema.get_field_index(name)
        holes = pa.array(rng.random(rows) < MISSING_SHARE)
        column = table.column(i)
        table = table.set_column(i, name, pc.if_else(holes, pa.nulls(rows, column.type),
                                                     column))
    ids = pc.binary_join_element_wise("app-", pc.cast(pa.array(np.arange(1, rows + 1)),
                                                      pa.string()), "")
    table = table.add_column(0, "id", ids)
    pq.write_table(table, path)


def median_seconds(run: Any, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds (user + system, every thread) of ``run``."""
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        run()
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def child(args: list[str], folder: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds, peak RSS (bytes) of one CLI run in a fresh process (GNU time).

    Not ``os.wait4``: a child forked from this large process would count this
    process's pages, mapped until its ``exec``, in its own peak.
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}
    report = folder / "time.txt"
    done = subprocess.run(
        [TIME, "-f", "%e %U %S %M", "-o", str(report), sys.executable, "-c",
         "from trustledger.cli import main; main()", *args],
        stdout=subprocess.DEVNULL, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"model score failed with exit code {done.returncode}")
    wall, user, system, kilobytes = report.read_text(encoding="utf-8").split()[-4:]
    return float(wall), float(user) + float(system), int(kilobytes) * 1024


def check_sample(scorecard: CompiledScorecard, data: Path, output: Path, count: int) -> int:
    """Compare random rows of the output with the per-row path; returns rows checked."""
    inputs = pq.read_table(data)
    outputs = pq.read_table(output)
    assert outputs.num_rows == inputs.num_rows
    rng = np.random.default_rng(1)
    sample = pa.array(np.sort(rng.choice(inputs.num_rows, size=min(count, inputs.num_rows),
                                         replace=False)))
    rows = inputs.take(sample).to_pylist()
    out = outputs.take(sample).to_pylist()
    for i in range(len(rows)):
        single = scorecard.score({f: rows[i][f] for f in scorecard.features})
        got = out[i]
        assert got["id"] == rows[i]["id"], i
        assert got["score"] == single.points, (i, got["score"], single.points)
        reasons = [got[f"reason_{k + 1}"] for k in range(4)]
        expected = [r.text for r in single.reasons]
        assert reasons == expected + [None] * (4 - len(expected)), (i, reasons, expected)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-rows", type=int, default=20_000)
    args = parser.parse_args()
    if not Path(TIME).is_file():
        raise SystemExit(f"{TIME} is needed for the peak RSS: apt-get install time")

    trained = train_file(DATA, load_dictionary(DATA.with_name("german_credit.columns.json")),
                         TrainingOptions(target="creditability"))
    with tempfile.TemporaryDirectory(prefix="model-score-bench-") as tmp:
        folder = Path(tmp)
        models = folder / "models"
        save_artifact(trained.artifact, models)
        scorecard = CompiledScorecard.load(models, trained.artifact.content_hash)
        h = scorecard.hash
        data = folder / "rows.parquet"
        build_rows(scorecard, args.rows, data)
        size = data.stat().st_size

        results: dict[str, Any] = {
            "command": " ".join(["bench/model_score.py", *sys.argv[1:]]),
            "rows": args.rows, "features": len(scorecard.features),
            "categorical": sum(f.kind == "categorical" for f in trained.artifact.features),
            "missing_share": MISSING_SHARE, "model": h, "input_bytes": size,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "load_average": os.getloadavg(), "pyarrow": pa.__version__,
                        "numpy": np.__version__},
        }
        in_process: dict[str, dict[str, float]] = {}
        for suffix in ("parquet", "csv"):
            out = folder / f"scores.{suffix}"

            def run(out: Path = out) -> None:
                score_command(model=h, data=data, output=out, id_column_name="id",
                              models=models)

            wall, cpu = median_seconds(run, args.repeats)
            in_process[f"parquet_to_{suffix}"] = {
                "seconds": wall, "cpu_seconds": cpu, "rows_per_second": args.rows / wall,
                "rows_per_cpu_second": args.rows / cpu}
        results["in_process"] = in_process
        checked = check_sample(scorecard, data, folder / "scores.parquet", args.check_rows)
        results["rows_checked_against_single_row_path"] = checked

        subprocess_runs: dict[str, dict[str, float]] = {}
        for suffix in ("parquet", "csv"):
            out = folder / f"child.{suffix}"
            runs = [child(["model", "score", h, str(data), "--output", str(out),
                           "--id", "id", "--models", str(models)], folder)
                    for _ in range(args.repeats)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            subprocess_runs[f"parquet_to_{suffix}"] = {
                "seconds": wall, "cpu_seconds": cpu, "rows_per_second": args.rows / wall,
                "peak_rss_bytes": statistics.median(r[2] for r in runs),
                "peak_rss_max_bytes": max(r[2] for r in runs),
            }
        # The same rows as a CSV file (about 300 MB): memory stays bounded by the batch.
        as_csv = folder / "rows.csv"
        pacsv.write_csv(pq.read_table(data), as_csv)
        results["csv_input_bytes"] = as_csv.stat().st_size
        runs = [child(["model", "score", h, str(as_csv), "--output",
                       str(folder / "from_csv.parquet"), "--id", "id", "--models", str(models)],
                      folder) for _ in range(args.repeats)]
        wall = statistics.median(r[0] for r in runs)
        subprocess_runs["csv_to_parquet"] = {
            "seconds": wall, "cpu_seconds": statistics.median(r[1] for r in runs),
            "rows_per_second": args.rows / wall,
            "peak_rss_bytes": statistics.median(r[2] for r in runs),
            "peak_rss_max_bytes": max(r[2] for r in runs),
        }
        as_csv.unlink()

        # The fixed cost of a run (Python, imports, model load): the same command on 10 rows.
        small = folder / "ten.parquet"
        pq.write_table(pq.read_table(data).slice(0, 10), small)
        fixed = [child(["model", "score", h, str(small), "--output", str(folder / "ten.csv"),
                        "--id", "id", "--models", str(models)], folder)
                 for _ in range(args.repeats)]
        subprocess_runs["ten_rows_fixed_cost"] = {
            "seconds": statistics.median(r[0] for r in fixed),
            "cpu_seconds": statistics.median(r[1] for r in fixed),
            "rows_per_second": 10 / statistics.median(r[0] for r in fixed),
            "peak_rss_bytes": statistics.median(r[2] for r in fixed),
            "peak_rss_max_bytes": max(r[2] for r in fixed),
        }
        results["subprocess"] = subprocess_runs
        results["load_average_after"] = os.getloadavg()

    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model_score.json").write_text(json.dumps(results, indent=2) + "\n",
                                              encoding="utf-8")
    print(f"{args.rows:,} rows ({size / 1e6:.1f} MB Parquet), {results['features']} features "
          f"({results['categorical']} categorical), {MISSING_SHARE:.0%} missing, with reasons; "
          f"{checked:,} random rows equal to CompiledScorecard.score")
    print(f"medians of {args.repeats} runs; CPU = user + system seconds of every thread")
    for name, r in in_process.items():
        print(f"  in process   {name:19s} {r['rows_per_second'] / 1e6:6.2f} M rows/s   "
              f"{r['seconds']:.2f} s   CPU {r['cpu_seconds']:.2f} s "
              f"({r['rows_per_cpu_second'] / 1e6:.2f} M rows per CPU second)")
    for name, r in subprocess_runs.items():
        print(f"  subprocess   {name:19s} {r['rows_per_second'] / 1e6:6.2f} M rows/s   "
              f"{r['seconds']:.2f} s   CPU {r['cpu_seconds']:.2f} s   peak RSS "
              f"{r['peak_rss_bytes'] / 2**20:.0f} MiB (max {r['peak_rss_max_bytes'] / 2**20:.0f} "
              "MiB)")
    print(f"  load average before {results['machine']['load_average'][0]:.1f}, "
          f"after {results['load_average_after'][0]:.1f}")


if __name__ == "__main__":
    main()
