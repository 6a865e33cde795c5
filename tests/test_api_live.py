"""The real server: uvicorn on 127.0.0.1 (a free port), called over HTTP with httpx.

The core flow on SQLite and PostgreSQL; and `make run` started as a new user would,
with a fresh data folder, then called over HTTP with the keys it prints.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.clock import FixedClock
from tests.governance import put_in_force
from tests.test_api import ROOT, event
from trustledger.api import Settings, create_app
from trustledger.principals import Role, ServiceLedger, add_principal
from trustledger.scoring import publish_policy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free loopback port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def seed(url: str, clock: FixedClock | None = None) -> dict[str, str]:
    """The Sesame policy, a source, a relying party, a subject and a reviewer; their keys.

    Recorded at ``clock`` when given (a test whose server shares that clock), else now.
    """
    with ServiceLedger.open(url, clock=clock) as ledger:
        put_in_force(ledger)
        publish_policy(ledger, ROOT / "policies" / "sesame.yaml")
        return {
            "operator": add_principal(ledger, "op", Role.OPERATOR).key,
            "source": add_principal(ledger, "bank-a", Role.SOURCE,
                                    accreditations=("bill_paid", "repayment_on_time"),
                                    domains=("finance",)).key,
            "party": add_principal(ledger, "rentals", Role.RELYING_PARTY,
                                   accreditations=("rental_deposit",)).key,
            "alice": add_principal(ledger, "alice", Role.SUBJECT, subject="alice").key,
            "reviewer": add_principal(ledger, "rev", Role.REVIEWER).key,
        }


def test_core_flow_over_http(database_url: str, clock: FixedClock) -> None:
    keys = seed(database_url, clock)
    auth = {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}
    with serving(create_app(Settings(database_url=database_url, clock=clock))) as base, \
            httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        r = http.post("/v1/events/batch", headers=auth["source"], json={"events": [
            event(i, "alice", "repayment_on_time", i, amount=100.0 * i) for i in range(1, 6)]})
        assert r.status_code == 200 and r.json()["appended"] == 5
        ask = {"subject": "alice", "purpose": "rental_deposit"}
        assert http.post("/v1/decisions", headers=auth["party"], json=ask).status_code == 403
        r = http.post("/v1/subjects/alice/consents", headers=auth["alice"],
                      json={"scope": "decision", "party": "rentals",
                            "purpose": "rental_deposit"})
        assert r.status_code == 201
        consent = r.json()["seq"]
        http.post("/v1/subjects/alice/consents", headers=auth["alice"],
                  json={"scope": "scorecard", "scorecard": "sesame"})
        r = http.post("/v1/decisions", headers=auth["party"], json=ask)
        assert r.status_code == 200, r.text
        assert r.json()["scorecards"]["sesame"]["score"] > 550
        reads = http.get("/v1/subjects/alice/access-log", headers=auth["alice"]).json()
        assert [x["seq"] for x in reads["reads"]] == [r.json()["access_seq"]]
        http.delete(f"/v1/subjects/alice/consents/{consent}", headers=auth["alice"])
        assert http.post("/v1/decisions", headers=auth["party"], json=ask).status_code == 403


def test_limits_rate_size_and_timeouts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    keys = seed(url)
    settings = Settings(database_url=url, rate_limit=5.0, burst_seconds=1.0,
                        max_body_bytes=2_000, body_timeout=0.5)
    party = {"Authorization": f"Bearer {keys['party']}"}
    other = {"Authorization": f"Bearer {keys['alice']}"}
    with serving(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as http:
        statuses = [http.get("/v1/whoami", headers=party).status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5 and statuses[-1] == 429
        limited = http.get("/v1/whoami", headers=party)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert "slow down" in limited.json()["detail"]
        # Another principal is not slowed down by the first one.
        assert http.get("/v1/whoami", headers=other).status_code == 200
        big = http.post("/v1/decisions", headers={**other, "Content-Type": "application/json"},
                        content=b"{" + b" " * 5_000 + b"}")
        assert big.status_code == 413 and "at most 2,000" in big.json()["detail"]

        def chunks() -> Iterator[bytes]:
            yield b"{" + b" " * 1_000
            yield b" " * 1_500 + b"}"

        streamed = http.post("/v1/decisions", headers={**other, "Content-Type":
                                                       "application/json"}, content=chunks())
        assert streamed.status_code == 413
    # A client that never finishes its body gets 408 and the server goes on.
    with serving(create_app(settings)) as base2:
        host, port = base2.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as raw:
            # With a valid key: a request without one is refused before its body is read.
            raw.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                        b"Authorization: Bearer " + keys["party"].encode() + b"\r\n"
                        b"Content-Type: application/json\r\n\r\n{")
            raw.settimeout(10)
            answer = raw.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408")
        assert httpx.get(base2 + "/healthz").status_code == 200


def test_make_run_as_a_new_user_would(tmp_path: Path) -> None:
    """`make run` in a fresh data folder: it sets up, serves, prints the docs URL and keys."""
    port = free_port()
    env = {**os.environ, "TRUSTLEDGER_DATA": str(tmp_path / "data"),
           "TRUSTLEDGER_DEMO_SUBJECTS": "200", "TRUSTLEDGER_DEMO_EVENTS": "4000"}
    env.pop("TRUSTLEDGER_DATABASE_URL", None)
    proc = subprocess.Popen(["make", "-s", "-C", str(ROOT), "run", f"PORT={port}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 240
        while not any(line.startswith("try a decision") for line in lines):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, f"make run ended: {''.join(lines)}"
            lines.append(line)
            assert time.monotonic() < deadline, "".join(lines)
        text = "".join(lines)
        assert f"API docs: http://127.0.0.1:{port}/docs" in text
        assert f"portal (sign in with a key): http://127.0.0.1:{port}/portal" in text
        keys = dict(re.findall(r"^\s+(operator|source|relying party|subject|reviewer)\s+\S+\s+"
                               r"(tl_[A-Za-z0-9_\-]{43})", text, re.MULTILINE))
        assert set(keys) == {"operator", "source", "relying party", "subject", "reviewer"}
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert httpx.get(base + "/docs").status_code == 200
        sign_in = httpx.get(base + "/portal", follow_redirects=True)
        assert sign_in.status_code == 200 and 'name="api_key"' in sign_in.text, sign_in.text
        r = httpx.post(base + "/v1/decisions", json={"subject": "subject-0000000",
                                                     "purpose": "rental_deposit"},
                       headers={"Authorization": f"Bearer {keys['relying party']}"})
        assert r.status_code == 200, r.text
        assert set(r.json()["measures"]) == {"deposit_free_rental", "priority_service"}
        me = httpx.get(base + "/v1/whoami",
                       headers={"Authorization": f"Bearer {keys['subject']}"}).json()
        assert me["subject"] == "subject-0000000"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--database-url", "mysql://x@localhost/db"], {}, "only sqlite:/// and postgresql"),
    ([], {"TRUSTLEDGER_RATE_LIMIT": "fast"}, "TRUSTLEDGER_RATE_LIMIT='fast'"),
    ([], {"TRUSTLEDGER_MAX_IN_FLIGHT": "0"}, "must be greater than 0"),
    ([], {"TRUSTLEDGER_GC_YOUNG_THRESHOLD": "0"},
     "TRUSTLEDGER_GC_YOUNG_THRESHOLD: must be greater than 0"),
    # The small-cell safeguard may be raised, never switched off by a setting.
    ([], {"TRUSTLEDGER_SUPPRESS_BELOW": "1"}, "TRUSTLEDGER_SUPPRESS_BELOW: must be at least 10"),
])
def test_serve_refuses_bad_settings_before_starting(tmp_path: Path, args: list[str],
                                                     env: dict[str, str], message: str) -> None:
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "trustledger"), "serve", "--port", str(free_port()),
         *args], env={**os.environ, "TRUSTLEDGER_DATA": str(tmp_path), **env},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
