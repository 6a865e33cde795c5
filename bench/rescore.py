"""``trustledger rescore`` on the demo ledger: the whole command's wall time, fresh processes.

    .venv/bin/python bench/rescore.py                          # this tree only
    git archive REV src | tar -x -C /tmp/before                # the code to compare with
    .venv/bin/python bench/rescore.py --before /tmp/before/src

What a user runs, timed as a user sees it: each round starts, round-robin, one fresh
interpreter per code tree (this one, and ``--before SRC``: another tree's ``src``, put
first on ``PYTHONPATH``) running ``trustledger rescore --database-url … --policy
policies/sesame.yaml --at 2026-12-07 --output FILE --json``, and, for this tree, one that
only imports what the command imports (the start-up part of the wall time). Reported,
medians of ``--rounds`` (3): wall time (start to exit), CPU time (user + system, all
threads), the job's own ``seconds`` (from the JSON: ledger read to output written) and
how many subjects took the per-subject path; the ratio of the trees' medians; ``uptime``
before and after (the machine is shared: same-run ratios are the figures to quote).

The ledger is the demo's (``trustledger demo``: 10,000 subjects, 200,000 events, ten opted
in), built by this tree once into ``--ledger`` (default ``bench/out/rescore/demo.db``), or
one an older tree built. Each tree gets its own copy, opened once before the rounds (so a
newer tree's migration, and each tree's bytecode compilation, are not timed), and its own
policy file (``--before-policy``, for a tree that reads another policy format; by
default ``--policy``).

Every tree's output is checked against the reference engine: each subject evaluated on
its own from the ledger with its rights applied
(:func:`trustledger.scoring.evaluate_subject`), scores, totals and metrics to 1e-9, tiers
and measures exactly (``--check N``: the first N subjects; 0: none).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
AT = "2026-12-07"
CLI = "import sys; from trustledger.cli import main; sys.argv[0] = 'trustledger'; main()"
IMPORTS = ("import trustledger.cli, trustledger.batch.commands, trustledger.batch.run, "
           "trustledger.batch.sources, trustledger.ledger, trustledger.policy, "
           "trustledger.rights, trustledger.policy.linter, duckdb; "
           "trustledger.batch.sources.compilers_on_demand(); import ibis.backends.duckdb; "
           "trustledger.batch.commands.arrow_without_pandas()")
"""What the command imports before its job starts, as it imports it."""


def uptime() -> str:
    """The load averages over 1, 5 and 15 minutes, as ``uptime`` shows them."""
    return ", ".join(Path("/proc/loadavg").read_text().split()[:3])


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``command``; its wall time, CPU time (user + system) and standard output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])}… failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def environment(src: Path, data: Path) -> dict[str, str]:
    """This process's environment with ``src`` first on the path and a scratch data dir.

    Bytecode is written and used, as for an installed package: without it (the
    environment's ``PYTHONDONTWRITEBYTECODE``) every run compiles each tree's modules
    from source again, about 0.1 s that no user pays. The untimed first run of each tree
    (:func:`run`) writes it.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    env["TRUSTLEDGER_DATA"] = str(data)
    env.pop("COLUMNS", None)
    return env


def build_ledger(path: Path, data: Path) -> None:
    """The demo ledger at ``path`` (``trustledger demo``), built once by this tree."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the demo ledger at {path} (once)…", flush=True)
    timed([sys.executable, "-c", CLI, "demo", "--database-url", f"sqlite:///{path}"],
          environment(SRC, data))


def check(output: Path, url: str, policy_path: Path, limit: int) -> tuple[int, float]:
    """Subjects compared with the reference engine, and the largest score difference."""
    from trustledger.ledger import Ledger
    from trustledger.policy import load_policy
    from trustledger.scoring import evaluate_subject

    policy = load_policy(policy_path)
    at = datetime.fromisoformat(AT).replace(tzinfo=UTC)
    rows = pq.read_table(output).sort_by("subject").to_pylist()[:limit]
    worst = 0.0
    with Ledger.open(url) as ledger:
        for row in rows:
            expected = evaluate_subject(ledger, row["subject"], policy, at)
            for name in policy.scorecards:
                result = expected.scorecards.get(name)
                pairs = [(row[f"score__{name}"], None if result is None else result.score),
                         (row[f"total__{name}"], None if result is None else result.total)]
                for got, want in pairs:
                    if (got is None) != (want is None):
                        sys.exit(f"{row['subject']} {name}: {got} != {want}")
                    if got is not None and want is not None:
                        worst = max(worst, abs(got - want))
                tier = None if result is None else result.tier
                assert row[f"tier__{name}"] == tier, (row["subject"], name, tier)
            for name, value in expected.metrics.items():
                got = row[f"metric__{name}"]
                assert (got is None) == (value is None), (row["subject"], name, got, value)
                if got is not None and value is not None:
                    worst = max(worst, abs(float(got) - float(value)))
            for name, measure in expected.measures.items():
                assert row[f"measure__{name}"] == measure.in_force, (row["subject"], name)
    if worst > 1e-9:
        sys.exit(f"{output}: a score differs from the reference engine by {worst}")
    return len(rows), worst


def main() -> None:
    """Run the bench and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another tree's src to compare with")
    parser.add_argument("--ledger", type=Path, default=ROOT / "bench/out/rescore/demo.db")
    parser.add_argument("--policy", type=Path, default=ROOT / "policies/sesame.yaml")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--check", type=int, default=10_000,
                        help="subjects checked against the reference engine (0: none)")
    parser.add_argument("--before-policy", type=Path,
                        help="the policy file for the --before tree (default: --policy)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tl-rescore-") as scratch:
        run(args, Path(scratch))


def run(args: argparse.Namespace, scratch: Path) -> None:
    """The rounds, the medians and the check, with copies of the ledger in ``scratch``."""
    build_ledger(args.ledger.resolve(), scratch)
    trees = {"this tree": (SRC, args.policy.resolve())}
    if args.before:
        trees["before"] = (args.before.resolve(),
                           (args.before_policy or args.policy).resolve())
    urls = {}
    for name, (src, _) in trees.items():
        copy = scratch / f"{name.replace(' ', '_')}.db"
        shutil.copyfile(args.ledger, copy)
        urls[name] = f"sqlite:///{copy}"
        timed([sys.executable, "-c", "import sys; from trustledger.ledger import Ledger; "
               "Ledger.open(sys.argv[1]).close()", urls[name]], environment(src, scratch))
    for name, (src, policy) in trees.items():  # untimed: migrations done, bytecode written
        timed([sys.executable, "-c", CLI, "rescore", "--database-url", urls[name],
               "--policy", str(policy), "--at", AT, "--output", str(scratch / "warm.parquet")],
              environment(src, scratch))
    runs: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in trees}
    starts: list[tuple[float, float]] = []
    print(f"load before: {uptime()}", flush=True)
    for round_ in range(1, args.rounds + 1):
        for name, (src, policy) in trees.items():
            output = scratch / f"{name.replace(' ', '_')}.parquet"
            wall, cpu, out = timed(
                [sys.executable, "-c", CLI, "rescore", "--database-url", urls[name],
                 "--policy", str(policy), "--at", AT, "--output", str(output), "--json"],
                environment(src, scratch))
            job = json.loads(out)
            runs[name].append((wall, cpu, float(job["seconds"]), int(job["per_subject"])))
            print(f"round {round_} {name:9s}: wall {wall:6.2f} s, cpu {cpu:6.2f} s, job "
                  f"{job['seconds']:6.2f} s, {job['per_subject']:,} of {job['subjects']:,} "
                  "per subject", flush=True)
        wall, cpu, _ = timed([sys.executable, "-c", IMPORTS], environment(SRC, scratch))
        starts.append((wall, cpu))
    print(f"load after: {uptime()}")
    medians = {name: [statistics.median([float(r[i]) for r in rows]) for i in range(3)]
               for name, rows in runs.items()}
    for name, (wall, cpu, job) in medians.items():
        print(f"{name:9s} median: wall {wall:6.2f} s, cpu {cpu:6.2f} s, job {job:6.2f} s")
    print(f"imports alone (this tree) median: wall "
          f"{statistics.median([w for w, _ in starts]):.2f} s, cpu "
          f"{statistics.median([c for _, c in starts]):.2f} s")
    if "before" in medians:
        ours, theirs = medians["this tree"], medians["before"]
        print(f"before / this tree: wall {theirs[0] / ours[0]:.1f}x, cpu "
              f"{theirs[1] / ours[1]:.1f}x, job {theirs[2] / ours[2]:.1f}x")
    if args.check:
        for name in trees:
            output = scratch / f"{name.replace(' ', '_')}.parquet"
            n, worst = check(output, urls["this tree"], args.policy, args.check)
            print(f"{name}: {n:,} subjects equal to the reference engine "
                  f"(largest difference {worst:.1e})")


if __name__ == "__main__":
    main()
