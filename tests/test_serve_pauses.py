"""The server's pause records for the bench (``TRUSTLEDGER_PAUSES``): what they hold."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from pathlib import Path

import pytest

from trustledger.api import pauses


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_recorder_writes_full_collections_notes_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "pauses-1.jsonl"
    recorder = pauses.Recorder(path)
    try:
        started = time.time()
        recorder.note("commit", started, 12.5, records=7)
        gc.collect()  # a generation-2 collection: always recorded
    finally:
        recorder.close()
    assert recorder._on_gc not in gc.callbacks  # closing stops recording
    found = _records(path)
    kinds = {item["kind"] for item in found}
    assert {"commit", "gc", "gc-counts"} <= kinds
    commit = next(item for item in found if item["kind"] == "commit")
    assert commit["records"] == 7 and commit["ms"] == 12.5
    full = [item for item in found if item["kind"] == "gc" and item["gen"] == 2]
    assert full and all(item["thread"] == "MainThread" for item in full)
    counts = [item for item in found if item["kind"] == "gc-counts"]
    assert sum(item["counts"][2] for item in counts) >= 1  # type: ignore[index]


def test_the_probe_records_a_blocked_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "pauses-2.jsonl"
    recorder = pauses.Recorder(path)

    async def block() -> None:
        recorder.start_probe()
        await asyncio.sleep(0.02)
        time.sleep(5 * pauses.STALL_MS / 1000)  # the loop cannot run its timers meanwhile
        await asyncio.sleep(0.02)

    try:
        asyncio.run(block())
    finally:
        recorder.close()
    stalls = [item for item in _records(path) if item["kind"] == "stall"]
    assert stalls and max(float(s["ms"]) for s in stalls) > pauses.STALL_MS  # type: ignore[arg-type]


def test_nothing_is_recorded_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pauses.PAUSES_ENV, raising=False)
    assert pauses.install_from_env() is None
    assert pauses.recorder() is None
