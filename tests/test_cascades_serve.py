"""``trustledger serve --cascades``: the webhook worker runs in the server, started and stopped
with it. The real command in a subprocess, uvicorn on 127.0.0.1, a real receiver on loopback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from tests.test_api import ROOT, event
from tests.test_api_live import free_port, seed
from tests.test_cascades_delivery import Receiver
from trustledger.cascades import ALLOW_ENV

TRUSTLEDGER = str(ROOT / ".venv" / "bin" / "trustledger")


def wait_until_up(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def test_serve_with_cascades_delivers_and_stops_with_the_server(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    keys = seed(url)
    auth = {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    receiver = Receiver()
    env = {**os.environ, "TRUSTLEDGER_DATA": str(tmp_path), ALLOW_ENV: "127.0.0.1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([TRUSTLEDGER, "serve", "--cascades", "--port", str(port),
                                 "--database-url", url], env=env, stdout=out, stderr=out)
    try:
        wait_until_up(base, proc, log)
        with httpx.Client(base_url=base, timeout=30) as http:
            r = http.post("/v1/subjects/alice/consents", headers=auth["alice"],
                          json={"scope": "decision", "party": "rentals",
                                "purpose": "rental_deposit"})
            assert r.status_code == 201, r.text
            r = http.post("/v1/subscriptions", headers=auth["party"], json={
                "subject": "alice", "purpose": "rental_deposit", "url": receiver.url})
            assert r.status_code == 201, r.text
            secret = r.json()["secret"]
            # alice has no events: no decision; her first events make one.
            r = http.post("/v1/events/batch", headers=auth["source"], json={"events": [
                event(i, "alice", "repayment_on_time", i, amount=100.0 * i)
                for i in range(1, 4)]})
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        while not receiver.requests:
            assert time.monotonic() < deadline, "no notification from serve --cascades"
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        got = receiver.requests[0]
        payload = Webhook(secret).verify(got["body"], got["headers"])
        assert payload["type"] == "decision.changed"
        assert payload["data"]["subject"] == "alice"
        assert payload["data"]["old"]["status"] == "no_decision"
        assert payload["data"]["new"]["status"] == "decided"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        receiver.close()
    # A graceful shutdown (uvicorn re-raises the SIGTERM it handled once done).
    assert code in (0, -signal.SIGTERM), log.read_text()
    text = log.read_text()
    assert "background worker started" in text and "background worker stopped" in text
    assert "cascades: the webhook worker runs in the background" in text


def test_serve_with_cascades_refuses_a_bad_allow_list_before_starting(tmp_path: Path) -> None:
    result = subprocess.run(
        [TRUSTLEDGER, "serve", "--cascades", "--port", str(free_port())],
        env={**os.environ, "TRUSTLEDGER_DATA": str(tmp_path), ALLOW_ENV: "10.0.0.0/8, ??"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"{ALLOW_ENV}: '??' is neither a network" in result.stderr
