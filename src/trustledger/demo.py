"""The demo ``make run`` shows: a synthetic population in a ledger, scored by a published policy.

On first run it generates a deterministic population, ingests it, publishes the
example policy and records the opt-ins of a few demo subjects; later runs reuse
the ledger. Then it verifies the chain and scores the demo subjects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from trustledger.engine import Evaluation
from trustledger.ledger import Ledger, VerifyReport, ingest_file
from trustledger.rights import grant_opt_in, opt_ins
from trustledger.scoring import PublishedPolicy, evaluate_subject, publish_policy
from trustledger.synth import Population, subject_id, write_parquet

DEMO_POPULATION = Population(subjects=10_000, events=200_000, seed=20261127)
"""The population ``make run`` builds: the same on every machine."""
DEMO_SUBJECTS = 10
"""How many subjects opt in to the demo's opt-in scorecards and are shown."""


@dataclass(frozen=True)
class DemoReport:
    """What the demo did and found."""

    created: bool
    policy: PublishedPolicy
    verified: VerifyReport
    evaluations: list[Evaluation]


def run_demo(
    ledger: Ledger,
    policy_path: Path,
    data_dir: Path,
    at: datetime | None = None,
    *,
    population: Population = DEMO_POPULATION,
    shown: int = DEMO_SUBJECTS,
    status: Callable[[str], None] = lambda _: None,
) -> DemoReport:
    """Build the demo ledger if it is empty, then verify it and score the demo subjects.

    ``at`` is the valid time (default: the ledger's clock, read after the set-up, so the
    opt-ins just recorded are in force).
    """
    created = ledger.head()[0] == 0
    if created:
        status(f"generating {population.events:,} events for {population.subjects:,} subjects")
        parquet = data_dir / "demo-population.parquet"
        write_parquet(population, parquet)
        status("appending them to the ledger")
        ingest_file(ledger, parquet)
        parquet.unlink()
    policy = publish_policy(ledger, policy_path)
    compiled = policy.compile()
    opt_in_cards = [name for name, card in compiled.scorecards.items() if card.opt_in]
    subjects = [subject_id(i) for i in range(shown)]
    for subject in subjects:
        have = opt_ins(ledger, subject, ledger.now())
        for card in opt_in_cards:
            if card not in have:
                grant_opt_in(ledger, subject, card)
    status("verifying the hash chain")
    verified = ledger.verify()
    valid = at or ledger.now()
    evaluations = [evaluate_subject(ledger, s, compiled, valid) for s in subjects]
    return DemoReport(created, policy, verified, evaluations)
