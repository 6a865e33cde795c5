"""Moves the clock of every Python process a clock-shifted test session starts.

``tests/clock.py`` puts this folder on ``PYTHONPATH`` and sets ``TRUSTLEDGER_TEST_CLOCK_SHIFT``
(seconds) when the suite runs with ``--system-clock``; the command-line runs, servers and
workers the tests start then read the same moved clock as the test process itself.
"""

import os

_shift = os.environ.get("TRUSTLEDGER_TEST_CLOCK_SHIFT")
if _shift:
    import time

    import time_machine

    time_machine.travel(time.time() + float(_shift), tick=True).start()
