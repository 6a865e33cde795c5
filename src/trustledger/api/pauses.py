"""What stalls a server process, recorded for the bench (``TRUSTLEDGER_PAUSES``).

Off unless ``TRUSTLEDGER_PAUSES`` names a folder (``bench/service.py`` sets it). Then
each server process appends JSON lines to ``pauses-<pid>.jsonl`` there, every
half second, one object per line, each with ``kind`` and ``t`` (wall-clock seconds, when
it began) and ``ms`` (how long it took):

* ``gc``: a garbage collection of generation 2, or of any generation that took 1 ms or
  more: ``gen``, ``collected``, ``thread`` (the thread that ran it; every thread waits);
* ``gc-counts``: per flush, how many collections of each generation ran, their
  milliseconds in total and the objects they freed (``counts``, ``ms``, ``collected``:
  three numbers each);
* ``stall``: the event loop ran a timer late by ``ms`` (more than :data:`STALL_MS`): a
  probe sleeps 5 ms in a loop and measures how late it wakes up;
* ``commit``: one access-log group commit (``records`` in it), whatever it took;
* ``checkpoint``: one SQLite WAL checkpoint run off the commit path (``pages`` written
  back, ``busy`` if a reader or another checkpoint stopped it short).

The records are kept in memory and written by a thread, never from a GC callback or
the event loop. Nothing here changes what the service does.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson

PAUSES_ENV = "TRUSTLEDGER_PAUSES"
"""The folder the server's pause records go to (unset: nothing is recorded)."""
STALL_MS = 10.0
"""An event-loop timer late by more than this is recorded as a stall."""
_PROBE_S = 0.005
_FLUSH_S = 0.5


class Recorder:
    """Collects one process's pauses and appends them to its file every half second."""

    def __init__(self, path: Path) -> None:
        """Record to ``path`` (appended to); start the writer thread and the GC callback."""
        self.path = path
        self._items: deque[dict[str, Any]] = deque()
        self._gc_started = 0.0
        self._gc_counts = [0, 0, 0]
        self._gc_ms = [0.0, 0.0, 0.0]
        self._gc_collected = [0, 0, 0]
        self._stop = threading.Event()
        self._probe: asyncio.Task[None] | None = None
        gc.callbacks.append(self._on_gc)
        self._thread = threading.Thread(target=self._run, name="pauses", daemon=True)
        self._thread.start()

    def note(self, kind: str, started: float, ms: float, **fields: Any) -> None:
        """Record one pause of ``kind`` that began at ``started`` (wall clock) and took ``ms``."""
        self._items.append({"kind": kind, "t": round(started, 4), "ms": round(ms, 3),
                            **fields})

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        ms = 1000 * (time.perf_counter() - self._gc_started)
        gen = info["generation"]
        self._gc_counts[gen] += 1
        self._gc_ms[gen] += ms
        self._gc_collected[gen] += info["collected"]
        if gen == 2 or ms >= 1.0:
            self.note("gc", time.time() - ms / 1000, ms, gen=gen, collected=info["collected"],
                      thread=threading.current_thread().name)

    def start_probe(self) -> None:
        """Start the event-loop probe on the running loop (the app's lifespan calls it)."""
        self._probe = asyncio.get_running_loop().create_task(self._loop_probe())

    async def _loop_probe(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(_PROBE_S)
            late = 1000 * (time.perf_counter() - before - _PROBE_S)
            if late > STALL_MS:
                self.note("stall", time.time() - late / 1000, late)

    def close(self) -> None:
        """Stop recording and write what is left."""
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._probe is not None:
            self._probe.cancel()
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(_FLUSH_S):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        counts, ms, collected = self._gc_counts, self._gc_ms, self._gc_collected
        self._gc_counts, self._gc_ms, self._gc_collected = [0, 0, 0], [0.0, 0.0, 0.0], [0, 0, 0]
        lines = [orjson.dumps({"kind": "gc-counts", "t": round(time.time(), 4),
                               "counts": counts, "ms": [round(m, 3) for m in ms],
                               "collected": collected})]
        while self._items:
            lines.append(orjson.dumps(self._items.popleft()))
        with self.path.open("ab") as out:
            out.write(b"\n".join(lines) + b"\n")


_RECORDER: Recorder | None = None


def recorder() -> Recorder | None:
    """The recorder of this process, if ``TRUSTLEDGER_PAUSES`` asked for one."""
    return _RECORDER


def install_from_env() -> Recorder | None:
    """Start recording if ``TRUSTLEDGER_PAUSES`` names a folder (once per process)."""
    global _RECORDER
    folder = os.environ.get(PAUSES_ENV)
    if not folder or _RECORDER is not None:
        return _RECORDER
    Path(folder).mkdir(parents=True, exist_ok=True)
    _RECORDER = Recorder(Path(folder) / f"pauses-{os.getpid()}.jsonl")
    return _RECORDER
