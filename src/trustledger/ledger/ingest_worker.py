"""The ingest's worker process: it reads, checks and hashes batches while the writer writes.

:func:`prepared_by_worker` forks a worker that runs
:func:`~trustledger.ledger.columnar.check_batch` and
:func:`~trustledger.ledger.appender.prepare` on each batch of a file, one batch ahead
of the writing process, so the writer only turns ready rows into the database's
statement and waits for the database.

A prepared batch travels through **shared memory**: before the fork the writer maps
:data:`SLOTS` anonymous shared slots of :data:`SLOT_BYTES`. The worker pickles a
batch with its column buffers out of band (pickle protocol 5), copies the buffers into
the next free slot and sends only the small pickle over a pipe; the writer unpickles
it with the buffers read in place (no copy, no pipe transfer of the data) and frees
the slot when it asks for the next batch. A batch larger than a slot travels whole
through the pipe. A semaphore counts the free slots: the worker waits for one, and
both sides use the slots in turn.

The first batch of the file is prepared in growing pieces (:data:`RAMP`), so the
writer starts writing after a few thousand rows instead of a whole batch.
"""

from __future__ import annotations

import mmap
import multiprocessing
import pickle
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import suppress
from typing import TYPE_CHECKING, Any, cast

from trustledger.errors import InputError
from trustledger.ledger.appender import Prepared, prepare
from trustledger.ledger.columnar import EventBatch, EventRules, check_batch

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.synchronize import Semaphore

__all__ = ["RAMP", "SLOTS", "SLOT_BYTES", "can_fork", "prepared_by_worker", "ramped"]

SLOTS = 3
"""Shared-memory slots: the batch being written and up to two ready after it (slack for a
worker that gets the CPU in bursts on a busy machine)."""

SLOT_BYTES = 128 << 20
"""Bytes a slot holds (address space; only the pages a batch fills are used)."""

RAMP = (16, 16, 8, 4, 2)
"""The first batch goes as pieces of 1/16, 1/16, 1/8, 1/4 and 1/2 of its rows (in turn)."""

_ALIGN = 64  # Arrow's buffer alignment: every buffer starts at a multiple of it


def can_fork() -> bool:
    """Whether this process can fork a worker (a daemonic process may start none)."""
    return ("fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon)


def ramped(batches: Iterable[EventBatch], smallest: int = 1024) -> Iterator[EventBatch]:
    """The batches, the first one cut into growing pieces (:data:`RAMP`) when it is large."""
    first = True
    for batch in batches:
        if first and len(batch) >= smallest * RAMP[0]:
            start = 0
            for part in RAMP:
                stop = start + len(batch) // part
                yield batch.piece(start, stop)
                start = stop
            if start < len(batch):
                yield batch.piece(start, len(batch))
        else:
            yield batch
        first = False


def prepared_by_worker(
    batches: Callable[[], Iterable[EventBatch]], rules: EventRules, seq: int,
    prev_hash: str, recorded_at_us: int, *, copy: bool, slot_bytes: int = SLOT_BYTES,
) -> Generator[Prepared, None, None]:
    """The batches ``batches()`` gives, checked and prepared by a worker process.

    The worker is forked (it inherits ``batches`` and the rules: nothing but the
    prepared batches is pickled) and hashes each batch after the one before it as if
    all its clean rows are written, from ``(seq, prev_hash)`` on (the usual case;
    :meth:`~trustledger.ledger.appender.ChainAppender.write` chains a batch again when
    they were not). A batch's columns may live in a shared slot that the worker fills
    again once the next batch is asked for: use a batch before asking for the next,
    and keep nothing of it but copies. The worker's errors are raised here: an
    :class:`InputError` (a fault in the file) as it is, anything else as a
    :class:`RuntimeError` with the worker's traceback, and a worker that ends
    without a word as a :class:`RuntimeError` naming its exit code. The worker is
    stopped when the generator is closed. ``slot_bytes`` is the size of each shared slot.
    """
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    slots = mmap.mmap(-1, SLOTS * slot_bytes)
    free = context.Semaphore(SLOTS)
    process = context.Process(
        target=_work, name="trustledger-ingest-prepare", daemon=True,
        args=(send, slots, slot_bytes, free, batches, rules, seq, prev_hash, recorded_at_us,
              copy),
    )
    process.start()
    send.close()
    view = memoryview(slots)
    try:
        while True:
            try:
                message = receive.recv_bytes()
            except EOFError:
                process.join()
                raise RuntimeError(f"the ingest worker process ended unexpectedly (exit code "
                                   f"{process.exitcode})") from None
            kind, *parts = pickle.loads(message)
            if kind == "end":
                return
            if kind == "error":
                raise cast("BaseException", parts[0])
            if kind == "whole":
                yield cast("Prepared", pickle.loads(parts[0]))
                continue
            slot, data, places = parts
            base = slot * slot_bytes
            ready = pickle.loads(data, buffers=[view[base + at:base + at + size]
                                                for at, size in places])
            yield cast("Prepared", ready)
            del ready
            free.release()  # the writer is done with this batch: the worker may fill it
    finally:
        if process.is_alive():
            process.terminate()
        process.join()
        receive.close()
        view.release()
        with suppress(BufferError):  # the caller still holds the last batch: unmapped when freed
            slots.close()


def _work(send: Connection, slots: mmap.mmap, slot_bytes: int, free: Semaphore,
          batches: Callable[[], Iterable[EventBatch]], rules: EventRules, seq: int,
          prev_hash: str, recorded_at_us: int, copy: bool) -> None:
    """The worker process: prepare each batch, ship it, then say ``end``."""
    used = 0
    try:
        for batch in ramped(batches()):
            ready = prepare(check_batch(batch, rules), seq, prev_hash, recorded_at_us,
                            copy=copy)
            seq, prev_hash = ready.end
            if _to_slot(send, slots, slot_bytes, free, used % SLOTS, ready):
                used += 1
            else:
                send.send_bytes(_message("whole", pickle.dumps(
                    ready, protocol=pickle.HIGHEST_PROTOCOL)))
        send.send_bytes(_message("end"))
    except (BrokenPipeError, KeyboardInterrupt):
        return  # the writer stopped reading
    except InputError as err:
        send.send_bytes(_message("error", InputError(str(err))))
    except BaseException:  # handed to the writer, who raises it
        send.send_bytes(_message("error", RuntimeError(
            f"the ingest worker process failed:\n{traceback.format_exc()}")))
    finally:
        send.close()


def _to_slot(send: Connection, slots: mmap.mmap, slot_bytes: int, free: Semaphore,
             slot: int, ready: Prepared) -> bool:
    """Ship a batch through shared slot ``slot``; ``False`` if it does not fit in one."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(ready, protocol=5, buffer_callback=buffers.append)
    places: list[tuple[int, int]] = []
    at = 0
    for buffer in buffers:
        places.append((at, buffer.raw().nbytes))
        at += -(-buffer.raw().nbytes // _ALIGN) * _ALIGN
    if at > slot_bytes:
        return False
    free.acquire()  # the writer is done with what this slot held
    base = slot * slot_bytes
    for buffer, (start, size) in zip(buffers, places, strict=True):
        slots[base + start:base + start + size] = buffer.raw()
    send.send_bytes(_message("slot", slot, data, places))
    return True


def _message(kind: str, *parts: Any) -> bytes:
    return pickle.dumps((kind, *parts), protocol=pickle.HIGHEST_PROTOCOL)
