"""Measures: compound conditions, conditions over measures, holding time, prerequisites with
set-back, decay-driven changes located in time, and their reasons."""

from __future__ import annotations

from datetime import timedelta

from tests.policies.support import d, ev, parse_declared, policy_file
from trustledger.engine import Event, MeasureState, evaluate

POLICY = parse_declared("""
policy: measures
title: measures
effective_from: 2019-01-01
event_types:
  good:
    domain: finance
    category: credit_repayment
    gravity: minor
    points: 10
    retention: P10Y
  bad:
    domain: finance
    category: credit_repayment
    gravity: moderate
    points: -5
    expiry: {after: P6Y}
    retention: P7Y
metrics:
  negatives_5y: {aggregate: count, sign: negative, window: P5Y}
scorecards:
  s: {events: [good, bad], base: 600}
measures:
  loan:
    kind: privilege
    domain: finance
    severity: moderate
    condition: "s.score >= 600.0 && negatives_5y == 0"
  vip:
    kind: privilege
    domain: finance
    condition: "s.score >= 650.0"
    hold: P90D
  vip_loan:
    kind: privilege
    domain: finance
    condition: "loan && vip"
  watch:
    kind: restriction
    domain: finance
    severity: moderate
    condition: "negatives_5y >= 2"
""", "measures.yaml")

HISTORY = [ev("g1", "good", "2020-01-01"), ev("g2", "good", "2020-02-01"),   # 600 + 20 = 620
           ev("b1", "bad", "2021-01-01")]                                     # 620 - 5 = 615


def test_compound_condition_score_and_no_negative_event_in_5_years() -> None:
    before = evaluate(POLICY, HISTORY, d("2020-12-31")).measures["loan"]
    assert (before.state, before.since) == (MeasureState.GRANTED, None)   # from the start
    denied = evaluate(POLICY, HISTORY, d("2025-12-31")).measures["loan"]
    # 615 ≥ 600, but the late payment of 2021-01-01 is within 5 years
    assert (denied.state, denied.since) == (MeasureState.DENIED, d("2021-01-01"))
    assert [r.text for r in denied.reasons] == [
        "condition `s.score >= 600.0 && negatives_5y == 0` is false on 2025-12-31: "
        "s.score = 615, negatives_5y = 1",
        "bad on 2021-01-01 (\u22125) counts in negatives_5y until 2026-01-01",
    ]
    regained = evaluate(POLICY, HISTORY, d("2026-01-02")).measures["loan"]
    # the negative event left the 5-year window on 2021-01-01 + 5y
    assert (regained.state, regained.since) == (MeasureState.GRANTED, d("2026-01-01"))


def test_restriction_needs_two_negative_events() -> None:
    events = [*HISTORY, ev("b2", "bad", "2022-03-01")]
    watch = evaluate(POLICY, events, d("2022-04-01")).measures["watch"]
    assert (watch.state, watch.since) == (MeasureState.ACTIVE, d("2022-03-01"))
    assert watch.severity is not None and watch.severity.value == "moderate"
    assert evaluate(POLICY, HISTORY, d("2022-04-01")).measures["watch"].state is \
        MeasureState.INACTIVE


VIP = [ev(f"g{i}", "good", f"2026-01-0{i + 1}") for i in range(5)]   # 600 + 50 = 650 on 01-05
DIP = [*VIP, ev("b", "bad", "2026-02-01")]                            # 650 - 5 = 645


def test_minimum_holding_time_before_demotion() -> None:
    granted = evaluate(POLICY, VIP, d("2026-01-10")).measures["vip"]
    assert (granted.state, granted.since) == (MeasureState.GRANTED, d("2026-01-05"))
    held = evaluate(POLICY, DIP, d("2026-03-01")).measures["vip"]
    # 645 < 650 since 2026-02-01, but held 90 days from 2026-01-05: until 2026-04-05
    assert (held.state, held.since, held.held_until) == \
        (MeasureState.GRANTED, d("2026-01-05"), d("2026-04-05"))
    assert held.reasons[0].text == ("kept in force until 2026-04-05 by its minimum holding time "
                                    "of 90 days, although its condition no longer holds")
    demoted = evaluate(POLICY, DIP, d("2026-04-06")).measures["vip"]
    assert (demoted.state, demoted.since) == (MeasureState.DENIED, d("2026-04-05"))


def test_condition_over_earlier_measures() -> None:
    result = evaluate(POLICY, VIP, d("2026-01-10"))
    assert result.measures["vip_loan"].state is MeasureState.GRANTED
    result = evaluate(POLICY, [*VIP, ev("b", "bad", "2026-01-06")], d("2026-01-10"))
    # vip is held (645 < 650 within 90 days); loan is denied (a negative event): vip_loan denied
    assert result.measures["vip"].in_force is True
    assert result.measures["vip_loan"].state is MeasureState.DENIED
    assert "loan = not in force" in result.measures["vip_loan"].reasons[0].text


# --- prerequisites with set-back (driving.yaml: licence_revoked requires warning, notice
# P30D; warning at 6 points, revocation at 8) -----------------------------------------------

DRIVING = policy_file("driving")


def measures(events: list[Event], at: str) -> dict[str, tuple[str, object]]:
    result = evaluate(DRIVING, events, d(at))
    return {name: (m.state.value, m.since) for name, m in result.measures.items()}


def test_revocation_after_a_prior_warning() -> None:
    events = [ev("1", "offence_grave", "2021-01-10"),    # 3
              ev("2", "offence_grave", "2021-02-10"),    # 6: warning from 2021-02-10
              ev("3", "offence_serious", "2021-06-01")]  # 8: warning held 30+ days → revoked
    state = measures(events, "2021-07-01")
    assert state["warning"] == ("active", d("2021-02-10"))
    assert state["licence_revoked"] == ("active", d("2021-06-01"))


JUMP = [ev("1", "offence_grave", "2021-01-10"),          # 3
        ev("2", "offence_serious", "2021-02-01"),        # 5: admonition (≥ 4)
        ev("3", "offence_grave", "2021-04-01")]          # 8 in one step, no warning before


def test_reaching_revocation_without_warning_sets_back_to_warning() -> None:
    state = measures(JUMP, "2021-04-20")
    assert state["licence_revoked"] == ("set_back", d("2021-04-01"))
    assert state["warning"] == ("active", d("2021-04-01"))
    result = evaluate(DRIVING, JUMP, d("2021-04-20"))
    assert result.measures["licence_revoked"].reasons[0].text == (
        "set back to warning: it had not been in force for 30 days when licence revoked was "
        "reached on 2021-04-01; licence revoked applies on the first new event from "
        "2021-05-01 on at which its condition holds")
    assert result.measures["warning"].reasons[0].text == \
        "in force because licence revoked was set back to it on 2021-04-01"


def test_set_back_revocation_does_not_apply_by_itself_when_the_notice_ends() -> None:
    # 8 points still on 2021-05-01 = 2021-04-01 + 30 days, but no new event: still set back
    assert measures(JUMP, "2021-05-01")["licence_revoked"] == ("set_back", d("2021-04-01"))
    assert measures(JUMP, "2022-01-01")["licence_revoked"] == ("set_back", d("2021-04-01"))


def test_set_back_revocation_applies_on_a_new_event_after_the_notice() -> None:
    early = [*JUMP, ev("4", "offence_minor", "2021-04-20")]     # 9, within the notice
    assert measures(early, "2021-05-15")["licence_revoked"] == ("set_back", d("2021-04-01"))
    later = [*JUMP, ev("4", "offence_minor", "2021-05-01")]     # 9, the day the notice ends
    assert measures(later, "2021-04-30")["licence_revoked"] == ("set_back", d("2021-04-01"))
    assert measures(later, "2021-05-01")["licence_revoked"] == ("active", d("2021-05-01"))


def test_set_back_lapses_when_the_condition_no_longer_holds() -> None:
    events = [ev("a1", "offence_minor", "2019-10-20"),   # +1 each, expire 2022-04-20
              ev("a2", "offence_minor", "2019-10-20"),   # 2
              ev("c", "offence_grave", "2022-04-10"),    # 5
              ev("d", "offence_grave", "2022-04-10")]    # 8 in one step: set back
    assert measures(events, "2022-04-15")["licence_revoked"] == ("set_back", d("2022-04-10"))
    # 2022-04-20: the minors expire, 6 < 8 before the notice ends (2022-05-10)
    state = measures(events, "2022-05-15")
    assert state["licence_revoked"] == ("inactive", None)
    assert state["warning"] == ("active", d("2022-04-10"))


def test_revocation_is_held_six_months_after_points_drop() -> None:
    events = [ev("a1", "offence_minor", "2019-10-20"),     # +1 each, expire 2022-04-20
              ev("a2", "offence_minor", "2019-10-20"),     # 2
              ev("g", "offence_grave", "2021-09-01"),      # 5
              ev("s", "offence_serious", "2021-10-01"),    # 7: warning from 2021-10-01
              ev("m", "offence_minor", "2021-12-01")]      # 8: revoked from 2021-12-01
    revoked = evaluate(DRIVING, events, d("2022-05-01")).measures["licence_revoked"]
    # 2022-04-20 the first two minors expire: 6 < 8, but the 6-month hold runs to 2022-06-01
    assert (revoked.state, revoked.since, revoked.held_until) == \
        (MeasureState.ACTIVE, d("2021-12-01"), d("2022-06-01"))
    assert measures(events, "2022-06-02")["licence_revoked"] == ("inactive", d("2022-06-01"))


# --- a change caused by decay alone is located in time -----------------------------------

DECAY = parse_declared("""
policy: decay
title: decay crossing
effective_from: 2026-01-01
event_types:
  late_rent:
    domain: housing
    category: bill_payment
    gravity: moderate
    points: -20
    decay: {half_life: P184D}
    retention: P5Y
scorecards:
  s: {events: [late_rent], base: 600}
measures:
  good_standing: {kind: privilege, domain: housing, severity: moderate,
                  condition: "s.score >= 590.0"}
""", "decay.yaml")


def test_privilege_regained_by_decay_has_the_same_since_whatever_valid_at() -> None:
    events = [ev("r", "late_rent", "2026-03-02")]
    # 600 - 20 = 580 on 2026-03-02; -20 · 2^(-t/184d) reaches -10 at 2026-09-02 (184 days)
    lost = evaluate(DECAY, events, d("2026-05-01")).measures["good_standing"]
    assert (lost.state, lost.since) == (MeasureState.DENIED, d("2026-03-02"))
    for at in ("2026-10-01", "2027-06-01", "2030-01-01"):
        regained = evaluate(DECAY, events, d(at)).measures["good_standing"]
        assert regained.state is MeasureState.GRANTED
        assert regained.since is not None
        assert abs(regained.since - d("2026-09-02")) <= timedelta(seconds=1)


# --- decisions are taken when the facts became known ------------------------------------------

def test_a_notice_is_given_when_the_offence_becomes_known() -> None:
    events = [ev("1", "offence_grave", "2021-01-10"),                  # 3
              ev("2", "offence_minor", "2021-02-01", "2021-03-01")]    # 4, known 2021-03-01
    assert measures(events, "2021-03-15")["admonition"] == ("active", d("2021-03-01"))
    # Asked about a day before it was known, with everything known now: the decision on
    # that day sees what its score sees (the knowledge limit is `known_at`).
    assert measures(events, "2021-02-15")["admonition"] == ("active", d("2021-02-15"))
    as_then = evaluate(DRIVING, events, d("2021-02-15"), d("2021-02-15"))
    assert as_then.measures["admonition"].in_force is False


def test_a_warning_recorded_with_the_revoking_offence_was_not_given_before() -> None:
    # By offence dates the warning came 2021-02-10, four months before revocation level;
    # but both were recorded on 2021-06-01, so no warning had been given: set back.
    events = [ev("1", "offence_grave", "2021-01-10"),
              ev("2", "offence_grave", "2021-02-10", "2021-06-01"),
              ev("3", "offence_serious", "2021-03-01", "2021-06-01")]
    state = measures(events, "2021-06-15")
    assert state["licence_revoked"] == ("set_back", d("2021-06-01"))
    assert state["warning"] == ("active", d("2021-06-01"))
