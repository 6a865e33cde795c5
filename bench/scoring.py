"""Compiled scorecard scoring vs optbinning's ``Scorecard.score()``, in one process on one core.

Trains the German Credit scorecard (as the tests do), builds N rows by resampling its
rows with 5% of every feature missing, checks the compiled points equal optbinning's
on all of them, then measures:

* batch throughput, rows/s on one core (median of --repeats runs): the compiled path
  with categorical columns as Python-text arrays and as Arrow dictionary arrays (the
  form Parquet/DuckDB deliver), points only, with reason codes (what ``model score``
  computes), and with reason codes plus the rows x features matrix of points;
  optbinning's ``score()`` on a DataFrame of the same rows;
* single-row latency, p50/p99: ``CompiledScorecard.score(mapping)`` vs optbinning's
  ``score()`` on a one-row DataFrame.

Run: ``.venv/bin/python bench/scoring.py [--rows 1000000]``; writes bench/out/scoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from trustledger.models import CompiledScorecard
from trustledger.models.features import load_dictionary
from trustledger.models.train import TrainingOptions, quiet_optbinning, train_file

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "german_credit.csv"


def rows_per_second(fn: Callable[[], Any], rows: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return rows / statistics.median(times)


def latencies_us(fn: Callable[[int], Any], count: int) -> tuple[float, float]:
    samples = []
    for i in range(count):
        start = time.perf_counter_ns()
        fn(i)
        samples.append((time.perf_counter_ns() - start) / 1000.0)
    q = np.percentile(np.asarray(samples), [50, 99])
    return float(q[0]), float(q[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--latency-rows", type=int, default=20_000)
    parser.add_argument("--reference-latency-rows", type=int, default=300)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    trained = train_file(DATA, load_dictionary(DATA.with_name("german_credit.columns.json")),
                         TrainingOptions(target="creditability"))
    compiled = CompiledScorecard(trained.artifact)
    reference = trained.reference

    rng = np.random.default_rng(0)
    x = trained.features.iloc[rng.integers(0, len(trained.features), args.rows)]
    x = x.reset_index(drop=True)
    for c in x.columns:
        holes = rng.random(args.rows) < 0.05
        x[c] = x[c].mask(holes, np.nan if x[c].dtype.kind == "f" else None)
    text_columns = {c: x[c].to_numpy() for c in x.columns}
    arrow_columns: dict[str, object] = {
        c: (pa.array(v, from_pandas=True).dictionary_encode() if v.dtype == object else v)
        for c, v in text_columns.items()
    }

    with quiet_optbinning():
        expected = reference.score(x)
    got = compiled.score_batch(text_columns, explain=False).points
    assert np.array_equal(got, expected), "compiled points differ from optbinning's"
    assert np.array_equal(compiled.score_batch(arrow_columns, explain=False).points, expected)

    def run_reference() -> None:
        with quiet_optbinning():
            reference.score(x)

    results: dict[str, Any] = {
        "rows": args.rows, "features": len(compiled.features),
        "categorical": sum(f.kind == "categorical" for f in trained.artifact.features),
        "missing_share": 0.05, "model": compiled.hash,
        "machine": {"python": platform.python_version(), "cpu": platform.processor(),
                    "cores_used": 1, "numpy": np.__version__},
        "equal_to_optbinning": True,
    }
    throughput = {
        "compiled_arrow_points": rows_per_second(
            lambda: compiled.score_batch(arrow_columns, explain=False), args.rows, args.repeats),
        "compiled_arrow_with_reasons": rows_per_second(
            lambda: compiled.score_batch(arrow_columns, per_feature=False), args.rows,
            args.repeats),
        "compiled_arrow_with_reasons_and_per_feature_points": rows_per_second(
            lambda: compiled.score_batch(arrow_columns), args.rows, args.repeats),
        "compiled_text_points": rows_per_second(
            lambda: compiled.score_batch(text_columns, explain=False), args.rows, args.repeats),
        "optbinning_score": rows_per_second(run_reference, args.rows, max(1, args.repeats // 2)),
    }
    results["rows_per_second"] = throughput

    records = x.iloc[: args.latency_rows].to_dict(orient="records")
    for r in records:  # pandas gives NaN for a missing text; a caller gives None
        for k, v in r.items():
            if isinstance(v, float) and np.isnan(v):
                r[k] = None
    for r in records[:100]:
        compiled.score(r)  # warm up
    p50, p99 = latencies_us(lambda i: compiled.score(records[i]), len(records))
    one_row = [x.iloc[[i]] for i in range(args.reference_latency_rows)]

    def reference_one(i: int) -> None:
        with quiet_optbinning():
            reference.score(one_row[i])

    reference_one(0)
    r50, r99 = latencies_us(reference_one, len(one_row))
    results["latency_us"] = {"compiled_p50": p50, "compiled_p99": p99,
                             "optbinning_p50": r50, "optbinning_p99": r99,
                             "compiled_rows": len(records), "optbinning_rows": len(one_row)}

    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scoring.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{args.rows:,} rows, {results['features']} features "
          f"({results['categorical']} categorical), 5% missing; one core; "
          f"compiled == optbinning on every row")
    for name, value in throughput.items():
        print(f"  {name:50s} {value / 1e6:8.3f} M rows/s")
    print(f"  single row, compiled      p50 {p50:8.1f} us   p99 {p99:8.1f} us")
    print(f"  single row, optbinning    p50 {r50:8.1f} us   p99 {r99:8.1f} us")


if __name__ == "__main__":
    main()
