"""``trustledger serve`` keeps people's text and logs apart: banner on stdout, JSON on stderr.

The real command in a subprocess, on a free 127.0.0.1 port, a fresh data folder and a tiny
demo; one request, then the server is stopped by its pid and both streams are read back.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.test_api import ROOT
from tests.test_api_live import free_port

TRUSTLEDGER = str(ROOT / ".venv" / "bin" / "trustledger")


def _json_object(line: str) -> dict[str, object] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def test_banner_on_stdout_and_only_json_log_lines_on_stderr(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "TRUSTLEDGER_DATA": str(tmp_path / "data"),
           "TRUSTLEDGER_DEMO_SUBJECTS": "200", "TRUSTLEDGER_DEMO_EVENTS": "4000"}
    env.pop("TRUSTLEDGER_DATABASE_URL", None)
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen([TRUSTLEDGER, "serve", "--demo", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, err_path.read_text()
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.2)
        # The banner is flushed before uvicorn starts, so it is complete once it answers.
        banner = out_path.read_text()
        party = re.search(r"^\s+relying party\s+\S+\s+(tl_[A-Za-z0-9_\-]{43})", banner,
                          re.MULTILINE)
        assert party is not None, banner
        r = httpx.get(base + "/v1/whoami", headers={"Authorization": f"Bearer {party[1]}"},
                      timeout=30)
        assert r.status_code == 200, r.text
        request_id = r.headers["x-request-id"]
        # The demo's register was put in force by two operators; its source reads it.
        keys = dict(re.findall(r"^\s+(?:operator|source)\s+(\S+)\s+(tl_[A-Za-z0-9_\-]{43})",
                               banner, re.MULTILINE))
        assert {"demo-operator", "demo-approver", "bank-a"} <= set(keys), banner
        register = httpx.get(base + "/v1/register", timeout=30,
                             headers={"Authorization": f"Bearer {keys['bank-a']}"}).json()
        assert (register["name"], register["proposed_by"], register["approved_by"]) == (
            "shipped", "demo-operator", "demo-approver")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=60)
    stdout = out_path.read_text().splitlines()
    stderr = err_path.read_text().splitlines()

    assert f"API docs: {base}/docs" in stdout
    assert f"portal (sign in with a key): {base}/portal" in stdout
    assert "try a decision:" in stdout
    assert any(line.startswith("demo: ") for line in stdout)  # the set-up's progress too
    assert [line for line in stdout if line.lstrip().startswith("{")
            or _json_object(line) is not None] == []

    assert stderr, "no log lines on stderr"
    entries = []
    for line in stderr:
        entry = _json_object(line)
        assert entry is not None, f"not a JSON log line on stderr: {line!r}"
        assert {"ts", "level", "logger", "message"} <= set(entry), line
        entries.append(entry)
    assert any(e["logger"] == "uvicorn.error" and "Uvicorn running on" in str(e["message"])
               for e in entries)
    access = [e for e in entries if e.get("request_id") == request_id]
    assert len(access) == 1, access
    assert access[0]["path"] == "/v1/whoami" and access[0]["status"] == 200
    assert access[0]["principal"] is not None
