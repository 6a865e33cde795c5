"""The population job on DuckDB equals the reference ``evaluate`` for every subject
(hypothesis: random policies within the language, random histories with late-recorded and
corrected events, random ``valid_at``/``known_at`` and consents)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.governance import put_in_force
from tests.policies.support import d, ev, example, policy_file, split_declarations
from tests.test_incremental_strategies import (
    START,
    close,
    histories,
    near_threshold,
    policies,
)
from trustledger.batch import (
    COLUMNAR,
    PER_SUBJECT,
    Rescore,
    duckdb_backend,
    events_table,
    make_plan,
    read_events,
    rescore,
)
from trustledger.engine import Event, evaluate
from trustledger.errors import InputError
from trustledger.policy import CompiledPolicy

SETTINGS = settings(max_examples=examples(40), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def con() -> Iterator[Any]:
    backend = duckdb_backend(memory_limit="1GB")
    yield backend
    backend.disconnect()


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def check_population(policy: CompiledPolicy, people: dict[str, list[Event]], job: Rescore,
                     consents: dict[str, frozenset[str]], known_at: Any,
                     measures: bool = True) -> None:
    rows = {r["subject"]: r for r in job.table.to_pylist()}
    assert set(rows) == {s for s, events in people.items() if events}
    at = job.valid_at
    for subject, row in rows.items():
        expected = evaluate(policy, people[subject], at, known_at,
                            opt_ins=consents.get(subject, frozenset()))
        edge = False
        for name, result in expected.scorecards.items():
            assert close(row[f"score__{name}"], result.score), (subject, name, row, result)
            assert close(row[f"total__{name}"], result.total), (subject, name)
            if near_threshold(policy, name, result.score, at):
                edge = True
            else:
                assert row[f"tier__{name}"] == result.tier, (subject, name)
        for name, value in expected.metrics.items():
            got = row[f"metric__{name}"]
            assert close(None if got is None else float(got),
                         None if value is None else float(value)), (subject, name, got, value)
            assert value is None or type(got) is type(value), (subject, name, got, value)
        for name, measure in expected.measures.items() if measures else ():
            if not edge:
                assert row[f"measure__{name}"] == measure.in_force, (subject, name)


@st.composite
def populations(draw: st.DrawFn, /, **features: bool) -> tuple[CompiledPolicy,
                                                                dict[str, list[Event]]]:
    policy, specs = draw(policies(**features))
    people = {f"p{i}": draw(histories(specs, subject=f"p{i}", max_events=14))
              for i in range(draw(st.integers(1, 6)))}
    return policy, people


def run(con: Any, folder: Path, policy: CompiledPolicy, people: dict[str, list[Event]],
        data: st.DataObject) -> tuple[Rescore, dict[str, frozenset[str]], Any]:
    events = [e for history in people.values() for e in history]
    valid_at = START + timedelta(hours=data.draw(st.integers(0, 5 * 365 * 24)))
    known_at = data.draw(st.one_of(st.none(), st.integers(0, 5 * 365 * 24).map(
        lambda h: START + timedelta(hours=h))))
    cards = sorted(policy.scorecards)
    consents = {s: frozenset(data.draw(st.sets(st.sampled_from(cards)))) for s in people}
    table = events_table(con, events, folder)
    return rescore(policy, table, valid_at, known_at, consents=consents), consents, known_at


@SETTINGS
@given(data=st.data())
def test_columnar_path_equals_evaluate(con: Any, folder: Path, data: st.DataObject) -> None:
    """Without when/overhang/held measures every subject takes the columnar path."""
    policy, people = data.draw(populations(conditions=False, overhangs=False, measures=False))
    job, consents, known_at = run(con, folder, policy, people, data)
    plan = make_plan(policy, job.valid_at)
    if not plan.sequential_types:
        assert set(job.table.column("path").to_pylist()) <= {COLUMNAR}
    check_population(policy, people, job, consents, known_at)


@SETTINGS
@given(data=st.data())
def test_whole_language_equals_evaluate(con: Any, folder: Path, data: st.DataObject) -> None:
    """Every feature, some subjects taking the per-subject path."""
    policy, people = data.draw(populations())
    job, consents, known_at = run(con, folder, policy, people, data)
    check_population(policy, people, job, consents, known_at)


def test_sesame_population_from_synth(con: Any, folder: Path) -> None:
    from trustledger.synth import Population, write_parquet

    policy = example("sesame")
    path = folder / "sesame.parquet"
    write_parquet(Population(subjects=40, events=600, seed=5), path)
    at = d("2026-11-01")
    job = rescore(policy, read_events(con, path), at, consent_all=True)
    table = pq.read_table(path)
    people: dict[str, list[Event]] = {}
    from trustledger.batch.run import _event

    for row in read_events(con, path).to_pyarrow().to_pylist():
        people.setdefault(row["subject"], []).append(_event(row))
    assert job.subjects == len(people) and table.num_rows == 600
    check_population(policy, people, job, {s: frozenset({"sesame"}) for s in people}, None)
    # priority_service has a holding time and everyone opted in: every history is replayed
    assert set(job.table.column("path").to_pylist()) == {PER_SUBJECT}
    # without measures, the query decides identity_verified's `when` (the first counts)
    scores = rescore(policy, read_events(con, path), at, consent_all=True, measures=False)
    assert set(scores.table.column("path").to_pylist()) == {COLUMNAR}
    check_population(policy, people, scores, {s: frozenset({"sesame"}) for s in people},
                     None, measures=False)


def test_driving_caps_free_policy_is_columnar_apart_from_measures(con: Any,
                                                                   folder: Path) -> None:
    policy = policy_file("driving")
    events = [ev("a", "offence_serious", "2021-02-01"), ev("b", "offence_grave", "2022-03-01"),
              ev("c", "offence_minor", "2022-04-01", subject="bob")]
    table = events_table(con, events, folder)
    job = rescore(policy, table, d("2023-01-01"), measures=False)
    rows = {r["subject"]: r for r in job.table.to_pylist()}
    assert rows["alice"]["score__driving"] == 5.0 and rows["alice"]["tier__driving"] == "admonished"
    assert rows["bob"]["score__driving"] == 1.0
    assert set(job.table.column("path").to_pylist()) == {COLUMNAR}


def test_naive_and_early_valid_at_are_refused(con: Any, folder: Path) -> None:
    policy = policy_file("driving")
    table = events_table(con, [ev("a", "offence_minor", "2021-02-01")], folder)
    with pytest.raises(InputError, match="timezone"):
        rescore(policy, table, d("2023-01-01").replace(tzinfo=None))
    with pytest.raises(InputError, match="effective"):
        rescore(policy, table, d("2019-01-01"))


def test_missing_columns_are_refused(con: Any, folder: Path) -> None:
    import pyarrow as pa

    path = folder / "bad.parquet"
    pq.write_table(pa.table({"subject": ["a"]}), path)
    with pytest.raises(InputError, match="missing column"):
        read_events(con, path)
    with pytest.raises(InputError, match="no such file"):
        read_events(con, folder / "nope.parquet")


def _write_declared(path: Path, text: str) -> None:
    """An old-style policy text at ``path``, its declarations in ``register.yaml`` beside it."""
    register, policy = split_declarations(text)
    (path.parent / "register.yaml").write_text(register, encoding="utf-8")
    path.write_text(policy, encoding="utf-8")


def test_rescore_command_on_a_synthetic_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trustledger.cli import app
    from trustledger.synth import WIDE_POLICY, Population, write_parquet

    events, policy, out = tmp_path / "wide.parquet", tmp_path / "wide.yaml", tmp_path / "r.parquet"
    write_parquet(Population(subjects=30, events=400, seed=2, profile="wide"), events)
    _write_declared(policy, WIDE_POLICY)
    result = CliRunner().invoke(app, ["rescore", str(events), "--policy", str(policy),
                                      "--at", "2026-11-01", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "30 subjects scored" in result.output and "by the per-subject path" in result.output
    table = pq.read_table(out)
    assert table.num_rows == 30
    assert table.column("subject").to_pylist() == sorted(table.column("subject").to_pylist())
    assert table.schema.metadata[b"trustledger.policy_hash"].startswith(b"sha256:")
    missing = CliRunner().invoke(app, ["rescore", str(events), "--at", "2026-11-01"])
    assert missing.exit_code != 0


def test_rescore_command_sample_csv_and_keyed_export(tmp_path: Path) -> None:
    """The sample is drawn at random (the same seed, the same rows), shown in subject order,
    and equals the written results; CSV holds the same rows; a keyed export gives the same."""
    import json

    import pyarrow.csv as csv
    from typer.testing import CliRunner

    from trustledger.cli import app
    from trustledger.synth import Population, write_parquet

    events, out, text = tmp_path / "ses.parquet", tmp_path / "r.parquet", tmp_path / "r.csv"
    write_parquet(Population(subjects=40, events=500, seed=3), events)
    sesame = str(Path(__file__).resolve().parent.parent / "policies" / "sesame.yaml")
    common = ["--policy", sesame, "--at", "2026-11-01", "--consent-all", "--seed", "7"]
    runs = [CliRunner().invoke(app, ["rescore", str(events), *common, "--output", str(out),
                                     "--sample", "6", "--json"]),
            CliRunner().invoke(app, ["rescore", str(events), *common, "--output", str(text),
                                     "--sample", "6", "--json"])]
    for result in runs:
        assert result.exit_code == 0, result.output
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["sample"] == second["sample"] and len(first["sample"]) == 6
    names = [row["subject"] for row in first["sample"]]
    assert names == sorted(names)
    rows = {r["subject"]: r for r in pq.read_table(out).to_pylist()}
    assert all(rows[row["subject"]] == row for row in first["sample"])
    written = csv.read_csv(text).to_pylist()
    assert [r["subject"] for r in written] == sorted(rows)
    assert all(close(r["score__sesame"], rows[r["subject"]]["score__sesame"]) for r in written)
    shown = CliRunner().invoke(app, ["rescore", str(events), *common, "--sample", "3"])
    assert shown.exit_code == 0, shown.output
    assert "a random sample of 3 subjects, in subject order (not by score)" in shown.output
    assert sum(name in shown.output for name in rows) == 3
    # the same job on the keyed export of the same events
    from trustledger.batch import write_keyed

    con = duckdb_backend(memory_limit="512MB")
    write_keyed(con, events, tmp_path / "keyed")
    con.disconnect()
    keyed_out = tmp_path / "k.parquet"
    result = CliRunner().invoke(app, ["rescore", str(tmp_path / "keyed"), *common,
                                      "--output", str(keyed_out)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(keyed_out).to_pylist() == pq.read_table(out).to_pylist()


def test_rescore_command_refuses_a_long_sample(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from trustledger.cli import app
    from trustledger.synth import WIDE_POLICY, Population, write_parquet

    events, policy = tmp_path / "wide.parquet", tmp_path / "wide.yaml"
    write_parquet(Population(subjects=5, events=20, seed=2, profile="wide"), events)
    _write_declared(policy, WIDE_POLICY)
    base = ["rescore", str(events), "--policy", str(policy), "--at", "2026-11-01"]
    too_many = CliRunner().invoke(app, [*base, "--sample", "500", "--output",
                                        str(tmp_path / "r.parquet")])
    assert too_many.exit_code != 0 and "--sample" in too_many.output
    assert not (tmp_path / "r.parquet").exists()


def test_keyed_export_refusals(con: Any, folder: Path) -> None:
    from trustledger.batch import read_keyed

    with pytest.raises(InputError, match="not a keyed export"):
        read_keyed(con, folder / "nothing-here")
    odd = folder / "odd-keys"
    odd.mkdir()
    import pyarrow as pa

    pq.write_table(pa.table({"key": [0, 2], "subject": ["a", "b"]}), odd / "subjects.parquet")
    pq.write_table(pa.table({"key": [0], "type": ["t"]}), odd / "types.parquet")
    pq.write_table(pa.table({"subject": [0]}), odd / "events.parquet")
    with pytest.raises(InputError, match="keys must be 0, 1, 2"):
        read_keyed(con, odd)


def test_rescore_command_from_the_ledger_equals_evaluate_subject(tmp_path: Path,
                                                                 database_url: str) -> None:
    """The ledger's own events and consents (read column-wise), SQLite and PostgreSQL."""
    from datetime import UTC, datetime

    from typer.testing import CliRunner

    from trustledger.cli import app
    from trustledger.ledger import EventIn, Ledger
    from trustledger.rights import grant_opt_in
    from trustledger.scoring import evaluate_subject, publish_policy

    url = database_url
    now = datetime(2026, 6, 1, tzinfo=UTC)
    sesame = Path(__file__).resolve().parent.parent / "policies" / "sesame.yaml"
    with Ledger.open(url, clock=lambda: now) as ledger:
        put_in_force(ledger)   # two operators put the shipped register in force
        publish_policy(ledger, sesame)
        ledger.append_events([
            EventIn(source="bank-a", source_event_id=f"{s}-{i}", subject=s,
                    type="repayment_on_time", occurred_at=datetime(2026, 1 + i, 3, tzinfo=UTC),
                    attributes={"amount": 400.0 * (i + 1)})
            for s in ("ann", "bo") for i in range(4)])
        grant_opt_in(ledger, "ann", "sesame")
    out = tmp_path / "ledger.parquet"
    result = CliRunner().invoke(app, ["rescore", "--database-url", url, "--at", "2026-06-01",
                                      "--output", str(out), "--sample", "0"])
    assert result.exit_code == 0, result.output
    rows = {r["subject"]: r for r in pq.read_table(out).to_pylist()}
    with Ledger.open(url, clock=lambda: now) as ledger:
        from trustledger.policy import load_policy

        expected = evaluate_subject(ledger, "ann", load_policy(sesame), now)
    assert close(rows["ann"]["score__sesame"], expected.scorecards["sesame"].score)
    assert rows["bo"]["score__sesame"] is None  # no opt-in: the opt-in score is not produced
    assert rows["ann"]["measure__priority_service"] == \
        expected.measures["priority_service"].in_force
    # the same from a ledger export (events and consents read from the file)
    export, again = tmp_path / "export.parquet", tmp_path / "again.parquet"
    with Ledger.open(url, clock=lambda: now) as ledger:
        ledger.export(export)
    result = CliRunner().invoke(app, ["rescore", str(export), "--policy", str(sesame),
                                      "--at", "2026-06-01", "--output", str(again)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(again).sort_by("subject").to_pylist() == \
        pq.read_table(out).sort_by("subject").to_pylist()


def test_batch_columns_pages_skip_purged_and_other_kinds(database_url: str) -> None:
    """Pages of any size give the same entries: unpurged, of the kinds asked, in seq order."""
    from datetime import UTC, datetime

    import orjson
    import pyarrow as pa

    from trustledger.ledger import EventIn, Ledger
    from trustledger.ledger.chain import EVENT_KIND
    from trustledger.rights import grant_opt_in
    from trustledger.rights.consent import GRANTED
    from trustledger.rights.erasure import purge

    now = datetime(2026, 6, 1, tzinfo=UTC)
    with Ledger.open(database_url, clock=lambda: now) as ledger:
        stored = ledger.append_events([
            EventIn(source="bank-a", source_event_id=f"e{i}", subject=f"s{i % 3}",
                    type="repayment_on_time", occurred_at=datetime(2026, 1, 1 + i, tzinfo=UTC),
                    attributes={"amount": float(i)}) for i in range(7)])
        grant_opt_in(ledger, "s1", "sesame")
        gone = stored[2].seq
        purge(ledger, gone, "test")
        whole = pa.Table.from_batches(list(ledger.batch_columns((EVENT_KIND, GRANTED),
                                                                rows=1_000)))
        for rows in (1, 2, 3):
            paged = pa.Table.from_batches(list(ledger.batch_columns((EVENT_KIND, GRANTED),
                                                                    rows=rows)))
            assert paged.equals(whole)
        only_events = pa.Table.from_batches(list(ledger.batch_columns(rows=4)))
    seqs = whole.column("seq").to_pylist()
    assert seqs == sorted(seqs) and gone not in seqs
    assert whole.column("kind").to_pylist() == [EVENT_KIND] * 6 + [GRANTED]
    assert only_events.column("kind").to_pylist() == [EVENT_KIND] * 6
    first = orjson.loads(whole.column("payload")[0].as_py())
    assert (first["source"], first["source_event_id"], first["subject"]) == ("bank-a", "e0", "s0")
    assert whole.column("subject").to_pylist()[:6] == [f"s{i % 3}" for i in range(7) if i != 2]
    assert whole.column("recorded_at")[0].as_py() == now
