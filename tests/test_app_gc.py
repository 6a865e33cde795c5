"""The server process freezes what startup leaves alive and sets the young generation's
threshold; apps made elsewhere (tests) do neither.

Run in a fresh interpreter each: ``gc.freeze`` is process-wide, and this test process
creates many apps.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import gc, sys
from fastapi.testclient import TestClient
from trustledger.api.app import create_app
from trustledger.api.settings import Settings
settings = Settings(database_url=sys.argv[1], gc_young_threshold=12_345)
with TestClient(create_app(settings, freeze_after_startup=sys.argv[2] == "yes")):
    print(gc.get_threshold()[0], gc.get_freeze_count())
"""


@pytest.mark.parametrize("freeze", [True, False])
def test_startup_objects_are_frozen_only_in_the_server_process(tmp_path: Path,
                                                                freeze: bool) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    done = subprocess.run([sys.executable, "-c", SCRIPT, url, "yes" if freeze else "no"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    threshold, frozen = map(int, done.stdout.split()[-2:])
    assert (frozen > 10_000) if freeze else (frozen == 0), frozen
    assert threshold == (12_345 if freeze else 700), threshold  # 700: Python's default
