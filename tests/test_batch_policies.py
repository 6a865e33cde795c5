"""Every shipped policy on the batch job equals the reference ``evaluate``, subject by subject.

Hypothesis draws populations for each policy of ``policies/`` and ``policies/examples/``:
events of the policy's own types with attributes drawn from their schemas (sometimes
malformed), whole-day times so that ties are frequent, late recording, corrections and
withdrawals, repeated one-off events (Sesame's identity verification: its ``when`` is
decided by the query) also years apart, random ``valid_at``/``known_at`` and opt-ins. The
job runs on the string-keyed events file and on its integer-keyed export; both must give
every subject's scores, totals and metrics to 1e-9, and tiers and measures exactly.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.clock import examples
from tests.policies.support import POLICIES
from tests.test_batch import check_population
from trustledger.batch import (
    COLUMNAR,
    PER_SUBJECT,
    duckdb_backend,
    make_plan,
    read_events,
    read_keyed,
    rescore,
    write_events,
    write_keyed,
)
from trustledger.engine import Event
from trustledger.engine.events import RETRACTION
from trustledger.policy import CompiledPolicy, load_policy
from trustledger.policy.compiled import CompiledAttribute
from trustledger.policy.models import AttributeType

SHIPPED = sorted(p for p in POLICIES.glob("*.yaml") if p.name != "register.yaml") + \
    sorted((POLICIES / "examples").glob("*.yaml"))
SETTINGS = settings(max_examples=examples(10), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def con() -> Iterator[Any]:
    backend = duckdb_backend(memory_limit="1GB")
    yield backend
    backend.disconnect()


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def values(attribute: CompiledAttribute) -> st.SearchStrategy[Any]:
    """Values an attribute's schema accepts."""
    low = attribute.minimum
    high = attribute.maximum
    if attribute.type is AttributeType.INTEGER:
        start = int(low) if low is not None else -5
        return st.integers(start, int(high) if high is not None else start + 200)
    if attribute.type is AttributeType.NUMBER:
        least = float(low) if low is not None else -50.0
        return st.sampled_from([least, least + 0.5, least + 120.0, least + 999.25,
                                *([high] if high is not None else [])])
    if attribute.type is AttributeType.BOOLEAN:
        return st.booleans()
    if attribute.type is AttributeType.ENUM:
        return st.sampled_from(sorted(attribute.values or {"x"}))
    if attribute.type is AttributeType.DATE:
        return st.dates(date(2018, 1, 1), date(2030, 12, 31)).map(date.isoformat)
    return st.sampled_from(["passport", "bank", "x"])


@st.composite
def attributes(draw: st.DrawFn, policy: CompiledPolicy, kind: str) -> dict[str, Any]:
    """Attributes of an event of ``kind``: fitting the schema, or (1 in 15) malformed."""
    if draw(st.integers(0, 14)) == 0:
        return {"bogus": 1}
    out = {}
    for attribute in policy.event_types[kind].attributes:
        if attribute.required or draw(st.booleans()):
            out[attribute.name] = draw(values(attribute))
    return out


@st.composite
def populations(draw: st.DrawFn, policy: CompiledPolicy) -> dict[str, list[Event]]:
    """A few subjects' events of ``policy``'s types (see the module's docstring)."""
    kinds = sorted(policy.event_types)
    start = max(policy.effective_from, policy.effective_from.replace(year=2019))
    people: dict[str, list[Event]] = {}
    for p in range(draw(st.integers(1, 5))):
        subject = f"person-{p}"
        events: list[Event] = []
        # A subject's repeats of one type, near together or years apart.
        repeated = draw(st.sampled_from(kinds))
        for i in range(draw(st.integers(0, 16))):
            kind = repeated if draw(st.integers(0, 3)) == 0 else draw(st.sampled_from(kinds))
            if draw(st.integers(0, 30)) == 0:
                kind = "unknown_type"
            days = draw(st.one_of(st.integers(0, 3 * 365), st.integers(0, 12) .map(
                lambda n: n * 365)))
            occurred = start + timedelta(days=days)
            delay = draw(st.sampled_from([0, 0, 0, 1, 40, 400]))
            source = draw(st.sampled_from(["s1", "s2"]))
            attrs = draw(attributes(policy, kind)) if kind in policy.event_types else {}
            events.append(Event(source, f"{subject}-e{i}", subject, kind, occurred,
                                occurred + timedelta(days=delay), attrs, seq=i + 1))
        for j in range(draw(st.integers(0, 2)) if events else 0):
            target = draw(st.sampled_from(events))
            when = target.recorded_at + timedelta(days=draw(st.integers(0, 300)))
            if draw(st.booleans()) or target.type not in policy.event_types:
                events.append(Event(target.source, f"{subject}-w{j}", subject, RETRACTION,
                                    when, when, {}, target.source_event_id))
            else:
                events.append(Event(target.source, f"{subject}-c{j}", subject, target.type,
                                    target.occurred_at, when,
                                    draw(attributes(policy, target.type)),
                                    target.source_event_id))
        people[subject] = events
    return people


def both_paths(con: Any, folder: Path, policy: CompiledPolicy, people: dict[str, list[Event]],
               data: st.DataObject) -> tuple[list[Any], dict[str, frozenset[str]], Any]:
    """The job on the events file and on its keyed export (same draws of times, opt-ins)."""
    start = policy.effective_from
    valid_at = start + timedelta(days=data.draw(st.integers(0, 9 * 365)), hours=7)
    known_at = data.draw(st.one_of(st.none(), st.integers(0, 9 * 365).map(
        lambda n: start + timedelta(days=n))))
    opt_in = sorted(c for c, card in policy.scorecards.items() if card.opt_in)
    consent_all = data.draw(st.booleans())
    consents = {s: frozenset(opt_in) if consent_all else
                frozenset(data.draw(st.sets(st.sampled_from(opt_in)))) if opt_in else
                frozenset() for s in people}
    path = folder / f"{uuid.uuid4().hex}.parquet"
    write_events([e for history in people.values() for e in history], path)
    keyed_events, keys = read_keyed(con, write_keyed_folder(con, path))
    jobs = []
    for events, mapping in ((read_events(con, path), None), (keyed_events, keys)):
        jobs.append(rescore(policy, events, valid_at, known_at,
                            consents=None if consent_all else consents,
                            consent_all=consent_all, keys=mapping))
    return jobs, consents, known_at


def write_keyed_folder(con: Any, path: Path) -> Path:
    folder = path.with_suffix(".keyed")
    write_keyed(con, path, folder)
    return folder


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_policy_batch_equals_evaluate(con: Any, folder: Path, path: Path) -> None:
    policy = load_policy(path)

    @SETTINGS
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        people = data.draw(populations(policy))
        jobs, consents, known_at = both_paths(con, folder, policy, people, data)
        for job in jobs:
            check_population(policy, people, job, consents, known_at)
        string, keyed = (job.table.sort_by("subject").to_pylist() for job in jobs)
        assert [r["path"] for r in string] == [r["path"] for r in keyed]

    check()


def test_shipped_policies_are_vectorised_but_for_what_needs_a_history() -> None:
    """The query decides every shipped policy's scores, but for event types with a reported
    date (their expiry and fit depend on it), ``when`` conditions on scores and scorecards
    a measure can set back."""
    for path in SHIPPED:
        policy = load_policy(path)
        plan = make_plan(policy, policy.effective_from)
        assert not plan.sequential_types, path
        for name in plan.conditional_types:
            et = policy.event_types[name]
            dated = any(a.type is AttributeType.DATE for a in et.attributes)
            on_scores = et.when is not None and bool(et.when.names & set(policy.scorecards))
            assert dated or on_scores or name in policy.replay_types, (path, name)
    for name in ("sesame", "rongcheng", "reputation", "examples/sesame_lenient"):
        policy = load_policy(POLICIES / f"{name}.yaml")
        assert not make_plan(policy, policy.effective_from).conditional_types, name
    sesame = make_plan(load_policy(POLICIES / "sesame.yaml"),
                       load_policy(POLICIES / "sesame.yaml").effective_from)
    assert [w.type for w in sesame.whens] == ["identity_verified"]
    assert sesame.whens[0].first == 1
    assert sesame.guards() == (frozenset({"sesame"}),)


def sesame_events(subject: str, *identity_years: int) -> list[Event]:
    """A repayment in 2025 and identity verifications in the given years."""
    start = load_policy(POLICIES / "sesame.yaml").effective_from
    events = [Event("bank", f"{subject}-r", subject, "repayment_on_time",
                    start + timedelta(days=30), start + timedelta(days=30), {"amount": 900.0})]
    for i, year in enumerate(identity_years):
        moment = start.replace(year=year) + timedelta(days=3)
        events.append(Event("id", f"{subject}-i{i}", subject, "identity_verified", moment,
                            moment, {"method": "passport"}))
    return events


def test_sesame_paths_follow_opt_ins_and_identity_spread(con: Any, folder: Path) -> None:
    """Without the opt-in, the held measure is blocked: the columnar path. With it, the
    subject's measures are replayed. Two verifications eleven years apart (the first no
    longer counting when the second occurs: retention P10Y) go per subject too."""
    policy = load_policy(POLICIES / "sesame.yaml")
    people = {"ann": sesame_events("ann", 2030, 2030), "bo": sesame_events("bo", 2030),
              "cy": sesame_events("cy", 2025, 2036), "di": sesame_events("di", 2030)}
    path = folder / "sesame-paths.parquet"
    write_events([e for history in people.values() for e in history], path)
    consents = {"di": frozenset({"sesame"})}
    at = policy.effective_from.replace(year=2036, month=6)
    job = rescore(policy, read_events(con, path), at, consents=consents)
    paths = {r["subject"]: r["path"] for r in job.table.to_pylist()}
    assert paths == {"ann": COLUMNAR, "bo": COLUMNAR, "cy": PER_SUBJECT, "di": PER_SUBJECT}
    check_population(policy, people, job, consents, None)
    rows = {r["subject"]: r for r in job.table.to_pylist()}
    assert rows["ann"]["metric__identity_checks"] == 1  # the second one does not count
    assert rows["ann"]["measure__priority_service"] is False
    assert rows["cy"]["metric__identity_checks"] == 1  # the first left after 10 years
