"""The ledger's entries read by a forked process, for a job that has other work meanwhile.

Python's ``sqlite3`` driver holds the interpreter's lock while it builds a tuple per
entry (about 0.4 s for 200,000 entries), so a reading *thread* mostly takes turns with
the thread that loads the policy and Ibis. :class:`ReaderProcess` forks a child that
reads :meth:`Ledger.batch_columns <trustledger.ledger.Ledger.batch_columns>` on a
connection of its own (a new engine, never one inherited from the parent) in one read
transaction, exactly as the thread would, and hands the record batches back as an Arrow
IPC stream through a pipe; the parent meanwhile does its own work on its core.

The child then reports how it ended on a second pipe: ``("end", entries)`` or
``("error", exception)``. An error in the child (a database it cannot read, say) is
raised in the parent with its message; a child that dies without a word is a
:class:`RuntimeError` naming its exit code; closing the reader early ends the child, and
the child is always waited for (no zombie is left).

SQLite only (:func:`forks`): a PostgreSQL read already runs in the server, outside
Python's lock.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Generator, Sequence
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

# Everything the child uses is imported with this module, before any fork: the child
# imports nothing (a module another thread was importing at the fork could not be).
import pyarrow as pa
import pyarrow.ipc
import sqlalchemy.dialects.sqlite  # noqa: F401  (what the child's engine loads)
from sqlalchemy import exc

from trustledger.batch.sources import LEDGER_SCHEMA
from trustledger.errors import ConfigError, InputError
from trustledger.ledger import Ledger
from trustledger.ledger.database import describe

if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["ReaderProcess", "forks"]

_PIPE_BYTES = 1 << 20
"""The data pipe's capacity (Linux lets a process raise it to 1 MiB) and the write buffer."""


def forks(url: str) -> bool:
    """Whether the entries of the ledger at ``url`` are read by a forked process here.

    On SQLite where this platform forks (not on macOS, where a process with threads is not
    safe to fork, nor where there is no ``waitid``); elsewhere the caller reads in a thread.
    """
    from sqlalchemy.engine import make_url

    return (hasattr(os, "fork") and hasattr(os, "waitid") and sys.platform != "darwin"
            and make_url(url).get_backend_name() == "sqlite")


class ReaderProcess:
    """A forked child reading the ledger's entries of ``kinds`` in pages of ``rows``.

    The child is forked when this is made: fork before starting threads that the child
    has no use for (it touches none, but a fork copies only the calling thread). Iterate
    :meth:`batches` once, in any one thread; :meth:`stop` may be called from any thread;
    :meth:`close` (or leaving the ``with`` block) ends the child if it still runs and
    waits for it.
    """

    def __init__(self, url: str, kinds: Sequence[str], rows: int) -> None:
        """Fork the child, which opens the ledger at ``url`` itself.

        Forked before the caller opens the ledger: a migration the two openings might both
        find due runs once, in the database's write transaction
        (:func:`trustledger.ledger.database.migrate`).
        """
        import fcntl  # POSIX, as fork is

        data_in, data_out = os.pipe()
        status_in, status_out = os.pipe()
        if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: fewer turns between writer and reader
            with suppress(OSError):
                fcntl.fcntl(data_out, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._lock = threading.Lock()
        self._code: int | None = None
        try:
            self.pid = os.fork()
        except OSError:
            for fd in (data_in, data_out, status_in, status_out):
                os.close(fd)
            raise
        if self.pid == 0:  # the child
            os.close(data_in)
            os.close(status_in)
            _child(url, kinds, rows, data_out, status_out)
        os.close(data_out)
        os.close(status_out)
        self._data = open(data_in, "rb", buffering=_PIPE_BYTES)  # noqa: SIM115  (closed by close)
        self._status = open(status_in, "rb")  # noqa: SIM115

    def batches(self) -> Generator[pa.RecordBatch, None, None]:
        """The entries as :meth:`Ledger.batch_columns` gives them, as the child sends them.

        Ends once the child has said it sent them all; raises the child's error, or a
        :class:`RuntimeError` if it ended without a word (with its exit code).
        """
        received = 0
        broken: BaseException | None = None
        try:
            stream = pyarrow.ipc.open_stream(self._data)
            for batch in stream:
                received += batch.num_rows
                yield batch
        except (pa.ArrowException, OSError) as err:  # a stream cut short: the status says why
            broken = err
        message = self._status.read()
        code = self._reap()
        if not message:
            raise RuntimeError(f"the ledger reader process ended unexpectedly (exit code "
                               f"{code})") from broken
        kind, value = pickle.loads(message)
        if kind == "error":
            raise value
        if broken is not None or value != received:
            raise RuntimeError(f"the ledger reader process sent {received:,} of {value:,} "
                               "entries") from broken

    def stop(self) -> None:
        """End the child now if it still runs (from any thread); :meth:`close` waits for it."""
        with self._lock:
            if self._code is None:
                with suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)

    def close(self) -> None:
        """End the child if it still runs, wait for it and close the pipes."""
        self.stop()
        self._reap()
        self._data.close()
        self._status.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _reap(self) -> int:
        """Wait for the child to end and collect it (once); its exit code (``-N``: signal N)."""
        with self._lock:
            if self._code is not None:
                return self._code
        # Waited for without collecting it, so that stop() never signals a collected pid.
        with suppress(ChildProcessError):
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            if self._code is None:
                _, status = os.waitpid(self.pid, 0)
                self._code = os.waitstatus_to_exitcode(status)
            return self._code


def _child(url: str, kinds: Sequence[str], rows: int, data: int, status: int) -> NoReturn:
    """The child: send the entries, then how it ended; never returns to the caller's code."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides on an interrupt
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        outcome = _send(url, kinds, rows, data)
        with open(status, "wb") as out:
            out.write(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
        code = 0
    finally:
        os._exit(code)


def _send(url: str, kinds: Sequence[str], rows: int, data: int) -> tuple[str, Any]:
    """Write the entries to ``data`` as an Arrow IPC stream; ``("end", n)`` or ``("error", e)``."""
    sent = 0
    try:
        with (open(data, "wb", buffering=_PIPE_BYTES) as sink, Ledger.open(url) as ledger,
              pyarrow.ipc.new_stream(sink, LEDGER_SCHEMA) as writer):
            for batch in ledger.batch_columns(kinds, rows=rows):
                writer.write_batch(batch)
                sent += batch.num_rows
    except exc.DBAPIError as err:
        detail = err.orig if err.orig is not None else err
        return "error", ConfigError(f"cannot read the ledger database {describe(url)}: {detail}")
    except ConfigError as err:
        return "error", ConfigError(str(err))
    except InputError as err:
        return "error", InputError(str(err))
    except BaseException:  # handed to the parent, who raises it
        return "error", RuntimeError(
            f"the ledger reader process failed:\n{traceback.format_exc()}")
    return "end", sent
