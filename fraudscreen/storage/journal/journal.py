"""The gateway's journal: every screened transaction and every reported outcome, on site.

SQLite in WAL mode, written off the hot path by ONE writer thread with group commit: the
screening code only enqueues (`submit`), the writer gathers what arrived within
`flush_interval` (at most `batch_max` records) and commits it in one transaction. On start
the service reads the journal back to rebuild its in-memory state; `purge` applies the
retention window. The card is already tokenized: no PAN ever reaches this module, and
nothing here logs a token or any other record content (counts and paths only).

Durability (`JournalSettings.durability`, SQLite's `PRAGMA synchronous`):

- ``"normal"`` (WAL + NORMAL): a committed batch survives a crash of the process; a power
  loss or OS crash may lose the last few committed batches but never corrupts the file.
- ``"full"`` (WAL + FULL): each group commit is fsynced before it is acknowledged (before
  `flush` / `record_outcome` return), so it also survives a power loss. Costs one fsync per
  group commit, not per record.

Either way, records still in the in-memory queue (not yet committed, normally younger than
the flush interval) are lost if the process is killed with SIGKILL; a clean `close()`
drains them.

Nothing is silently lost: a failed commit is rolled back, logged (`journal.write_failed`),
counted and retried with exponential backoff, the same batch, forever or until `close()`
gives up at its timeout, which logs how many records stayed unwritten (`journal.unwritten`).
A full queue makes `submit` raise `JournalBackpressureError` so the caller can answer
UNAVAILABLE instead of accepting a transaction it cannot journal.

The file may hold other modules' tables (created with their own connection and
`CREATE TABLE IF NOT EXISTS`); `PRAGMA user_version` is this module's schema version, so
other modules must not set it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence

import structlog

from fraudscreen.records import OutcomeRecord, ScreenedRecord
from fraudscreen.storage.journal.codec import _INT64_MIN, _encode_outcome
from fraudscreen.storage.journal.reader import JournalReader
from fraudscreen.storage.journal.schema import _open_error, _open_schema, _prepare_file
from fraudscreen.storage.journal.settings import _SYNCHRONOUS, JournalSettings, _require_int
from fraudscreen.storage.journal.writer import (
    _Command,
    _Flush,
    _Outcome,
    _Purge,
    _WriteQueue,
    _Writer,
)

log = structlog.get_logger(__name__)

_ABANDON_GRACE = 0.5  # seconds close() still waits for the writer after giving up on it


# --- the journal --------------------------------------------------------------------------


class Journal(JournalReader):
    """The on-site journal: callers enqueue, one writer thread commits, readers read."""

    def __init__(self, settings: JournalSettings, *, _busy_timeout: float = 5.0) -> None:
        self.settings = settings
        self._path = settings.path
        self._busy_timeout = _busy_timeout
        _prepare_file(self._path)
        conn = self._connect()
        try:
            _open_schema(conn, self._path)
            self._reader: sqlite3.Connection | None = self._connect(query_only=True)
        except BaseException:
            conn.close()
            raise
        self._read_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._close_done = False
        self._queue = _WriteQueue(self._path, settings.max_queue)
        self._writer = _Writer(conn, self._queue, settings)

    def _connect(self, *, query_only: bool = False) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                str(self._path),
                timeout=self._busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise _open_error(self._path, exc) from exc
        try:
            conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self.settings.durability]}")
            if query_only:
                conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            conn.close()
            raise _open_error(self._path, exc) from exc
        return conn

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the single writer thread; non-daemon so exit waits for a clean close."""
        self._queue.mark_started()
        self._writer.thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue, commit, stop the writer; after `timeout` give up and say how much."""
        with self._close_lock:
            if self._close_done:
                return
            thread = self._writer.thread
            if self._queue.close():  # never started: start the writer just to drain
                thread.start()
            thread.join(timeout)
            if thread.is_alive():
                self._writer.abandon.set()
                self._queue.wake()
                thread.join(_ABANDON_GRACE)
                if thread.is_alive():
                    log.error(
                        "journal.close_timeout",
                        path=str(self._path),
                        action="the writer is still inside a write attempt; it stops after it",
                    )
            with self._read_lock:
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
            self._close_done = True

    # -- writing: callers only enqueue ---------------------------------------------------

    def submit(self, record: ScreenedRecord) -> None:
        """Enqueue without blocking; SQLite is only ever touched by the writer thread."""
        if not isinstance(record, ScreenedRecord):
            raise TypeError(f"submit takes a ScreenedRecord, got {type(record).__name__}")
        self._queue.put_record(record)

    def submit_many(self, records: Sequence[ScreenedRecord]) -> int:
        """A batch's records under one lock and one wake-up; `submit` the ones not taken."""
        return self._queue.put_records(records)

    def record_outcome(self, outcome: OutcomeRecord, timeout: float = 5.0) -> None:
        """Write a label through the writer and wait for its commit: labels must not be lost."""
        if not isinstance(outcome, OutcomeRecord):
            raise TypeError(f"record_outcome takes an OutcomeRecord, got {type(outcome).__name__}")
        command = _Outcome(_encode_outcome(outcome, time.time()))
        self._queue.put_command(command)
        self._wait(command, timeout, "the outcome")

    def flush(self, timeout: float = 5.0) -> None:
        """Return once everything submitted before this call is committed."""
        if self._queue.settled():
            return
        command = _Flush()
        self._queue.put_command(command)
        self._wait(command, timeout, "the flush")

    def purge(self, now_timestamp: int | None = None, *, timeout: float = 60.0) -> int:
        """Apply retention on the writer thread (one writer) and return the rows deleted.

        Deletes transactions older than (now_timestamp, default the newest transaction's
        timestamp) minus retention, and outcomes reported before that horizon whose
        transaction is no longer present.
        """
        if now_timestamp is not None:
            _require_int("now_timestamp", now_timestamp, minimum=_INT64_MIN)
        command = _Purge(now_timestamp)
        self._queue.put_command(command)
        self._wait(command, timeout, "the purge")
        return command.deleted

    def _wait(self, command: _Command, timeout: float, what: str) -> None:
        if not command.done.wait(timeout):
            raise TimeoutError(
                f"{what} was not committed to {self._path} within {timeout} s "
                f"({self._writer.write_errors} failed write attempts so far); it stays queued "
                "and is committed as soon as the journal can write"
            )
        if command.error is not None:
            raise command.error

    # -- metrics ------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Screened records waiting for the writer (what `max_queue` bounds)."""
        return self._queue.records

    @property
    def queue_room(self) -> int:
        """How many more records `submit` would take now."""
        return max(0, self._queue.max_records - self._queue.records)

    @property
    def queue_full(self) -> bool:
        """`submit` would refuse a record now (`queue_room` is 0)."""
        return self._queue.full

    @property
    def committed(self) -> int:
        """Records (screened and outcomes) in batches committed since start."""
        return self._writer.committed

    @property
    def commits(self) -> int:
        """Group commits since start; `committed / commits` is the mean batch size."""
        return self._writer.commits

    @property
    def write_errors(self) -> int:
        """Failed commit attempts, each rolled back and retried."""
        return self._writer.write_errors

    @property
    def rejected(self) -> int:
        """Records that could never be stored (a caller bug, e.g. a NaN received_at)."""
        return self._writer.rejected
