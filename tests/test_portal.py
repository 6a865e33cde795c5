"""The web portal through FastAPI's test client: sign-in, CSRF, roles, and every refusal.

Each refused form is checked to change nothing: the ledger's head is the same
before and after. The browser scenarios are in ``test_portal_browser.py``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Mapping
from typing import Protocol

import pytest
from fastapi.testclient import TestClient

from tests.governance import SHIPPED, put_in_force
from tests.test_api import ROOT, SESAME, World, build_world
from trustledger.portal.session import COOKIE, MAX_AGE, Session, Sessions
from trustledger.principals import revoke_principal
from trustledger.registry import propose_register
from trustledger.rights import access_log, disputes


class Reply(Protocol):
    """A test client's response (httpx's or httpx2's)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...


REFUSED = ROOT / "tests" / "policies" / "refused"


@pytest.fixture
def world(database_url: str) -> Iterator[World]:
    yield from build_world(database_url)


def shown(response: Reply) -> str:
    """The page's text with HTML entities decoded (messages quote names with ')."""
    return html.unescape(response.text)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: TestClient, key: str) -> Reply:
    """Sign in through the form; the response after the redirect (the caller's page)."""
    form = client.get("/portal/sign-in")
    assert form.status_code == 200
    return client.post("/portal/sign-in", data={"csrf_token": csrf_of(form.text), "api_key": key})


def score_on(html: str) -> float:
    found = re.search(r'data-testid="score-sesame">([^<]+)<', html)
    assert found, "no Sesame score on the page"
    return float(found.group(1).replace(",", ""))


def opted_in_bob(world: World) -> str:
    """Bob signed in, opted in to the Sesame score through the portal; the page's CSRF token."""
    page = sign_in(world.client, world.keys["bob"])
    assert page.status_code == 200 and "Your trust record: bob" in shown(page)
    r = world.client.post("/portal/subjects/bob/consents",
                          data={"csrf_token": csrf_of(page.text), "scope": "scorecard",
                                "scorecard": "sesame"})
    assert r.status_code == 200 and "Your consent was recorded" in shown(r)
    return csrf_of(r.text)


def event_seq(world: World, subject: str, type_: str) -> int:
    return next(e.seq for e in world.ledger.events(subject) if e.type == type_
                and e.seq is not None)


def assert_unchanged(world: World, before: tuple[int, str]) -> None:
    assert world.ledger.head() == before, "a refused request changed the ledger"


# -- sign-in -------------------------------------------------------------------------------

def test_sign_in_with_a_bad_key_fails_clearly(world: World) -> None:
    before = world.ledger.head()
    malformed = sign_in(world.client, "not-a-key")
    assert malformed.status_code == 401
    assert "api_key: the API key is malformed" in shown(malformed)
    unknown = sign_in(world.client, "tl_" + "A" * 43)
    assert unknown.status_code == 401 and "api_key:" in shown(unknown)
    empty = sign_in(world.client, "  ")
    assert empty.status_code == 401 and "api_key: required" in shown(empty)
    # Still signed out: a page sends the visitor to sign in.
    r = world.client.get("/portal/subjects/alice", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/portal/sign-in")
    assert_unchanged(world, before)


def test_sign_in_without_the_forms_csrf_token_is_refused(world: World) -> None:
    world.client.get("/portal/sign-in")
    r = world.client.post("/portal/sign-in", data={"api_key": world.keys["alice"]})
    assert r.status_code == 403 and "csrf_token: missing or wrong" in shown(r)
    assert world.client.get("/portal/subjects/alice",
                            follow_redirects=False).status_code == 303


def test_session_cookie_is_httponly_samesite_signed_and_holds_no_key(world: World) -> None:
    form = world.client.get("/portal/sign-in")
    r = world.client.post("/portal/sign-in", follow_redirects=False,
                          data={"csrf_token": csrf_of(form.text), "api_key": world.keys["alice"]})
    assert r.status_code == 303 and r.headers["location"] == "/portal/subjects/alice"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie and "Path=/portal" in cookie
    value = world.client.cookies[COOKIE]
    assert world.keys["alice"] not in value and world.keys["alice"][3:20] not in value
    # A tampered cookie is no session.
    body, mac = value.split(".")
    stored = next(c for c in world.client.cookies.jar if c.name == COOKIE)
    world.client.cookies.set(COOKIE, body + "." + mac[::-1], domain=stored.domain,
                             path="/portal")
    assert world.client.get("/portal/subjects/alice",
                            follow_redirects=False).status_code == 303


def test_an_expired_or_foreign_session_is_no_session() -> None:
    sessions = Sessions(b"k" * 32)
    value = sessions.encode(Session("p1", "token", 1_000.0))
    assert sessions.decode(value, now=1_000.0 + MAX_AGE) == Session("p1", "token", 1_000.0)
    assert sessions.decode(value, now=1_001.0 + MAX_AGE) is None
    assert Sessions(b"x" * 32).decode(value, now=1_000.0) is None
    assert sessions.decode("garbage", now=1_000.0) is None


def test_a_revoked_key_ends_its_session(world: World) -> None:
    assert sign_in(world.client, world.keys["alice"]).status_code == 200
    revoke_principal(world.ledger, world.principals["alice"].id)
    r = world.client.get("/portal/subjects/alice", follow_redirects=False)
    assert r.status_code == 303 and "why=" in r.headers["location"]


def test_sign_out_needs_the_token_and_ends_the_session(world: World) -> None:
    page = sign_in(world.client, world.keys["alice"])
    assert world.client.post("/portal/sign-out", data={}).status_code == 403
    assert world.client.get("/portal/subjects/alice").status_code == 200
    world.client.post("/portal/sign-out", data={"csrf_token": csrf_of(page.text)})
    assert world.client.get("/portal/subjects/alice",
                            follow_redirects=False).status_code == 303


# -- roles ---------------------------------------------------------------------------------

def test_a_subject_cannot_open_another_subjects_page_or_staff_pages(world: World) -> None:
    sign_in(world.client, world.keys["alice"])
    other = world.client.get("/portal/subjects/bob")
    assert other.status_code == 403
    assert "a subject may see and change only their own data" in shown(other)
    assert "bill overdue" not in shown(other).lower()
    assert world.client.get("/portal/reviewer").status_code == 403
    assert world.client.get("/portal/operator").status_code == 403


def test_staff_cannot_open_a_subjects_page(world: World) -> None:
    sign_in(world.client, world.keys["operator"])
    assert world.client.get("/portal/subjects/alice").status_code == 403
    assert world.client.get("/portal/reviewer").status_code == 403


def test_a_source_lands_on_a_page_pointing_to_the_api(world: World) -> None:
    r = sign_in(world.client, world.keys["source"])
    assert r.status_code == 200 and "works with the HTTP API" in shown(r)


# -- the subject's forms -------------------------------------------------------------------

def test_csrf_missing_or_wrong_is_refused_and_changes_nothing(world: World) -> None:
    opted_in_bob(world)
    seq = event_seq(world, "bob", "bill_overdue")
    before = world.ledger.head()
    for token in (None, "wrong", ""):
        data = {"event_seq": str(seq), "reason": "I paid it"}
        if token is not None:
            data["csrf_token"] = token
        r = world.client.post("/portal/subjects/bob/disputes", data=data)
        assert r.status_code == 403 and "csrf_token: missing or wrong" in shown(r)
    assert_unchanged(world, before)


def test_another_sessions_token_is_refused(world: World) -> None:
    token = opted_in_bob(world)
    seq = event_seq(world, "bob", "bill_overdue")
    with TestClient(world.client.app) as other:
        sign_in(other, world.keys["bob"])
        before = world.ledger.head()
        r = other.post("/portal/subjects/bob/disputes",
                       data={"csrf_token": token, "event_seq": str(seq), "reason": "x"})
        assert r.status_code == 403
        assert_unchanged(world, before)


def test_disputing_an_event_changes_the_score(world: World) -> None:
    token = opted_in_bob(world)
    before = score_on(world.client.get("/portal/subjects/bob").text)
    seq = event_seq(world, "bob", "bill_overdue")
    r = world.client.post("/portal/subjects/bob/disputes",
                          data={"csrf_token": token, "event_seq": str(seq),
                                "reason": "I paid this bill on time"})
    assert r.status_code == 200 and "Your dispute was recorded" in shown(r)
    assert score_on(r.text) > before
    assert "not counting while under review" in shown(r)


@pytest.mark.parametrize(("data", "message"), [
    ({"event_seq": "", "reason": "why"}, "event_seq: required"),
    ({"event_seq": "abc", "reason": "why"}, "event_seq: 'abc' is not a ledger seq"),
    ({"event_seq": "999999", "reason": "why"}, "event_seq: subject 'bob' has no event"),
    ({"event_seq": "SEQ", "reason": "   "}, "reason: required"),
])
def test_a_bad_dispute_is_refused_with_the_field_named(world: World, data: dict[str, str],
                                                       message: str) -> None:
    token = opted_in_bob(world)
    seq = event_seq(world, "bob", "bill_overdue")
    before = world.ledger.head()
    form = {k: v.replace("SEQ", str(seq)) for k, v in data.items()}
    r = world.client.post("/portal/subjects/bob/disputes", data={"csrf_token": token, **form})
    assert r.status_code in (404, 422)
    assert message in shown(r) and 'role="alert"' in shown(r)
    assert_unchanged(world, before)


def test_disputing_someone_elses_event_is_refused(world: World) -> None:
    token = opted_in_bob(world)
    before = world.ledger.head()
    r = world.client.post("/portal/subjects/bob/disputes",
                          data={"csrf_token": token,
                                "event_seq": str(event_seq(world, "alice", "bill_paid")),
                                "reason": "not mine"})
    assert r.status_code == 404 and "has no event" in shown(r)
    r = world.client.post("/portal/subjects/alice/disputes",
                          data={"csrf_token": token, "event_seq": "1", "reason": "x"})
    assert r.status_code == 403
    assert_unchanged(world, before)


@pytest.mark.parametrize(("data", "message"), [
    ({"scope": "decision", "party": "nobody", "purpose": "rental_deposit"},
     "party: there is no relying party named"),
    ({"scope": "decision", "party": "rentals", "purpose": "consumer_credit"},
     "party: 'rentals' is not accredited for purpose"),
    ({"scope": "decision", "party": "", "purpose": "rental_deposit"}, "party:"),
    ({"scope": "scorecard", "scorecard": "nope"}, "scorecard: 'nope' is not an opt-in"),
    ({"scope": "scorecard", "scorecard": "sesame", "expires_on": "2020-01-01"},
     "expires_at: 2020-01-01T00:00:00+00:00 is not in the future"),
    ({"scope": "scorecard", "scorecard": "sesame", "expires_on": "tomorrow"},
     "expires_on: 'tomorrow' is not a date"),
    ({"scope": "everything"}, "scope: choose"),
])
def test_a_bad_consent_is_refused_with_the_field_named(world: World, data: dict[str, str],
                                                       message: str) -> None:
    page = sign_in(world.client, world.keys["alice"])
    before = world.ledger.head()
    r = world.client.post("/portal/subjects/alice/consents",
                          data={"csrf_token": csrf_of(page.text), **data})
    assert r.status_code == 422, r.text[:500]
    assert message in shown(r)
    assert_unchanged(world, before)


def test_consent_granted_and_withdrawn(world: World) -> None:
    page = sign_in(world.client, world.keys["alice"])
    token = csrf_of(page.text)
    r = world.client.post("/portal/subjects/alice/consents",
                          data={"csrf_token": token, "scope": "decision", "party": "rentals",
                                "purpose": "rental_deposit"})
    assert r.status_code == 200 and "decision for party 'rentals'" in shown(r)
    seq = re.search(r'/consents/(\d+)/withdraw', r.text)
    assert seq
    r = world.client.post(f"/portal/subjects/alice/consents/{seq.group(1)}/withdraw",
                          data={"csrf_token": token})
    assert r.status_code == 200 and "withdrawn" in shown(r)
    before = world.ledger.head()
    again = world.client.post(f"/portal/subjects/alice/consents/{seq.group(1)}/withdraw",
                              data={"csrf_token": token})
    assert again.status_code == 422 and "was already withdrawn" in shown(again)
    assert_unchanged(world, before)


def test_a_bad_review_request_is_refused(world: World) -> None:
    token = opted_in_bob(world)
    before = world.ledger.head()
    r = world.client.post("/portal/subjects/bob/reviews", data={"csrf_token": token})
    assert r.status_code == 422 and "measure: required" in shown(r)
    r = world.client.post("/portal/subjects/bob/reviews",
                          data={"csrf_token": token, "measure": "no_such_measure"})
    assert r.status_code == 404 and "has no measure" in shown(r)
    assert_unchanged(world, before)


def test_what_if_answers_and_refuses_bad_questions(world: World) -> None:
    opted_in_bob(world)
    seq = event_seq(world, "bob", "bill_overdue")
    r = world.client.get(f"/portal/subjects/bob?remove={seq}&target=sesame:600-649")
    assert r.status_code == 200 and 'id="whatif-result"' in shown(r)
    assert re.search(r"sesame: [\d.]+ → [\d.]+ \(\+", r.text)
    assert "what it takes to reach tier good (600-649) on sesame" in shown(r)
    bad = world.client.get("/portal/subjects/bob?at=next-year")
    assert bad.status_code == 422 and "at: 'next-year' is not a date" in shown(bad)
    bad = world.client.get("/portal/subjects/bob?target=sesame:gold")
    assert bad.status_code == 422 and "target: scorecard sesame has no tier" in shown(bad)


def test_a_form_that_is_not_url_encoded_is_refused(world: World) -> None:
    token = opted_in_bob(world)
    before = world.ledger.head()
    r = world.client.post("/portal/subjects/bob/disputes", json={"csrf_token": token})
    assert r.status_code == 422 and "content-type:" in shown(r)
    assert_unchanged(world, before)


# -- reviewer ------------------------------------------------------------------------------

def test_reviewer_resolves_a_dispute_and_the_read_is_logged(world: World) -> None:
    token = opted_in_bob(world)
    seq = event_seq(world, "bob", "bill_overdue")
    disputed = world.client.post("/portal/subjects/bob/disputes",
                                 data={"csrf_token": token, "event_seq": str(seq),
                                       "reason": "I paid it"})
    disputed_score = score_on(disputed.text)
    with TestClient(world.client.app) as reviewer:
        assert access_log(world.ledger, "bob") == []
        queue = sign_in(reviewer, world.keys["reviewer"])
        assert queue.status_code == 200 and "Open disputes (1)" in shown(queue)
        assert ">bob<" in queue.text and "I paid it" not in queue.text
        assert re.search(r"(29|30) d \d+ h left", queue.text)
        case = re.search(r'href="(/portal/reviewer/disputes/(\d+))"', queue.text)
        assert case
        page = reviewer.get(case.group(1))
        assert page.status_code == 200 and "I paid it" in page.text
        reads = access_log(world.ledger, "bob")
        assert [(a.name, a.role, a.purpose, a.read) for a in reads] == [
            ("rev", "reviewer", "dispute", "review queue"),
            ("rev", "reviewer", "dispute", "dispute")]
        before = world.ledger.head()
        for data, message in (({"outcome": "valid", "reason": ""}, "reason: required"),
                              ({"outcome": "maybe", "reason": "x"}, "outcome: 'maybe'"),
                              ({"reason": "x"}, "outcome: '' is not one of")):
            bad = reviewer.post(case.group(1), data={"csrf_token": csrf_of(page.text), **data})
            assert bad.status_code == 422 and message in shown(bad)
        # Nothing but the reads of the case page shown again with the message was written.
        assert world.ledger.head()[0] == before[0] + 3
        assert len(access_log(world.ledger, "bob")) == 5
        assert reviewer.post(case.group(1), data={"outcome": "valid", "reason": "x"}
                             ).status_code == 403
        done = reviewer.post(case.group(1), data={"csrf_token": csrf_of(page.text),
                                                  "outcome": "valid",
                                                  "reason": "The bill was overdue."})
        assert done.status_code == 200 and "Open disputes (0)" in shown(done)
    after = world.client.get("/portal/subjects/bob")
    assert score_on(after.text) < disputed_score
    assert "The bill was overdue." in shown(after)
    # The subject sees who read their data.
    assert "review queue" in shown(after)


def test_unknown_cases_are_not_found(world: World) -> None:
    sign_in(world.client, world.keys["reviewer"])
    r = world.client.get("/portal/reviewer/disputes/999999")
    assert r.status_code == 404 and "dispute_seq: there is no dispute 999999" in shown(r)
    r = world.client.get("/portal/reviewer/reviews/999999")
    assert r.status_code == 404 and "request_seq: there is no review request" in shown(r)


# -- operator ------------------------------------------------------------------------------

def test_operator_sees_a_refused_policys_linter_message_and_nothing_is_published(
        world: World) -> None:
    page = sign_in(world.client, world.keys["operator"])
    assert page.status_code == 200 and "passes every safeguard rule" in shown(page)
    put_in_force(world.ledger, REFUSED / "register.yaml")  # declares the traffic ticket
    before = world.ledger.head()
    text = (REFUSED / "travel_ban_for_a_ticket.yaml").read_text(encoding="utf-8")
    line = text.splitlines().index('    condition: "tickets_1y >= 1"') + 1
    r = world.client.post("/portal/operator/policies",
                          data={"csrf_token": csrf_of(page.text), "source": text})
    assert r.status_code == 422
    assert "Refused: the policy breaks a safeguard; nothing was published." in shown(r)
    assert "[proportionality]" in shown(r)
    assert f"policy:{line}:" in shown(r) and "measures.travel_ban.condition" in shown(r)
    assert "tickets_1y" in shown(r)  # the pasted text is kept in the form
    broken = world.client.post("/portal/operator/policies",
                               data={"csrf_token": csrf_of(page.text), "source": "policy: ["})
    assert broken.status_code == 422 and "the policy is not valid" in shown(broken)
    empty = world.client.post("/portal/operator/policies",
                              data={"csrf_token": csrf_of(page.text), "source": ""})
    assert empty.status_code == 422 and "source:" in shown(empty)
    assert_unchanged(world, before)


def test_operator_sees_the_register_in_force_and_pending_proposals(world: World) -> None:
    page = sign_in(world.client, world.keys["operator"])
    assert ("Event-type register in force: <strong>shipped</strong>" in shown(page)
            and "approved by register-approver" in shown(page))
    assert "await a second operator's approval" not in shown(page)
    text = SHIPPED.read_text(encoding="utf-8").replace("title: Event types", "title: New types")
    propose_register(world.ledger, text, "register-proposer")
    again = world.client.get("/portal/operator")
    assert "1 proposal(s) await a second operator's approval." in shown(again)


def test_operator_publishes_a_policy(world: World) -> None:
    page = sign_in(world.client, world.keys["operator"])
    text = SESAME.read_text(encoding="utf-8").replace(
        "title: Sesame-style", "title: Revised Sesame-style")
    r = world.client.post("/portal/operator/policies",
                          data={"csrf_token": csrf_of(page.text), "source": text})
    assert r.status_code == 200 and "The policy version was published." in shown(r)
    assert r.text.count("passes every safeguard rule") == 2
    again = world.client.post("/portal/operator/policies",
                              data={"csrf_token": csrf_of(page.text), "source": text})
    assert "published before; nothing changed" in shown(again)


def test_operator_statistics_and_activity_name_no_subject(world: World) -> None:
    sign_in(world.client, world.keys["operator"])
    first = world.client.get("/portal/operator")
    assert first.status_code == 200
    service = world.client.app.state.service  # type: ignore[attr-defined]
    service.statistics.wait(60)
    r = world.client.get("/portal/operator")
    assert "score histogram" in shown(r) and "Subjects per tier" in shown(r)
    # Two subjects: every non-empty cell is under k = 10, so suppressed. (The page's note
    # also says "fewer than 10": look at the population tables' cells themselves.)
    population = r.text.split('<section id="population"')[1].split("</section>")[0]
    cells = [part for cell in re.findall(r'<td class="num">([^<]*)</td>', population)
             for part in cell.split(" / ")]
    assert {"fewer than 10", "suppressed"} & set(cells), cells
    assert all(part in ("0", "fewer than 10", "suppressed") or int(part.replace(",", "")) >= 10
               for part in cells), cells
    assert "alice" not in shown(r) and ">bob<" not in shown(r)
    rows = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td><td class=\"num\">([\d,]+)</td>", r.text)
    assert len(rows) == 30 and sum(int(n) for _, n in rows) == 4  # the world's 4 events


# -- assets and headers --------------------------------------------------------------------

def test_pages_use_only_the_apps_own_assets(world: World) -> None:
    css = world.client.get("/portal/static/portal.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    page = opted_in_bob(world)
    del page
    html = world.client.get("/portal/subjects/bob")
    assert "default-src 'none'" in html.headers["content-security-policy"]
    assert html.headers["cache-control"] == "no-store"
    assert not re.search(r'(src|href)="(https?:)?//', html.text)
    assert '<html lang="en">' in shown(html) and "<script" not in shown(html)
    # Every visible form control has a label.
    ids = set(re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html.text))
    labelled = set(re.findall(r'<label for="([^"]+)"', html.text))
    assert ids and ids <= labelled


def test_the_portal_is_not_in_the_api_schema(world: World) -> None:
    paths = world.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/portal")]




def test_subject_asks_for_review_and_a_reviewer_lifts_the_measure(world: World) -> None:
    token = opted_in_bob(world)
    r = world.client.post("/portal/subjects/bob/reviews",
                          data={"csrf_token": token, "measure": "pay_later",
                                "statement": "The overdue bill was a bank error."})
    assert r.status_code == 200 and "request for human review was recorded" in shown(r)
    again = world.client.post("/portal/subjects/bob/reviews",
                              data={"csrf_token": token, "measure": "pay_later"})
    assert again.status_code == 422 and "already under review" in shown(again)
    with TestClient(world.client.app) as reviewer:
        queue = sign_in(reviewer, world.keys["reviewer"])
        assert "Pending human reviews (1)" in queue.text
        case = re.search(r'href="(/portal/reviewer/reviews/\d+)"', queue.text)
        assert case
        page = reviewer.get(case.group(1))
        assert "The overdue bill was a bank error." in page.text
        bad = reviewer.post(case.group(1), data={"csrf_token": csrf_of(page.text),
                                                 "decision": "lifted", "reason": " "})
        assert bad.status_code == 422 and "reason: required" in shown(bad)
        done = reviewer.post(case.group(1), data={"csrf_token": csrf_of(page.text),
                                                  "decision": "lifted",
                                                  "reason": "Confirmed as a bank error."})
        assert done.status_code == 200 and "Pending human reviews (0)" in done.text
    after = shown(world.client.get("/portal/subjects/bob"))
    assert "lifted on" in after and "Confirmed as a bank error." in after


def test_a_subject_with_no_events_sees_why_and_can_still_manage_consents(world: World) -> None:
    from trustledger.principals import Role, add_principal

    key = add_principal(world.ledger, "dave", Role.SUBJECT, subject="dave").key
    page = sign_in(world.client, key)
    assert page.status_code == 200
    assert "subject 'dave' has no events in the ledger" in shown(page)
    assert 'data-testid="score-sesame"' not in page.text
    r = world.client.post("/portal/subjects/dave/consents",
                          data={"csrf_token": csrf_of(page.text), "scope": "scorecard",
                                "scorecard": "sesame"})
    assert r.status_code == 200 and "opt-in to scorecard 'sesame'" in shown(r)


def test_a_subject_whose_history_began_this_month_gets_a_one_point_chart(world: World) -> None:

    from trustledger.ledger import EventIn
    from trustledger.principals import Role, add_principal
    from trustledger.rights import grant_opt_in

    key = add_principal(world.ledger, "erin", Role.SUBJECT, subject="erin").key
    world.ledger.append_events([EventIn.model_validate({
        "source": "bank-a", "source_event_id": "erin-1", "subject": "erin", "type": "bill_paid",
        "occurred_at": world.clock().isoformat(), "attributes": {}})])
    grant_opt_in(world.ledger, "erin", "sesame")
    page = sign_in(world.client, key)
    assert page.status_code == 200 and score_on(page.text) == 551
    assert page.text.count('<g class="mark">') == 1 and 'id="chart-sesame"' in page.text


def test_subject_adds_information_to_an_open_dispute(world: World) -> None:
    token = opted_in_bob(world)
    seq = event_seq(world, "bob", "bill_overdue")
    page = world.client.post("/portal/subjects/bob/disputes",
                             data={"csrf_token": token, "event_seq": str(seq), "reason": "paid"})
    form = re.search(r'action="(/portal/subjects/bob/disputes/(\d+)/information)"', page.text)
    assert form
    before = world.ledger.head()
    empty = world.client.post(form.group(1), data={"csrf_token": token, "text": "  "})
    assert empty.status_code == 422 and "text: required" in shown(empty)
    other = world.client.post("/portal/subjects/bob/disputes/999999/information",
                              data={"csrf_token": token, "text": "x"})
    assert other.status_code == 404 and "has no dispute 999999" in shown(other)
    assert_unchanged(world, before)
    added = world.client.post(form.group(1), data={"csrf_token": token,
                                                   "text": "The bank's letter of 3 March."})
    assert added.status_code == 200 and "you added on" in added.text
    assert "The bank's letter of 3 March." in shown(added)
    # The source now has 45 days instead of 30.
    dispute = next(d for d in disputes(world.ledger, "bob") if d.seq == int(form.group(2)))
    assert (dispute.deadline - dispute.opened_at).days == 45


# -- issue 20: the site root, the icon, what a reviewer sees, honest progress ---------------

def test_the_site_root_redirects_to_the_portal_and_the_icon_needs_no_sign_in(world: World
                                                                            ) -> None:
    root = world.client.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/portal/"
    for path in ("/favicon.ico", "/portal/static/favicon.svg"):
        icon = world.client.get(path)
        assert icon.status_code == 200, path
        assert icon.headers["content-type"] == "image/svg+xml"
        assert icon.text.startswith("<svg") and "http://www.w3.org/2000/svg" in icon.text
        assert "href=" not in icon.text  # draws itself: nothing fetched
    page = world.client.get("/portal/sign-in")
    assert '<link rel="icon" href="/portal/static/favicon.svg"' in page.text


def test_a_dispute_case_page_shows_what_the_decision_rests_on(world: World) -> None:
    token = opted_in_bob(world)
    before = score_on(world.client.get("/portal/subjects/bob").text)
    seq = event_seq(world, "bob", "bill_overdue")
    world.client.post("/portal/subjects/bob/disputes",
                      data={"csrf_token": token, "event_seq": str(seq), "reason": "I paid it"})
    with TestClient(world.client.app) as reviewer:
        queue = sign_in(reviewer, world.keys["reviewer"])
        case = re.search(r'href="(/portal/reviewer/disputes/(\d+))"', queue.text)
        assert case
        logged = len(access_log(world.ledger, "bob"))
        page = reviewer.get(case.group(1))
        assert len(access_log(world.ledger, "bob")) == logged + 1  # one read, one record
    text = shown(page)
    # The score as it stood when bob disputed: the overdue bill still counted.
    found = re.search(r'data-testid="decided-score-sesame">([^<]+)<', page.text)
    assert found and float(found.group(1)) == pytest.approx(before, abs=0.01)
    assert 'data-testid="decided-tier-sesame">tier ' in page.text
    assert "Principal reasons" in text and "Privileges and restrictions then" in text
    involved = text.split('id="involved-table"')[1].split("</table>")[0]
    assert f"<td data-label=\"#\">{seq}</td>" in involved and "bill overdue" in involved
    assert "days_overdue=40" in involved and ">disputed<" in involved
    assert "bob's disputes (1)" in text and "I paid it" in text


def test_the_operators_page_says_how_far_the_statistics_are(world: World) -> None:
    first = sign_in(world.client, world.keys["operator"])  # lands on /portal/operator
    # The first look starts the computation, so it is never ready then.
    text = shown(first)
    assert "Statistics are being computed in the background" in text
    assert re.search(r"\d+ of \d+ subjects scored so far|number of subjects is not known yet",
                     text)
    # The retry the page suggests is the one the API's 202 gives (its Retry-After).
    pending = world.call("operator", "GET", "/v1/statistics")
    if pending.status_code == 202:  # still computing: the same interval as the page's
        assert f"in about {pending.json()['retry_after']} s" in text
    assert re.search(r"reload the page</a> in about \d+ s to see how far it got", text)
    service = world.client.app.state.service  # type: ignore[attr-defined]
    service.statistics.wait(60)  # not left running against a ledger being closed


# -- a new key ------------------------------------------------------------------------------

def new_key_from_page(reply: Reply) -> str:
    found = re.search(r'data-testid="new-key" type="text" readonly value="([^"]+)"', reply.text)
    assert found, "no new key on the page"
    return found.group(1)


def test_a_subject_replaces_their_key_and_stays_signed_in(world: World) -> None:
    page = sign_in(world.client, world.keys["bob"])
    assert 'id="new-key-button"' in page.text
    old = world.keys["bob"]
    r = world.client.post("/portal/subjects/bob/key", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 200, shown(r)
    assert r.headers["cache-control"] == "no-store"
    key = new_key_from_page(r)
    assert key != old and "shown <strong>only on this page</strong>" in shown(r)
    # The old key stops at once; the new one speaks for bob through the API.
    assert world.client.get("/v1/subjects/bob/scores",
                            headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert world.client.get("/v1/subjects/bob/scores",
                            headers={"Authorization": f"Bearer {key}"}).status_code == 200
    # The session moved to the new key: the portal still opens bob's page, and its forms work.
    again = world.client.get("/portal/subjects/bob")
    assert again.status_code == 200 and "Your trust record: bob" in shown(again)
    assert csrf_of(again.text) == csrf_of(r.text)
    # A session started with the old key elsewhere has ended.
    with TestClient(world.client.app) as other:
        assert sign_in(other, old).status_code == 401


def test_a_new_key_without_the_sessions_token_changes_nothing(world: World) -> None:
    sign_in(world.client, world.keys["bob"])
    before = world.ledger.head()
    for token in (None, "wrong"):
        data = {} if token is None else {"csrf_token": token}
        r = world.client.post("/portal/subjects/bob/key", data=data)
        assert r.status_code == 403 and "csrf_token: missing or wrong" in shown(r)
    assert_unchanged(world, before)
    assert world.call("bob", "GET", "/v1/subjects/bob/scores").status_code == 200


def test_nobody_replaces_another_subjects_key(world: World) -> None:
    page = sign_in(world.client, world.keys["alice"])
    before = world.ledger.head()
    r = world.client.post("/portal/subjects/bob/key", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 403
    assert 'data-testid="new-key"' not in r.text
    assert_unchanged(world, before)
    assert world.call("bob", "GET", "/v1/subjects/bob/scores").status_code == 200


def test_an_erased_subject_gets_no_new_key_from_the_portal(world: World) -> None:
    page = sign_in(world.client, world.keys["bob"])
    assert world.call("bob", "POST", "/v1/subjects/bob/erasure").status_code == 201
    before = world.ledger.head()
    r = world.client.post("/portal/subjects/bob/key", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 422 and "no new key" in shown(r)
    assert 'data-testid="new-key"' not in r.text
    assert_unchanged(world, before)
