"""Subject states: bytes per subject, and a restart that reads them instead of rebuilding.

    .venv/bin/python bench/state.py                      # SQLite, the demo population
    .venv/bin/python bench/state.py --database postgres --subjects 2000 --events 40000

A ledger with the demo population (10,000 subjects, 200,000 events, `policies/sesame.yaml`,
every subject opted in to the Sesame score; not timed). Then, each in a **fresh Python
process** (a restart: nothing in memory), at one fixed moment:

1. **write**: one decision per subject (`api.view.decision_assessment`, no HTTP), each
   built from the subject's events, its packed state written behind it (group commits);
   then the sizes of the rows of `subject_states`: bytes per subject, median, mean,
   p99 and max;
2. **cold, with states**: a fresh process, one first decision per subject
   (`LedgerView.decision_subject`: the subject's rights records, last seq and stored
   state read in one snapshot, its events not read; the state checked current, restored
   and read at the moment: no rebuild). Then **warm**: the same decisions again in that
   process (in memory);
3. **cold, without states** (`LedgerView(persist_states=False)`): a fresh process, one
   first decision per subject, each built from the events (what every restart did before).

Reported: decisions/s of each, `cold_with / warm` and `cold_with / cold_without` ratios
(same run), how many answers came from stored states, and the memory of a restored state
vs a built one and of the packed state the service holds between reads (tracemalloc,
`--memory-sample` subjects). Every decision of phase 2 is
checked equal (decision parts) to phase 3's. Prints one JSON document; `uptime` is
in it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from service import database, prepare  # noqa: E402
from trustledger.demo import DEMO_POPULATION  # noqa: E402
from trustledger.principals import ServiceLedger  # noqa: E402
from trustledger.synth import Population, subject_id  # noqa: E402


def phase(url: str, now: datetime, subjects: int, kind: str, out: Path) -> dict[str, Any]:
    """One phase in this process: decisions for every subject (see the module docstring)."""
    from trustledger.api.view import LedgerView, decision_assessment

    result: dict[str, Any] = {"phase": kind}
    with ServiceLedger.open(url) as ledger:
        view = LedgerView(ledger, subject_cache=subjects + 1,
                          persist_states=kind != "without")
        policy = view.policy_in_force(now)
        names = [subject_id(i) for i in range(subjects)]
        by: dict[str, int] = {}
        parts = {}
        light = 0
        t = time.perf_counter()
        for name in names:
            record = view.decision_subject(name, policy, now)
            if not record.light and not record.events:
                continue
            got = decision_assessment(record, policy, now, 0.0).evaluation
            light += record.light
            by[record.answered_by or "none"] = by.get(record.answered_by or "none", 0) + 1
            parts[name] = [[n, c.score, c.tier, [r.text for r in c.reasons]]
                           for n, c in got.scorecards.items()] + [
                [n, m.state.value, str(m.since), str(m.held_until), [r.text for r in m.reasons]]
                for n, m in got.measures.items()]
        seconds = time.perf_counter() - t
        decided = sum(by.values())
        result.update(decisions=decided, seconds=round(seconds, 2),
                      per_s=round(decided / seconds, 1), answered_by=by,
                      events_unread=light)
        if kind == "with":
            t = time.perf_counter()
            for name in names:
                record = view.decision_subject(name, policy, now)
                if record.light or record.events:
                    decision_assessment(record, policy, now, 0.0)
            seconds = time.perf_counter() - t
            result["warm_per_s"] = round(decided / seconds, 1)
        t = time.perf_counter()
        view.close()
        result["flush_s"] = round(time.perf_counter() - t, 2)
    out.write_text(json.dumps(parts))
    return result


def memory(url: str, now: datetime, sample: int) -> dict[str, Any]:
    """Bytes of Python objects per subject: a built maintained evaluation, a restored one,
    and the packed state the service holds between reads."""
    from trustledger.api.view import LedgerView
    from trustledger.engine.compact import unpack
    from trustledger.engine.maintained import MaintainedEvaluation
    from trustledger.engine.packed import PackedState
    from trustledger.ledger.states import SubjectStates
    from trustledger.scoring import rights_at

    with ServiceLedger.open(url) as ledger:
        view = LedgerView(ledger, subject_cache=sample + 1, persist_states=False)
        policy = view.policy_in_force(now)
        store = SubjectStates(ledger._engine)
        records = [r for i in range(sample) if (r := view.subject(subject_id(i))).events]
        rows = [row.state for r in records
                if (row := store.load(r.subject, policy.hash)) is not None]
        rights = [rights_at(policy, r.events, r.records, now) for r in records]
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        built = [MaintainedEvaluation(policy, x.kept, now, x.opt_ins) for x in rights]
        for b in built:
            b.evaluation(now)
        built_bytes = tracemalloc.get_traced_memory()[0] - base
        del built
        base = tracemalloc.get_traced_memory()[0]
        restored = [unpack(policy, data) for data in rows]
        for s in restored:
            s.evaluation(now)
        restored_bytes = tracemalloc.get_traced_memory()[0] - base
        del restored
        # What the service holds per cached subject: the packed state (its own copy of the
        # bytes) as a decision read leaves it; the read's unpacked objects are freed. The
        # same reads once before, unkept: the interpreter's free lists (tuples, floats)
        # then hold what a read leaves to them, and are not counted as the subjects'.
        for data in rows:
            PackedState.restore(policy, data).evaluation(now)
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        held = [PackedState.restore(policy, bytes(bytearray(data))) for data in rows]
        held = [state.evaluation(now)[1] for state in held]
        gc.collect()
        held_bytes = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        # The same, object by object: the state, its bytes and its two moments.
        objects = sum(sys.getsizeof(s) + sys.getsizeof(s.data) + sys.getsizeof(s.horizon)
                      + sys.getsizeof(s.read) for s in held)
        view.close()
    return {"subjects": len(records), "built_bytes_per_subject": built_bytes // len(records),
            "restored_bytes_per_subject": restored_bytes // max(1, len(rows)),
            "held_bytes_per_subject": held_bytes // max(1, len(held)),
            "held_object_bytes_per_subject": objects // max(1, len(held))}


def sizes(url: str) -> dict[str, Any]:
    """Bytes of the packed states in ``subject_states``."""
    import sqlalchemy as sa

    from trustledger.ledger.schema import subject_states

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        lengths = sorted(len(bytes(s)) for (s,) in conn.execute(sa.select(
            subject_states.c.state)))
    engine.dispose()
    return {"states": len(lengths), "median_bytes": statistics.median(lengths),
            "mean_bytes": round(statistics.fmean(lengths), 1),
            "p99_bytes": lengths[int(len(lengths) * 0.99)], "max_bytes": lengths[-1],
            "total_bytes": sum(lengths)}


def child(url: str, now: datetime, subjects: int, kind: str, work: Path) -> dict[str, Any]:
    """Run one phase in a fresh process (a restart); its result."""
    out = work / f"{kind}.json"
    command = [sys.executable, str(Path(__file__)), "--phase", kind, "--url", url,
               "--now", now.isoformat(), "--subjects", str(subjects), "--out", str(out)]
    done = subprocess.run(command, check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--subjects", type=int, default=DEMO_POPULATION.subjects)
    parser.add_argument("--events", type=int, default=DEMO_POPULATION.events)
    parser.add_argument("--memory-sample", type=int, default=1_000)
    parser.add_argument("--phase", choices=["write", "with", "without"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "out" / "state.json")
    args = parser.parse_args()
    if args.phase is not None:
        print(json.dumps(phase(args.url, datetime.fromisoformat(args.now), args.subjects,
                               args.phase, args.out)))
        return
    work = Path(tempfile.mkdtemp(prefix="tl-bench-state-"))
    try:
        with database(args.database, work) as url:
            t = time.perf_counter()
            prepare(url, work, Population(subjects=args.subjects, events=args.events,
                                          seed=DEMO_POPULATION.seed), args.subjects)
            print(f"ledger ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
            now = datetime.now(UTC)  # read once: every phase decides at this moment
            result: dict[str, Any] = {"database": args.database, "subjects": args.subjects,
                                      "events": args.events}
            result["write"] = child(url, now, args.subjects, "write", work)
            result["sizes"] = sizes(url)
            result["cold_with_states"] = child(url, now, args.subjects, "with", work)
            result["cold_without_states"] = child(url, now, args.subjects, "without", work)
            with_, without = result["cold_with_states"], result["cold_without_states"]
            result["ratios"] = {
                "cold_with_to_warm": round(with_["per_s"] / with_["warm_per_s"], 3),
                "cold_without_to_warm": round(without["per_s"] / with_["warm_per_s"], 3),
                "cold_with_to_cold_without": round(with_["per_s"] / without["per_s"], 3)}
            a = json.loads((work / "with.json").read_text())
            b = json.loads((work / "without.json").read_text())
            assert a == b, "a decision from a stored state differs from a built one"
            result["checked_equal"] = len(a)
            result["memory"] = memory(url, now, args.memory_sample)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    report = {"command": "python bench/state.py " + " ".join(sys.argv[1:]),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                         f"Python {platform.python_version()}", "result": result}
    print(json.dumps(report, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
