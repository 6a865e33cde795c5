"""Helpers for bulk work over many rows."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

CHUNK = 20_000
"""Rows per bulk insert statement and per progress report."""


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for a block that builds many objects.

    Loading a million rows creates millions of acyclic objects; with the collector
    on, each full collection walks all of them again (a 2-3x slowdown). Reference
    counting still frees everything; the collector is restored afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
