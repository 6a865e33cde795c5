from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from trustledger.cli import app
from trustledger.errors import InputError
from trustledger.synth import EVENT_SCHEMA, Population, generate, horizon, subject_id


def test_same_seed_same_rows_and_different_seed_different_rows() -> None:
    a = generate(Population(subjects=50, events=2_000, seed=7))
    b = generate(Population(subjects=50, events=2_000, seed=7))
    c = generate(Population(subjects=50, events=2_000, seed=8))
    assert a[0].equals(b[0])
    assert not a[0].equals(c[0])


def test_rows_stay_within_population_and_horizon() -> None:
    pop = Population(subjects=20, events=3_000, seed=1)
    (table,) = generate(pop)
    assert table.schema == EVENT_SCHEMA
    subjects = set(table.column("subject").to_pylist())
    assert subjects <= {subject_id(i) for i in range(20)}
    start, end = horizon(pop)
    times = table.column("occurred_at").to_pylist()
    assert all(start <= t <= end for t in times)
    assert len(set(table.column("source_event_id").to_pylist())) == 3_000


def test_chunks_cover_all_events() -> None:
    tables = generate(Population(subjects=5, events=2_500, seed=3), chunk=1_000)
    assert [t.num_rows for t in tables] == [1_000, 1_000, 500]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"subjects": 0, "events": 1}, "subjects"), ({"subjects": 1, "events": -1}, "events"),
     ({"subjects": 1, "events": 1, "end": datetime(2026, 1, 1)}, "end")],
)
def test_bad_sizes_are_refused_naming_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InputError, match=field):
        Population(**kwargs)  # type: ignore[arg-type]


def test_cli_writes_parquet(tmp_path: Path) -> None:
    out = tmp_path / "pop.parquet"
    result = CliRunner().invoke(app, ["synth", str(out), "--subjects", "10", "--events", "100"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).num_rows == 100


@pytest.mark.parametrize("profile", ["sesame", "rongcheng", "reputation"])
def test_each_profile_writes_its_policys_types_with_attributes_its_schema_accepts(
        profile: str) -> None:
    import orjson

    from trustledger.policy import load_policy

    policy = load_policy(Path(__file__).parent.parent / "policies" / f"{profile}.yaml")
    pop = Population(subjects=200, events=20_000, seed=4, profile=profile)
    (table,) = generate(pop)
    start, end = horizon(pop)
    assert all(start <= t <= end for t in table.column("occurred_at").to_pylist())
    seen: set[str] = set()
    for kind, raw in zip(table.column("type").to_pylist(),
                         table.column("attributes").to_pylist(), strict=True):
        seen.add(kind)
        attributes = orjson.loads(raw)
        schema = {a.name for a in policy.event_types[kind].attributes}
        assert set(attributes) == schema, (kind, attributes)
    assert seen <= set(policy.event_types)
    # Adverse events exist, but are a minority of what people do (rongcheng only deducts).
    if profile == "sesame":
        adverse = sum(t in {"repayment_late", "bill_overdue", "debt_default"} for t in
                      table.column("type").to_pylist())
        assert 0.01 < adverse / table.num_rows < 0.15


def test_subjects_differ_in_activity_but_all_draw_from_the_same_population() -> None:
    from collections import Counter

    (table,) = generate(Population(subjects=1_000, events=20_000, seed=9))
    counts = sorted(Counter(table.column("subject").to_pylist()).values())
    # A spread of activity (thin and thick files), not 20 events each.
    assert counts[len(counts) // 10] < 12 and counts[-len(counts) // 10] > 30


def test_the_wide_profile_keeps_the_rows_the_benchmarks_were_measured_on() -> None:
    (table,) = generate(Population(subjects=30, events=400, seed=2, profile="wide"))
    first = table.slice(0, 1).to_pylist()[0]
    assert (first["subject"], first["type"], first["source"]) == (
        "subject-0000003", "kind_03", "telco-a")
    assert first["occurred_at"].isoformat() == "2024-01-06T10:30:30.356994+00:00"
