"""The portal in a real browser: Debian's Chromium driven by Playwright against uvicorn.

The scenarios of issue 7: a subject signs in, sees their score and chart, disputes
an event and sees the score change; a reviewer resolves the dispute; an operator
publishes a policy and sees a refused one's linter message; a subject cannot open
another subject's page; a bad key fails clearly; a forged CSRF token is refused.
Every main page is also photographed at desktop (1280 px) and phone (390 px) width
into ``build/screenshots/`` (``TRUSTLEDGER_SCREENSHOTS`` names another folder;
``make screenshots`` runs just these tests), and checked not to scroll sideways
on the phone.

Without Chromium or Playwright the tests skip — except when ``CI`` is set, where
they fail (``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.clock import START, FixedClock
from tests.governance import put_in_force
from tests.test_api import ROOT, SESAME
from tests.test_api_live import serving
from trustledger.api import Settings, create_app
from trustledger.ledger import EventIn
from trustledger.principals import Role, ServiceLedger, add_principal
from trustledger.rights import grant_opt_in
from trustledger.scoring import publish_policy

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking"]
WIDTHS = {"desktop": 1280, "phone": 390}
PHONE: ViewportSize = {"width": 390, "height": 844}
"""A phone's screen (CSS pixels)."""
SCREENS = 4
"""The subject's page on a phone is at most this many screens tall."""
BEFORE_POLICY = datetime(2024, 6, 1, tzinfo=UTC)
"""Dave's first event: before Sesame's effective date, 2025-01-01."""
SHOTS = Path(os.environ.get("TRUSTLEDGER_SCREENSHOTS") or ROOT / "build" / "screenshots")

try:
    from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright
except ImportError:
    if os.environ.get("CI"):
        raise  # in CI a missing browser driver is a failure, not a skip
    pytest.skip("playwright is not installed (pip install -e '.[dev]')",
                allow_module_level=True)


@dataclass
class Site:
    """The live server's base URL, its ledger and one key per actor."""

    base: str
    ledger: ServiceLedger
    keys: dict[str, str]


def _event(n: int, subject: str, type_: str, when: datetime, **attributes: Any) -> EventIn:
    return EventIn.model_validate({
        "source": "bank-a", "source_event_id": f"{subject}-{n}", "subject": subject,
        "type": type_, "occurred_at": when.isoformat(), "attributes": attributes})


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    url = f"sqlite:///{tmp_path_factory.mktemp('portal') / 'ledger.db'}"
    clock = FixedClock(START)  # the ledger's and the server's: the page shows no real date
    ledger = ServiceLedger.open(url, clock=clock)
    put_in_force(ledger)
    publish_policy(ledger, SESAME)
    keys = {
        "bob": add_principal(ledger, "bob", Role.SUBJECT, subject="bob").key,
        "carol": add_principal(ledger, "carol", Role.SUBJECT, subject="carol").key,
        "reviewer": add_principal(ledger, "rev-1", Role.REVIEWER).key,
        "operator": add_principal(ledger, "op", Role.OPERATOR).key,
        "dave": add_principal(ledger, "dave", Role.SUBJECT, subject="dave").key,
        "source": add_principal(ledger, "bank-a", Role.SOURCE,
                                accreditations=("bill_paid",), domains=("finance",)).key,
    }
    now = clock()
    events = [_event(i, "bob", "repayment_on_time", now - timedelta(days=30 * i + 5),
                     amount=300.0) for i in range(1, 13)]
    events += [_event(20, "bob", "bill_overdue", now - timedelta(days=50), days_overdue=65),
               _event(21, "bob", "identity_verified", now - timedelta(days=300),
                      method="passport"),
               _event(22, "bob", "repayment_late", now - timedelta(days=200), days_late=12,
                      amount=80.0),
               _event(1, "carol", "bill_paid", now - timedelta(days=10))]
    # Dave's history began before the policy came into force (2025-01-01): his chart
    # marks the effective date and draws no score before it.
    events += [_event(30 + i, "dave", "repayment_on_time", BEFORE_POLICY + timedelta(days=61 * i),
                      amount=250.0) for i in range(12)]
    events += [_event(50, "dave", "bill_overdue", now - timedelta(days=120), days_overdue=40),
               _event(51, "dave", "repayment_late", now - timedelta(days=400), days_late=20,
                      amount=90.0)]
    ledger.append_events(events)
    grant_opt_in(ledger, "bob", "sesame")
    grant_opt_in(ledger, "carol", "sesame")
    grant_opt_in(ledger, "dave", "sesame")
    with serving(create_app(Settings(database_url=url, clock=clock))) as base:
        yield Site(base, ledger, keys)
    ledger.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, headless=True,
                                     args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Any]:
    """A factory of pages, each in its own browser context (its own cookies)."""
    contexts = []

    def make() -> Page:
        context = browser.new_context(viewport={"width": WIDTHS["desktop"], "height": 900})
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def shoot(page: Page, name: str) -> None:
    """Photograph the page at each width; on the phone nothing may scroll sideways."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
        if label == "phone":
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 1, f"{name}: {overflow} px wider than a phone screen"
    page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})


def sign_in(page: Page, site: Site, key: str) -> None:
    page.goto(f"{site.base}/portal/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def score(page: Page) -> float:
    return float(page.get_by_test_id("score-sesame").inner_text().replace(",", ""))


def test_subject_disputes_an_event_and_a_reviewer_resolves_it(site: Site, new_page: Any
                                                              ) -> None:
    page = new_page()
    page.goto(f"{site.base}/portal/sign-in")
    shoot(page, "sign-in")
    # Keyboard only: skip link, brand, then the key field; Enter submits.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "api_key"
    page.keyboard.type(site.keys["bob"])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/portal/subjects/bob$"))
    assert page.get_by_role("heading", level=1).inner_text() == "Your trust record: bob"
    before = score(page)
    assert 350 <= before <= 950
    chart = page.locator("svg#chart-sesame")
    assert chart.is_visible()
    assert chart.locator("g.mark").count() == 15  # every event of bob's is marked
    assert chart.locator("rect title").filter(has_text="tier").count() >= 2
    assert page.locator("#contributions-table tbody tr").count() == 15
    shoot(page, "subject")

    # What if the overdue bill were removed, and what would it take to reach "good"?
    page.get_by_label("If this event were removed").select_option(
        label=_option(page, "#wi-remove", "bill overdue"))
    page.get_by_label("What it takes to reach").select_option(value="sesame:600-649")
    page.get_by_role("button", name="Show").click()
    assert re.search(r"sesame: [\d.]+ → [\d.]+ \(\+", page.locator("#whatif-result").inner_text())
    takes = page.locator("#whatif-takes").inner_text()
    assert "what it takes to reach tier" in takes and "600-649" in takes
    assert score(page) == pytest.approx(before, abs=0.02)  # asking changed nothing
    shoot(page, "subject-what-if")

    page.get_by_label("Event", exact=True).select_option(
        label=_option(page, "#d-event", "bill overdue"))
    page.get_by_label("Why it is wrong").fill("I paid this bill on time; here is the receipt.")
    page.get_by_role("button", name="Dispute this event").click()
    page.wait_for_url(re.compile(r"done=disputed"))
    assert "Your dispute was recorded" in page.get_by_role("status").first.inner_text()
    disputed = score(page)
    assert disputed > before
    assert "not counting while under review" in page.locator("#contributions").inner_text()

    reviewer = new_page()
    sign_in(reviewer, site, site.keys["reviewer"])
    reviewer.wait_for_url(re.compile(r"/portal/reviewer$"))
    queue = reviewer.locator("#dispute-queue")
    assert queue.locator("tbody tr").count() == 1
    assert re.search(r"(29|30) d \d+ h left", queue.inner_text())
    shoot(reviewer, "reviewer-queue")
    queue.get_by_role("link").click()
    assert "I paid this bill on time" in reviewer.locator("dl").inner_text()
    shoot(reviewer, "dispute-case")
    reviewer.get_by_label("Valid — the event counts again").check()
    reviewer.get_by_label("Your reason (the subject sees it)").fill(
        "The creditor's statement shows the bill was 65 days overdue.")
    reviewer.get_by_role("button", name="Resolve the dispute").click()
    reviewer.wait_for_url(re.compile(r"done=dispute"))
    assert reviewer.locator("#dispute-queue").count() == 0

    page.reload()
    assert score(page) == pytest.approx(before, abs=0.02)
    assert "found valid by reviewer rev-1" in page.locator("#disputes").inner_text()
    assert "review queue" in page.locator("#access-table").inner_text()


def test_the_subject_sees_a_positive_path_to_the_next_tier(site: Site, new_page: Any) -> None:
    """Carol (one paid bill) asks what it takes to reach "good": new events first, with how
    many and how often (tests/test_whatif_paths.py proves such events reach the tier)."""
    page = new_page()
    sign_in(page, site, site.keys["carol"])
    page.wait_for_url(re.compile(r"/portal/subjects/carol$"))
    before = score(page)
    page.get_by_label("What it takes to reach").select_option(value="sesame:600-649")
    page.get_by_role("button", name="Show").click()
    takes = page.locator("#whatif-takes").inner_text()
    found = re.search(r"by new events: (?P<label>[^,:]+)[^:]*: (?P<count>\d+) times, "
                      r"one (?:a day|every (?P<days>\d+) days)[^,]*, from "
                      r"(?P<first>\d{4}-\d{2}-\d{2}) to (?P<last>\d{4}-\d{2}-\d{2})", takes)
    assert found, takes
    assert int(found["count"]) >= 2
    assert found["first"] <= found["last"]
    assert takes.index("by new events") < takes.index("by decay and expiry alone"), takes
    assert score(page) == pytest.approx(before, abs=0.02)  # asking changed nothing
    shoot(page, "subject-positive-path")


def _option(page: Page, select: str, text: str) -> str:
    """The label of the first option of ``select`` containing ``text``."""
    label: str = page.locator(f"{select} option", has_text=text).first.inner_text()
    return label


def test_operator_publishes_and_sees_a_refused_policys_linter_message(site: Site,
                                                                      new_page: Any) -> None:
    page = new_page()
    sign_in(page, site, site.keys["operator"])
    page.wait_for_url(re.compile(r"/portal/operator$"))
    shoot(page, "operator-first-visit")  # statistics still being computed, unless earlier
    versions = page.locator("#policy-table tbody tr").count()
    refused = (ROOT / "tests" / "policies" / "refused" / "travel_ban_for_a_ticket.yaml")
    put_in_force(site.ledger, refused.parent / "register.yaml")  # declares its ticket
    page.get_by_label("Policy (YAML)").fill(refused.read_text(encoding="utf-8"))
    page.get_by_role("button", name="Publish").click()
    alert = page.get_by_role("alert")
    assert "nothing was published" in alert.inner_text()
    assert "[proportionality] safeguard 3" in alert.inner_text()
    shoot(page, "operator-refused")
    assert page.locator("#policy-table tbody tr").count() == versions

    put_in_force(site.ledger)  # the shipped register again: two operators bring it back
    page.get_by_label("Policy (YAML)").fill(SESAME.read_text(encoding="utf-8").replace(
        "title: Sesame-style", "title: Revised Sesame-style"))
    page.get_by_role("button", name="Publish").click()
    page.wait_for_url(re.compile(r"done=published"))
    assert page.locator("#policy-table tbody tr").count() == versions + 1
    for _ in range(100):
        if page.locator("#hist-sesame").count():
            break
        page.wait_for_timeout(200)
        page.reload()
    assert "fewer than 10" in page.locator("#tiers-sesame").inner_text()
    shoot(page, "operator")


def test_a_subject_cannot_open_another_subjects_page(site: Site, new_page: Any) -> None:
    page = new_page()
    sign_in(page, site, site.keys["carol"])
    page.wait_for_url(re.compile(r"/portal/subjects/carol$"))
    response = page.goto(f"{site.base}/portal/subjects/bob")
    assert response is not None and response.status == 403
    assert "only their own data" in page.get_by_role("alert").inner_text()
    assert page.locator("[data-testid=score-sesame]").count() == 0


def test_sign_in_with_a_bad_key_fails_clearly(site: Site, new_page: Any) -> None:
    page = new_page()
    sign_in(page, site, "tl_not-a-real-key")
    alert = page.get_by_role("alert")
    assert "api_key: the API key is malformed" in alert.inner_text()
    assert page.get_by_label("API key").get_attribute("aria-invalid") == "true"
    shoot(page, "sign-in-refused")
    response = page.goto(f"{site.base}/portal/subjects/bob")
    assert response is not None and "/portal/sign-in" in page.url


def test_a_forged_csrf_token_is_refused_and_changes_nothing(site: Site, new_page: Any) -> None:
    page = new_page()
    sign_in(page, site, site.keys["carol"])
    page.wait_for_url(re.compile(r"/portal/subjects/carol$"))
    head = site.ledger.head()
    form = page.locator("form[action$='/disputes']")
    form.locator("input[name=csrf_token]").evaluate("e => e.value = 'forged'")
    form.get_by_label("Event", exact=True).select_option(index=1)
    form.get_by_label("Why it is wrong").fill("forged")
    form.get_by_role("button", name="Dispute this event").click()
    assert "csrf_token: missing or wrong" in page.get_by_role("alert").inner_text()
    assert site.ledger.head() == head


def test_a_reviewer_sees_what_a_review_rests_on_and_decides_it(site: Site,
                                                               new_page: Any) -> None:
    """GDPR Art. 22(3): the case page shows the decision under review and its facts."""
    page = new_page()
    sign_in(page, site, site.keys["dave"])
    page.wait_for_url(re.compile(r"/portal/subjects/dave$"))
    chart = page.locator("svg#chart-sesame")
    assert chart.locator("g.policy-mark title").text_content() == \
        "policy sesame in force from 2025-01-01"
    assert chart.locator("rect.no-policy").count() == 1
    shoot(page, "subject-before-policy")
    page.get_by_label("Decision", exact=True).select_option(
        label=_option(page, "#r-measure", "pay-later credit"))
    page.get_by_label("What you want the reviewer to know (optional)").fill(
        "The overdue bill was a billing error; I have paid everything since.")
    page.get_by_role("button", name="Ask for human review").click()
    page.wait_for_url(re.compile(r"done=review"))
    assert "Your request for human review was recorded" in \
        page.get_by_role("status").first.inner_text()
    shoot(page, "subject-review-requested")
    before = score(page)

    reviewer = new_page()
    sign_in(reviewer, site, site.keys["reviewer"])
    reviewer.wait_for_url(re.compile(r"/portal/reviewer$"))
    queue = reviewer.locator("#review-queue")
    assert "dave" in queue.inner_text()
    shoot(reviewer, "reviewer-queue-review")
    queue.get_by_role("link", name=re.compile("Review")).first.click()
    reviewer.wait_for_url(re.compile(r"/portal/reviewer/reviews/\d+$"))
    facts = reviewer.locator("main").inner_text()
    assert "The overdue bill was a billing error" in facts
    assert re.search(r"due \d{4}-\d\d-\d\d \(30 d 0 h left\)", facts)
    # The score and tier the decision rested on, and the measure with its own reasons.
    assert float(reviewer.get_by_test_id("decided-score-sesame").inner_text()) == \
        pytest.approx(before, abs=0.02)
    assert reviewer.get_by_test_id("decided-tier-sesame").inner_text().startswith("tier ")
    reviewed = reviewer.locator("#decided-measures tr.under-review")
    assert "pay-later credit" in reviewed.inner_text()
    assert "negative_records_5y" in reviewed.inner_text()
    # The events driving it: the overdue bill and the late repayment, with their points.
    involved = reviewer.locator("#involved-table").inner_text()
    assert "bill overdue" in involved and "repayment late" in involved
    assert "named in the reasons" in involved
    assert reviewer.locator("#subject-disputes-h").inner_text() == "dave's disputes (0)"
    shoot(reviewer, "review-case")

    reviewer.get_by_label("Confirm — the decision stands").check()
    reviewer.get_by_label("Your reason (the subject sees it)").fill(
        "The creditor confirms the bill was 40 days overdue.")
    reviewer.get_by_role("button", name="Record the decision").click()
    reviewer.wait_for_url(re.compile(r"done=review"))
    page.reload()
    assert "The creditor confirms the bill was 40 days overdue" in \
        page.locator("#reviews").inner_text()


def test_the_subject_page_fits_a_phone_in_a_few_screens(site: Site, browser: Browser) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        sign_in(page, site, site.keys["bob"])
        page.wait_for_url(re.compile(r"/portal/subjects/bob$"))
        assert page.locator("#contributions-table tbody tr").count() >= 15
        height = page.evaluate("document.documentElement.scrollHeight")
        assert height <= SCREENS * PHONE["height"], \
            f"the subject's page is {height} px tall on a phone"
        # Folded on a phone, one tap away.
        table = page.locator("#contributions-table")
        assert not table.is_visible()
        page.get_by_text(re.compile(r"^All \d+ events")).click()
        assert table.is_visible()
    finally:
        context.close()


def test_the_site_root_and_icon_answer_without_sign_in(site: Site, new_page: Any) -> None:
    page = new_page()
    response = page.goto(f"{site.base}/")
    assert response is not None and response.ok
    assert re.search(r"/portal/sign-in(\?next=/portal/)?$", page.url), page.url
    icon = page.goto(f"{site.base}/favicon.ico")
    assert icon is not None and icon.status == 200
    assert icon.headers["content-type"] == "image/svg+xml"


def test_other_pages_are_photographed(site: Site, new_page: Any) -> None:
    """The landing page of a role without pages of its own, and a refusal."""
    page = new_page()
    sign_in(page, site, site.keys["source"])
    page.wait_for_url(re.compile(r"/portal/home$"))
    shoot(page, "home")
    response = page.goto(f"{site.base}/portal/operator")
    assert response is not None and response.status == 403
    shoot(page, "not-allowed")
