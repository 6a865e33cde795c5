"""Impact on an exported real population: histories, propensities, groups, privacy, errors.

A real SQLite ledger gets events (corrections, a withdrawal, late recording, overhang,
several events at one instant, caps, ``when``, an unknown type, erased payloads and
non-event records) and is exported with ``trustledger export``'s own code; the impact
simulation must then start every subject exactly where the reference ``evaluate`` puts
them on their real events, and never print a subject's id.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from typer.testing import CliRunner

from tests.policies.support import parse_declared, split_declarations
from tests.test_impact_vector import KITCHEN, _compare
from trustledger.aggregates import suppress
from trustledger.cli import app
from trustledger.engine import Event, evaluate
from trustledger.errors import InputError
from trustledger.impact import default_scenario, simulate
from trustledger.impact.population import (
    DAYS_PER_MONTH,
    UNLABELLED,
    RealPopulation,
    estimate_rates,
    first_instant,
    load_population,
    read_groups,
    replay_history,
    resolve_history,
)
from trustledger.impact.simulate import events_of, instant
from trustledger.impact.vector import VariantKey, VectorPlan, VectorReading, VectorState
from trustledger.ledger import EventIn, Ledger
from trustledger.policy import CompiledPolicy

# The kitchen policy, with an expiry counted from the recorded time and an overhang.
HISTORY_POLICY = KITCHEN.replace("policy: kitchen", "policy: history") \
    .replace("expiry: {after: P6M}", "expiry: {after: P6M, from: recorded_at}") \
    .replace("expiry: {after: P2Y}", "expiry: {after: P1Y, overhang: P6M}")

SUBJECTS = 36
T0 = datetime(2025, 1, 3, 9, 30, tzinfo=UTC)


def _policy() -> CompiledPolicy:
    return parse_declared(HISTORY_POLICY, "history.yaml")


def _subject(i: int) -> str:
    return f"zq{i:03d}-person-{(i * 7919) % 10007:05d}"


def _events(seed: int = 11) -> tuple[list[tuple[datetime, EventIn]], list[int]]:
    """(recorded, event) for the ledger in recorded order, and the indices to erase."""
    rng = random.Random(seed)
    items: list[tuple[datetime, EventIn]] = []
    n = 0

    def add(subject: str, type_: str, occurred: datetime, delay_days: float = 0.0,
            **extra: Any) -> str:
        nonlocal n
        n += 1
        key = f"ev-{n:05d}"
        items.append((occurred + timedelta(days=delay_days), EventIn(
            source="bank", source_event_id=key, subject=subject, type=type_,
            occurred_at=occurred, **extra)))
        return key

    for i in range(SUBJECTS):
        who = _subject(i)
        for _ in range(rng.randint(1, 14)):
            at = T0 + timedelta(days=rng.uniform(0, 540))
            kind = rng.choice(["gain_a", "gain_a", "loss_b", "loss_c", "perk"])
            attrs = {"amount": rng.choice([0, 150, 900, 2400])} if kind == "gain_a" else {}
            add(who, kind, at, rng.choice([0, 0, 3, 45]), attributes=attrs)
        # Several events at one instant: the monthly cap is reached within it.
        same = T0 + timedelta(days=rng.uniform(100, 500))
        for _ in range(rng.randint(0, 4)):
            add(who, "gain_a", same, attributes={"amount": 2400})
        if i % 5 == 0:  # a correction and a withdrawal
            first = add(who, "loss_c", T0 + timedelta(days=30))
            add(who, "loss_b", T0 + timedelta(days=30), 10, supersedes=first)
            second = add(who, "loss_b", T0 + timedelta(days=60))
            add(who, "retraction", T0 + timedelta(days=61), 1, supersedes=second)
        if i % 6 == 1:  # overhang: an offence before the expiry, recorded after it
            add(who, "loss_c", T0 + timedelta(days=200))
            add(who, "loss_c", T0 + timedelta(days=560), 40)
        if i % 9 == 2:  # a type the policy does not have
            add(who, "parking_fine", T0 + timedelta(days=90))
    items.sort(key=lambda pair: (pair[0], pair[1].source_event_id))
    erase = [k for k in range(len(items)) if k % 23 == 5]
    return items, erase


def _export(folder: Path, suffix: str = ".parquet") -> tuple[Path, list[EventIn], int]:
    """A real ledger with the events, erasures and a consent record, exported."""
    pairs, erase = _events()
    clock_at = [pairs[0][0]]
    with Ledger.open(f"sqlite:///{folder / 'ledger.db'}", clock=lambda: clock_at[0]) as ledger:
        seqs = []
        for recorded, item in pairs:
            clock_at[0] = recorded  # recorded late by 0, 3 or 45 days, in recorded order
            seqs.append(ledger.append_event(item).seq)
        clock_at[0] += timedelta(days=1)
        ledger.append_record("consent", {"purpose": "loan"}, subject=_subject(3))
        for k in erase:
            ledger.purge_payload(seqs[k], "erasure")
        path = folder / f"export{suffix}"
        ledger.export(path)
    return path, [e for _, e in pairs], len(erase)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[EventIn], int]:
    """One export for the module's tests (building the ledger takes a few seconds)."""
    return _export(tmp_path_factory.mktemp("population"))


def _reference_state(policy: CompiledPolicy, real: RealPopulation) -> tuple[Any, datetime]:
    history = resolve_history(policy, real)
    start = first_instant(history, policy)
    plan = VectorPlan(policy, history.variants)
    state = VectorState(plan, len(real), start, {}, instant(start, 12))
    replay_history(state, history)
    return state.read(start), start


def test_month_zero_equals_evaluate_on_each_subjects_real_events(
        exported: tuple[Path, list[EventIn], int]) -> None:
    path, _, _ = exported
    policy = _policy()
    real = load_population(path)
    reading, start = _reference_state(policy, real)
    plan = VectorPlan(policy, resolve_history(policy, real).variants)
    assert _compare(policy, plan, reading, [list(e) for e in real.events], {}) == SUBJECTS
    # The history really exercised what the vectorised path must get right.
    outcomes = [o for events in real.events
                for o in evaluate(policy, events, start).events]
    reasons = " | ".join(o.why_not or "" for o in outcomes)
    for needle in ("corrected by", "withdrawn by", "withdraws", "not in policy", "was false"):
        assert needle in reasons, needle
    contributions = [c for events in real.events
                     for c in evaluate(policy, events, start).scorecards["card"].contributions]
    assert any(c.capped != c.points for c in contributions)
    assert any(o.counts_until is not None and o.recorded_at > o.occurred_at
               for events in real.events for o in evaluate(policy, events, start).events)
    assert "overhang" in " ".join(" ".join(c.notes) for c in contributions)


def test_the_simulation_runs_forward_from_the_histories_as_evaluate_would(
        exported: tuple[Path, list[EventIn], int]) -> None:
    """Every month: each subject's real events plus the simulated ones, by the reference."""
    path, _, _ = exported
    policy = _policy()
    real = load_population(path)
    plan = VectorPlan(policy, resolve_history(policy, real).variants)
    simulated: list[list[Event]] = [[] for _ in range(SUBJECTS)]
    checked = [0]

    def observe(m: int, moment: datetime, counts: Mapping[VariantKey, np.ndarray],
                reading: VectorReading) -> None:
        for i in range(SUBJECTS):
            simulated[i] += [replace(e, subject=real.subjects[i])
                             for e in events_of(plan, m, moment, counts, i)]
        checked[0] += _compare(policy, plan, reading,
                               [[*real.events[i], *simulated[i]] for i in range(SUBJECTS)], {})

    scenario = default_scenario(policy)
    report = simulate(policy, scenario, months=4, seed=3, probe_months=2, observer=observe,
                      population=real)
    assert checked[0] == SUBJECTS * 4
    assert sum(len(s) for s in simulated) > 0
    assert report["subjects"] == SUBJECTS
    assert report["start"] == instant(first_instant(resolve_history(policy, real), policy),
                                      0).date().isoformat()


def test_erased_payloads_and_other_entries_are_skipped_and_counted(
        exported: tuple[Path, list[EventIn], int]) -> None:
    path, items, erased = exported
    real = load_population(path)
    assert real.erased == erased > 0
    assert real.other_entries == 1 + erased  # the consent record and the purge records
    assert sum(len(e) for e in real.events) == len(items) - erased
    report = simulate(_policy(), default_scenario(_policy()), months=2, probe_months=1,
                      population=real)
    assert report["population"]["erased_events_skipped"] == erased
    assert report["population"]["events_not_counted"] > 0


def test_propensities_shrink_toward_the_population_mean() -> None:
    """Two subjects, one type: rate = (n + a·μ) / (T + a), by hand."""
    policy = _policy()
    start = datetime(2026, 1, 15, 12, tzinfo=UTC)
    first_a = start - timedelta(days=24 * DAYS_PER_MONTH)   # observed 24 months
    first_b = start - timedelta(days=10)                     # observed less than 1: 1
    events = (
        tuple(Event("s", f"a{k}", "a", "loss_b", first_a + timedelta(days=40 * k),
                    first_a + timedelta(days=40 * k)) for k in range(6)),
        (Event("s", "b0", "b", "loss_b", first_b, first_b),),
    )
    real = RealPopulation("x", ("a", "b"), events, np.zeros(2, dtype=np.int64),
                          (UNLABELLED,), 0, 0, 0)
    history = resolve_history(policy, real)
    assert first_instant(history, policy) == start
    rates = estimate_rates(policy, history, 2, start, 12.0)
    mu = 7 / 25                                              # 7 events over 24 + 1 months
    assert rates["loss_b"][0] == pytest.approx((6 + 12 * mu) / (24 + 12))
    assert rates["loss_b"][1] == pytest.approx((1 + 12 * mu) / (1 + 12))
    # One event in (less than) a month is not a propensity of 1.
    assert rates["loss_b"][1] < 0.4
    assert set(rates) == {"loss_b"}


def _labels(folder: Path, real: RealPopulation, every: int = 3) -> Path:
    path = folder / "groups.csv"
    rows = ["subject,group"] + [f"{s},{'north' if k % 2 else 'south'}"
                                for k, s in enumerate(real.subjects) if k % every]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_groups_from_a_labels_file_with_unlabelled_subjects(
        exported: tuple[Path, list[EventIn], int], tmp_path: Path) -> None:
    path, _, _ = exported
    real = load_population(path, _labels(tmp_path, load_population(path)))
    assert real.group_names == ("north", "south", UNLABELLED)
    assert real.labelled == SUBJECTS - SUBJECTS // 3
    report = simulate(_policy(), default_scenario(_policy()), months=2, probe_months=1,
                      population=real)
    sizes = {g["name"]: g["subjects"] for g in report["groups"]}
    # 12 unlabelled, 12 north, 12 south: all shown; small cells would be null.
    assert sizes == {"north": 12, "south": 12, UNLABELLED: 12}
    for measure in report["measures"].values():
        assert set(measure["groups"]) == set(sizes)
    # Labels are for the report only: the same scores with and without them.
    plain = simulate(_policy(), default_scenario(_policy()), months=2, probe_months=1,
                     population=load_population(path))
    assert plain["scorecards"] == report["scorecards"]


def test_groups_parquet_and_small_groups_suppressed(
        exported: tuple[Path, list[EventIn], int], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, _, _ = exported
    subjects = load_population(path).subjects
    labels = tmp_path / "groups.parquet"
    pq.write_table(pa.table({"subject": list(subjects[:4]), "group": ["tiny"] * 4}), labels)
    report = simulate(_policy(), default_scenario(_policy()), months=2, probe_months=1,
                      population=load_population(path, labels))
    sizes = {g["name"]: g["subjects"] for g in report["groups"]}
    assert sizes == {"tiny": None, UNLABELLED: None}  # 4 hidden, so its complement too
    assert suppress([4, SUBJECTS - 4]) == [None, None]


def test_no_subject_or_event_id_appears_in_any_output(
        exported: tuple[Path, list[EventIn], int], tmp_path: Path) -> None:
    path, items, _ = exported
    real = load_population(path)
    labels = _labels(tmp_path, real)
    register, text = split_declarations(HISTORY_POLICY)
    (tmp_path / "register.yaml").write_text(register, encoding="utf-8")
    policy = tmp_path / "history.yaml"
    policy.write_text(text, encoding="utf-8")
    out_json, out_html, out_md = (tmp_path / "r.json", tmp_path / "r.html", tmp_path / "r.md")
    result = CliRunner().invoke(app, [
        "impact", str(policy), "--population", str(path), "--groups", str(labels),
        "--months", "3", "--probe-months", "2", "--json", str(out_json), "--html",
        str(out_html), "--markdown", str(out_md)])
    assert result.exit_code == 0, result.output
    texts = {"terminal": result.output, "json": out_json.read_text(encoding="utf-8"),
             "html": out_html.read_text(encoding="utf-8"),
             "markdown": out_md.read_text(encoding="utf-8")}
    assert "north" in texts["terminal"]
    for where, text in texts.items():
        assert "erased" in text, where  # the population's line: counts, no ids
    ids = {*real.subjects, *(e.source_event_id for e in items)}
    for where, text in texts.items():
        leaked = sorted(i for i in ids if i in text)
        assert not leaked, (where, leaked[:3])
    report = json.loads(texts["json"])
    assert report["population"]["subjects"] == SUBJECTS
    assert f"--population {path}" in texts["markdown"]


def test_compare_two_policies_on_one_exported_population(
        exported: tuple[Path, list[EventIn], int], tmp_path: Path) -> None:
    path, _, _ = exported
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    register, text = split_declarations(HISTORY_POLICY)
    (tmp_path / "register.yaml").write_text(register, encoding="utf-8")
    a.write_text(text, encoding="utf-8")
    b.write_text(text.replace("policy: history", "policy: harsher")
                 .replace("points: -12", "points: -30"), encoding="utf-8")
    out = tmp_path / "c.json"
    result = CliRunner().invoke(app, [
        "impact", "--compare", str(a), str(b), "--population", str(path), "--months", "3",
        "--probe-months", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    ra, rb = data["a"], data["b"]
    assert ra["population"] == rb["population"]
    assert ra["start"] == rb["start"] and ra["events"] == rb["events"]
    # Same people, same history, same luck: only the harsher points differ.
    months_a = ra["scorecards"]["card"]["months"]
    months_b = rb["scorecards"]["card"]["months"]
    assert months_b[0]["mean"] < months_a[0]["mean"]
    assert not any(s in result.output for s in load_population(path).subjects)


def _write_policy(path: Path) -> None:
    """The history policy at ``path``, its event-type register next to it."""
    register, text = split_declarations(HISTORY_POLICY)
    (path.parent / "register.yaml").write_text(register, encoding="utf-8")
    path.write_text(text, encoding="utf-8")


def _jsonl(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def _record(payload: Any, **over: Any) -> dict[str, Any]:
    record = {"seq": 1, "kind": "event", "subject": "s1", "source": "bank",
              "source_event_id": "e1", "recorded_at": "2025-01-01T00:00:00+00:00",
              "payload": payload if isinstance(payload, str) or payload is None
              else json.dumps(payload), "payload_hash": "x", "prev_hash": "y", "hash": "z"}
    record.update(over)
    return record


GOOD: dict[str, Any] = {"type": "loss_b", "occurred_at": "2025-01-01T00:00:00+00:00",
                        "attributes": {}, "supersedes": None}


@pytest.mark.parametrize(("record", "message"), [
    (_record({**GOOD, "occurred_at": None}), "payload.occurred_at: missing"),
    (_record({**GOOD, "occurred_at": "2025-01-01T00:00:00"}), "payload.occurred_at: no UTC"),
    (_record({**GOOD, "occurred_at": "yesterday"}), "payload.occurred_at"),
    (_record({**GOOD, "type": 3}), "payload.type"),
    (_record({**GOOD, "attributes": []}), "payload.attributes"),
    (_record({**GOOD, "supersedes": 7}), "payload.supersedes"),
    (_record("{not json"), "payload: not JSON"),
    (_record(GOOD, source=None), "source: missing"),
    (_record(GOOD, seq="one"), "seq"),
    (_record(GOOD, colour="red"), "unknown field"),
    (_record({"purpose": "loan"}, kind="consent"), "no event with a payload"),
])
def test_a_bad_export_is_refused_naming_the_field(tmp_path: Path, record: dict[str, Any],
                                                  message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        load_population(_jsonl(tmp_path, [record]))
    assert "bad.jsonl" in str(info.value)


def test_an_export_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_population(tmp_path / "missing.parquet")
    (tmp_path / "x.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown format"):
        load_population(tmp_path / "x.csv")
    (tmp_path / "x.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match=r"x\.parquet: not a readable"):
        load_population(tmp_path / "x.parquet")


@pytest.mark.parametrize(("text", "message"), [
    ("who,group\ns1,a\n", r"missing column\(s\) \['subject'\]"),
    ("subject,group\ns1,a\ns1,b\n", "row 3: group: this subject already has another"),
    ("subject,group\ns1,\n", "row 2: group: missing"),
    ("subject,group\n,a\n", "row 2: subject: missing"),
])
def test_a_bad_labels_file_is_refused_naming_the_row_and_column(
        tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        read_groups(path)
    assert "labels.csv" in str(info.value)


def test_labels_files_of_other_formats_or_naming_a_subject_are_refused(
        exported: tuple[Path, list[EventIn], int], tmp_path: Path) -> None:
    path, _, _ = exported
    (tmp_path / "labels.txt").write_text("subject,group\n", encoding="utf-8")
    with pytest.raises(InputError, match="unknown format"):
        read_groups(tmp_path / "labels.txt")
    with pytest.raises(InputError, match="no such file"):
        read_groups(tmp_path / "none.csv")
    first = load_population(path).subjects[0]
    labels = tmp_path / "ids.csv"
    labels.write_text(f"subject,group\n{first},{first}\n", encoding="utf-8")
    with pytest.raises(InputError, match="also a subject id") as info:
        load_population(path, labels)
    assert first not in str(info.value)


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the CLI as a user would; exit code and what it printed on stderr."""
    from trustledger.cli import main

    argv = sys.argv
    sys.argv = ["trustledger", "impact", *args]
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
    finally:
        sys.argv = argv
    return int(exit_.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(("extra", "message"), [
    (["--subjects", "50"], "--subjects"),
    (["--prior-months", "0"], "prior_months"),
    (["--prior-months", "inf"], "prior_months"),
])
def test_cli_refuses_population_with_conflicting_options(
        exported: tuple[Path, list[EventIn], int], tmp_path: Path, extra: list[str],
        message: str, capsys: pytest.CaptureFixture[str]) -> None:
    path, _, _ = exported
    policy = tmp_path / "p.yaml"
    _write_policy(policy)
    code, err = _main([str(policy), "--population", str(path), "--months", "2", *extra,
                       "--json", str(tmp_path / "x.json")], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "x.json").exists()


def test_cli_refuses_groups_without_population_and_a_bad_export(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "p.yaml"
    _write_policy(policy)
    labels = tmp_path / "g.csv"
    labels.write_text("subject,group\na,b\n", encoding="utf-8")
    code, err = _main([str(policy), "--groups", str(labels), "--subjects", "20"], capsys)
    assert code == 2 and "--population" in err
    bad = _jsonl(tmp_path, [_record({**GOOD, "occurred_at": None})])
    code, err = _main([str(policy), "--population", str(bad)], capsys)
    assert code == 2 and "bad.jsonl" in err and "payload.occurred_at" in err


def test_a_jsonl_export_gives_the_same_population_as_parquet(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "j").mkdir()
    parquet, _, _ = _export(tmp_path / "p")
    jsonl, _, _ = _export(tmp_path / "j", ".jsonl")
    a, b = load_population(parquet), load_population(jsonl)
    assert a.subjects == b.subjects and a.events == b.events and a.erased == b.erased


def test_impact_does_not_import_the_api() -> None:
    code = ("import sys, trustledger.impact.commands, trustledger.impact.simulate, "
            "trustledger.impact.population, trustledger.impact.report, trustledger.impact.html;"
            " print(sorted(m for m in sys.modules if m.startswith(('trustledger.api', "
            "'fastapi'))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.strip()
    assert out == "[]"


def test_small_cell_rule_hides_a_second_cell_when_one_would_be_recoverable() -> None:
    assert suppress([3, 40, 25]) == [None, 40, None]
    assert suppress([3, 4, 40]) == [None, None, 40]
    assert suppress([0, 40, 25]) == [0, 40, 25]
    assert suppress([12, 5], k=5) == [12, 5]
