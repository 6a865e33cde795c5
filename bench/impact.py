"""Impact simulation benchmark: 100,000 subjects x 60 months per example policy.

    .venv/bin/python -m bench.impact                          # all three example policies
    .venv/bin/python -m bench.impact --policy sesame --subjects 20000 --months 60

Each run is the whole of ``trustledger impact POLICY`` without the printing: drawing the
population and its monthly events, evaluating every subject every month (scores, tiers,
metrics, stateless measures, the scenario's feedback), the aggregates, and the probes
after the last month (one more event of each type for everyone; recovery followed up to
120 months). The target (issue 10) is under 2 minutes for 100,000 x 60 on the 2-core
development machine. Figures are wall-clock seconds of one run per policy (the run is
deterministic; repeat with ``--runs`` for a median); the policy is loaded before timing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

from trustledger.impact import default_scenario, simulate
from trustledger.policy import load_policy

POLICIES = Path(__file__).resolve().parent.parent / "policies"
TARGET_SECONDS = 120.0
"""Issue 10: 100,000 subjects x 60 months in under 2 minutes."""


def main() -> None:
    """Time the simulation of each policy and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", action="append",
                        choices=sorted(p.stem for p in POLICIES.glob("*.yaml")))
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    names = args.policy or sorted(p.stem for p in POLICIES.glob("*.yaml"))
    print(f"impact simulation, {args.subjects:,} subjects x {args.months} months, seed "
          f"{args.seed}; {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.machine()}")
    worst = 0.0
    for name in names:
        policy = load_policy(POLICIES / f"{name}.yaml")
        scenario = default_scenario(policy)
        times = []
        events = 0
        for _ in range(args.runs):
            started = time.perf_counter()
            report = simulate(policy, scenario, subjects=args.subjects, months=args.months,
                              seed=args.seed)
            times.append(time.perf_counter() - started)
            events = sum(n or 0 for n in report["events"].values())
        median = statistics.median(times)
        worst = max(worst, median)
        paths = ", ".join(sorted(set(report["condition_paths"].values()))) or "none"
        print(f"  {name:<11} {median:7.1f} s   {events:>12,} simulated events "
              f"({events / median:,.0f}/s)   conditions: {paths}")
    verdict = "under" if worst < TARGET_SECONDS else "OVER"
    print(f"slowest: {worst:.1f} s, {verdict} the {TARGET_SECONDS:.0f} s target")


if __name__ == "__main__":
    main()
