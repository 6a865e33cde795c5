"""Issue 21, transport hardening: authentication before bodies, failed-authentication limits,
bounded policy documents, webhook addresses that hide a private IPv4 address.

The server tests run the real app on uvicorn on 127.0.0.1 (and a second loopback
address, 127.0.0.2 or 127.0.0.3, as a client that floods) and speak raw HTTP where
the point is what the server does before a body arrives: the request's headers
announce a body that is never sent, so any answer at all shows the server did not
wait for (or read) it.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from tests.clock import START, FixedClock
from tests.governance import SHIPPED, put_in_force
from tests.policies.support import shipped_register
from tests.test_api_live import serving
from trustledger.api import Settings, create_app
from trustledger.api.limits import FailureLimiter, client_of
from trustledger.api.problems import RateLimitedError
from trustledger.cascades.egress import Egress, EgressRefusedError, embedded_ipv4, kind_of
from trustledger.cli import app as cli
from trustledger.errors import ConfigError, InputError, PolicyError
from trustledger.policy import parse_policy
from trustledger.policy.loader import MAX_DEPTH, MAX_NODES, MAX_POLICY_BYTES
from trustledger.principals import Role, ServiceLedger, add_principal, revoke_principal
from trustledger.scoring import publish_policy

ROOT = Path(__file__).resolve().parent.parent
SESAME = ROOT / "policies" / "sesame.yaml"
PROBLEM = "application/problem+json"
UNKNOWN = "tl_" + "A" * 43
"""A well-formed key nobody holds."""


@dataclass
class Live:
    """A served ledger: its URL, base URL and the keys of its principals."""

    url: str
    base: str
    keys: dict[str, str]


def seeded(url: str) -> dict[str, str]:
    """The Sesame policy and an operator, a source, a subject and a revoked key; their keys."""
    with ServiceLedger.open(url, clock=FixedClock(START)) as ledger:
        put_in_force(ledger)
        publish_policy(ledger, SESAME)
        keys = {
            "operator": add_principal(ledger, "op", Role.OPERATOR).key,
            "source": add_principal(ledger, "bank-a", Role.SOURCE,
                                    accreditations=("bill_paid",), domains=("finance",)).key,
            "alice": add_principal(ledger, "alice", Role.SUBJECT, subject="alice").key,
        }
        gone = add_principal(ledger, "gone", Role.SOURCE, accreditations=("bill_paid",),
                             domains=("finance",))
        revoke_principal(ledger, gone.principal.id)
        keys["revoked"] = gone.key
    return keys


def live_server(tmp_path: Path, **settings: object) -> Iterator[Live]:
    """Seed a SQLite ledger and serve it with ``settings``."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    keys = seeded(url)
    app = create_app(Settings(database_url=url, clock=FixedClock(START), body_timeout=5.0,
                              **settings))  # type: ignore[arg-type]
    with serving(app) as base:
        yield Live(url, base, keys)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server whose failed-authentication limit is out of the way."""
    yield from live_server(tmp_path_factory.mktemp("transport"), auth_failure_burst=100_000)


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Live]:
    """A server allowing 5 failed authentications per address, earned back very slowly."""
    yield from live_server(tmp_path, auth_failure_burst=5, auth_failure_rate=0.001)


@dataclass
class Answer:
    """A raw HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, object]:
        """The problem+json body."""
        assert self.headers.get("content-type") == PROBLEM, self.headers
        found: dict[str, object] = orjson.loads(self.body)
        return found


def announce(base: str, method: str, path: str, headers: dict[str, str], length: int, *,
             source: str = "127.0.0.1") -> Answer:
    """Send a request's headers announcing ``length`` body bytes, send no body, read the answer.

    Bounded: the socket gives up after 30 s (a server waiting for the body answers 408
    after its 5 s body timeout; one that reads no body answers at once).
    """
    parts = urlsplit(base)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}",
             f"Content-Length: {length}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((parts.hostname, parts.port), timeout=30,
                                  source_address=(source, 0)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        for _ in range(1_000):
            if b"\r\n\r\n" in data:
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        found = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            found[name.strip().lower()] = value.strip()
        size = int(found.get("content-length", "0"))
        for _ in range(1_000):
            if len(body) >= size:
                break
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return Answer(int(status_line.split()[1]), found, body)


def bearer(key: str) -> dict[str, str]:
    """The ``Authorization`` header for ``key``."""
    return {"Authorization": f"Bearer {key}"}


# -- 1. authentication before the body ----------------------------------------------------

@pytest.mark.parametrize(("headers", "needle"), [
    ({}, "no API key"),
    (bearer(UNKNOWN), "not known"),
    ({"Authorization": "Bearer nope"}, "malformed"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "no API key"),
], ids=["no key", "unknown key", "malformed key", "other scheme"])
@pytest.mark.parametrize(("path", "length"), [
    ("/v1/events/batch", 16_000_000),    # within the batch limit: the body would be read
    ("/v1/events/batch", 17 * 2 ** 20),  # beyond it: still 401, not 413
    ("/v1/events", 60_000),
])
def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(
        live: Live, headers: dict[str, str], needle: str, path: str, length: int) -> None:
    answer = announce(live.base, "POST", path, headers, length)
    assert answer.status == 401, answer
    problem = answer.problem()
    assert needle in str(problem["detail"]) and problem["instance"] == path
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_revoked_key_is_refused_before_the_body_is_read(live: Live) -> None:
    answer = announce(live.base, "POST", "/v1/events/batch", bearer(live.keys["revoked"]),
                      16_000_000)
    assert answer.status == 401 and "revoked" in str(answer.problem()["detail"])


def test_with_a_valid_key_the_body_limit_still_applies(live: Live) -> None:
    answer = announce(live.base, "POST", "/v1/events/batch", bearer(live.keys["source"]),
                      17 * 2 ** 20)
    assert answer.status == 413 and "at most 16,777,216" in str(answer.problem()["detail"])
    answer = announce(live.base, "POST", "/v1/events", bearer(live.keys["source"]), 65_537)
    assert answer.status == 413


def test_a_valid_key_still_sends_its_body(live: Live) -> None:
    with httpx.Client(base_url=live.base, timeout=30) as http:
        r = http.post("/v1/events", headers=bearer(live.keys["source"]), json={
            "source_event_id": "t-1", "subject": "alice", "type": "bill_paid",
            "occurred_at": "2026-11-01T00:00:00Z"})
    assert r.status_code == 201, r.text


def test_an_unknown_path_is_still_not_found_and_its_body_not_read(live: Live) -> None:
    answer = announce(live.base, "POST", "/v1/nothing", {}, 60_000)
    assert answer.status == 404 and "no endpoint" in str(answer.problem()["detail"])


def test_a_portal_form_without_a_session_is_not_read(live: Live) -> None:
    answer = announce(live.base, "POST", "/portal/subjects/alice/disputes", {}, 60_000)
    assert answer.status == 303
    assert answer.headers["location"].startswith("/portal/sign-in")


# -- 2. failed authentication, limited per client address -----------------------------------

def test_a_flood_of_unknown_keys_from_one_address_is_limited_and_valid_keys_still_work(
        strict: Live) -> None:
    flooding = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=strict.base, timeout=30, transport=flooding) as flood, \
            httpx.Client(base_url=strict.base, timeout=30) as other:
        # A key that worked from the flooding address before the flood.
        assert flood.get("/v1/whoami", headers=bearer(strict.keys["alice"])).status_code == 200
        for i in range(5):
            r = flood.post("/v1/events", headers=bearer(f"tl_{secrets.token_urlsafe(32)}"),
                           json={"n": i})
            assert r.status_code == 401, r.text
        for i in range(3):  # whatever X-Forwarded-For says: only proxies it names are believed
            r = flood.post("/v1/events", headers={
                **bearer(f"tl_{secrets.token_urlsafe(32)}"),
                "X-Forwarded-For": f"203.0.113.{i}"}, json={})
            assert r.status_code == 429, r.text
            assert r.headers["content-type"] == PROBLEM
            problem = r.json()
            assert problem["type"].endswith("/rate-limited") and "127.0.0.2" in problem["detail"]
            assert int(r.headers["retry-after"]) >= 1
        # Refused before the body too.
        answer = announce(strict.base, "POST", "/v1/events/batch", bearer(UNKNOWN),
                          16_000_000, source="127.0.0.2")
        assert answer.status == 429 and answer.headers["retry-after"]
        # Another address is not limited; a key already known valid works from any address.
        assert other.get("/v1/whoami", headers=bearer(strict.keys["source"])).status_code == 200
        assert flood.get("/v1/whoami", headers=bearer(strict.keys["alice"])).status_code == 200
        assert other.get("/v1/whoami", headers=bearer(UNKNOWN)).status_code == 401
        # Signing in to the portal from the flooding address is refused as well.
        r = flood.post("/portal/sign-in", data={"api_key": UNKNOWN})
        assert r.status_code == 429 and r.headers["retry-after"]


def test_failed_portal_sign_ins_count_against_the_address(strict: Live) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(base_url=strict.base, timeout=30, transport=transport) as browser:
        form = browser.get("/portal/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        for _ in range(5):
            r = browser.post("/portal/sign-in",
                             data={"csrf_token": token.group(1), "api_key": UNKNOWN})
            assert r.status_code == 401 and "not known" in r.text
        r = browser.post("/portal/sign-in",
                         data={"csrf_token": token.group(1), "api_key": strict.keys["operator"]})
        assert r.status_code == 429
        assert browser.get("/v1/whoami", headers=bearer(UNKNOWN)).status_code == 429


class Ticks:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_failure_limiter_refills_and_keeps_few_addresses() -> None:
    ticks = Ticks()
    limiter = FailureLimiter(rate=0.5, burst=3, max_clients=2, clock=ticks)
    for _ in range(3):
        limiter.check("10.0.0.1")
        limiter.fail("10.0.0.1")
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("10.0.0.1")
    assert refused.value.retry_after == 2 and "10.0.0.1" in str(refused.value)
    ticks.now += 2.0
    limiter.check("10.0.0.1")  # one failure earned back
    limiter.fail("10.0.0.1")
    with pytest.raises(RateLimitedError):
        limiter.check("10.0.0.1")
    for address in ("10.0.0.2", "10.0.0.3", "10.0.0.4"):
        limiter.fail(address)
        assert len(limiter) <= 2
    limiter.check("10.0.0.1")  # forgotten: the least recently failing address


def test_the_client_address_is_the_peer_and_ipv6_counts_by_64() -> None:
    assert client_of({"client": ("2001:db8:1:2:3:4:5:6", 5000)}) == "2001:db8:1:2::/64"
    assert client_of({"client": ("::ffff:10.1.2.3", 5000)}) == "10.1.2.3"
    assert client_of({"client": ("10.1.2.3", 5000),
                      "headers": [(b"x-forwarded-for", b"1.2.3.4")]}) == "10.1.2.3"
    assert client_of({"client": None}) == "(no address)"


@pytest.mark.parametrize("name", ["AUTH_FAILURE_BURST", "AUTH_FAILURE_RATE",
                                  "AUTH_FAILURE_CLIENTS"])
def test_the_failure_limit_settings_are_checked(name: str) -> None:
    with pytest.raises(ConfigError, match=f"TRUSTLEDGER_{name}"):
        Settings.from_env({f"TRUSTLEDGER_{name}": "0"})


# -- 3. bounded policy documents ---------------------------------------------------------------

GOOD = SESAME.read_text(encoding="utf-8")


def deep_block(levels: int) -> str:
    """A block mapping nested ``levels`` deep under the key ``deep`` (from line 1)."""
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(levels)) + f"{'  ' * levels}v: 1\n"


CASES = {
    "flow nesting": ("policy: sesame\nextra: " + "[" * 5000 + "]" * 5000 + "\n",
                     "policy-too-deep", 2, f"deeper than {MAX_DEPTH} levels"),
    "block nesting": ("policy: sesame\n" + deep_block(200), "policy-too-deep", 2 + MAX_DEPTH - 1,
                      f"deeper than {MAX_DEPTH} levels"),
    "size": ("policy: sesame\nnote: " + "x" * MAX_POLICY_BYTES + "\n", "policy-too-large", 2,
             f"more than the {MAX_POLICY_BYTES:,} a policy may have"),
    "alias bomb": ("a: &a [" + ",".join(["x"] * 20) + "]\n"
                   + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join(
                       [f"*{chr(97 + i)}"] * 20) + "]\n" for i in range(4)),
                   "policy-too-large", 5, f"more than {MAX_NODES:,} nodes"),
    "recursive alias": ("policy: sesame\nloop: &x [1, *x]\n", "policy-alias", 2, "recursive"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_oversized_policy_is_refused_naming_file_line_and_limit(case: str) -> None:
    text, rule, line, needle = CASES[case]
    with pytest.raises(PolicyError) as refused:
        parse_policy(text, "big.yaml", register=shipped_register())
    [problem] = refused.value.problems
    assert (problem.rule, problem.location.file, problem.location.line) == (rule, "big.yaml",
                                                                              line)
    assert needle in problem.message, problem.message


def test_the_bounds_leave_the_example_policies_alone() -> None:
    for name in ("sesame", "rongcheng", "reputation"):
        text = (ROOT / "policies" / f"{name}.yaml").read_text(encoding="utf-8")
        assert parse_policy(text, name, register=shipped_register()).name


@pytest.mark.parametrize("command", ["check", "publish"])
def test_policy_check_and_publish_refuse_a_deep_policy_without_a_traceback(
        tmp_path: Path, command: str) -> None:
    file = tmp_path / "deep.yaml"
    file.write_text(GOOD + "extra: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    shutil.copy(SHIPPED, tmp_path / "register.yaml")  # the register found next to a policy
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with ServiceLedger.open(url, clock=FixedClock(START)) as ledger:
        put_in_force(ledger)  # publish compiles against the ledger's register
        before = ledger.position()
    args = ["policy", command, str(file)] + (["--database-url", url] if command == "publish"
                                             else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = GOOD.count("\n") + 1
    assert f"{file}:{lines}:" in result.output and "[policy-too-deep]" in result.output
    assert "Traceback" not in result.output
    if command == "publish":
        with ServiceLedger.open(url, clock=FixedClock(START)) as ledger:
            assert ledger.position() == before


def test_the_policy_endpoint_refuses_a_deep_policy_with_422(live: Live) -> None:
    with httpx.Client(base_url=live.base, timeout=60) as http:
        before = http.get("/v1/policies", headers=bearer(live.keys["operator"])).json()
        r = http.post("/v1/policies", headers=bearer(live.keys["operator"]),
                      json={"source": "policy: x\nextra: " + "{a: " * 5000 + "1" + "}" * 5000})
        assert r.status_code == 422, r.text
        [item] = r.json()["errors"]
        assert item["rule"] == "policy-too-deep" and item["location"].startswith("policy:2:")
        assert str(MAX_DEPTH) in item["reason"]
        assert http.get("/v1/policies", headers=bearer(live.keys["operator"])).json() == before


# -- 4. webhook addresses hiding a private IPv4 address -------------------------------------

@pytest.mark.parametrize(("address", "form", "inner"), [
    ("2002:7f00:1::1", "6to4", "127.0.0.1"),
    ("2002:a00:1::", "6to4", "10.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4", "169.254.169.254"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo", "127.0.0.1"),
    ("2001:0:a00:1::1", "Teredo", "10.0.0.1"),
    ("64:ff9b::7f00:1", "NAT64", "127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64", "169.254.169.254"),
    ("64:ff9b:1::c0a8:1", "NAT64", "192.168.0.1"),
    ("::127.0.0.1", "IPv4-compatible", "127.0.0.1"),
    ("::ffff:0:a00:1", "IPv4-translated", "10.0.0.1"),
])
def test_ipv6_forms_of_private_ipv4_addresses_are_refused(
        address: str, form: str, inner: str) -> None:
    kind = kind_of(ipaddress.ip_address(address))
    assert kind is not None and kind.startswith(f"{form} address of {inner}, a "), kind
    with pytest.raises(InputError, match=rf"^url: .*{re.escape(inner)}.* address; webhooks"):
        Egress().check_url(f"http://[{address}]:8080/hook")
    with pytest.raises(EgressRefusedError, match=re.escape(inner)):
        Egress().connect(address, 8080, timeout=1.0)


def test_ipv4_mapped_private_addresses_stay_refused() -> None:
    with pytest.raises(InputError, match="private"):
        Egress().check_url("http://[::ffff:10.0.0.1]/hook")


def test_a_6to4_address_of_a_public_ipv4_address_is_allowed() -> None:
    public = ipaddress.IPv6Address("2002:808:808::1")
    assert embedded_ipv4(public) == [("6to4", ipaddress.IPv4Address("8.8.8.8"))]
    assert kind_of(public) is None
    Egress().check_url("http://[2002:808:808::1]/hook")
    assert kind_of(ipaddress.ip_address("64:ff9b:1::808:808")) is not None  # local-use NAT64


def test_the_allow_list_still_admits_an_allowed_6to4_network() -> None:
    egress = Egress.parse("2002:7f00::/24")
    egress.check_url("http://[2002:7f00:1::1]/hook")
