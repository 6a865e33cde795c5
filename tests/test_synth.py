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
