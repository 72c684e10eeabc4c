"""The queue between callers and the one writer thread, and the writer: group commit,
retry with backoff, give up only at close."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import structlog

from fraudscreen.records import ScreenedRecord
from fraudscreen.storage.journal.codec import _encode_record, _RecordError
from fraudscreen.storage.journal.schema import _CHECK, _INSERT_OUTCOME, _INSERT_TX, _PURGE_OUTCOMES
from fraudscreen.storage.journal.settings import (
    JournalBackpressureError,
    JournalClosedError,
    JournalSettings,
)

log = structlog.get_logger(__name__)

_BACKOFF_START = 0.05
_BACKOFF_CAP = 2.0
_WRITE_ACTION = _CHECK + "; the records stay queued and are retried"


# --- queue items --------------------------------------------------------------------------


class _Command:
    """A queue item someone waits for; set done only after the batch holding it committed."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class _Flush(_Command):
    __slots__ = ()


class _Outcome(_Command):
    __slots__ = ("row",)

    def __init__(self, row: tuple[object, ...]) -> None:
        super().__init__()
        self.row = row


class _Purge(_Command):
    __slots__ = ("deleted", "now")

    def __init__(self, now: int | None) -> None:
        super().__init__()
        self.now = now
        self.deleted = 0


class _Stop:
    __slots__ = ()


_Item: TypeAlias = ScreenedRecord | _Command | _Stop


@dataclass(slots=True)
class _Batch:
    """What one group commit writes; a purge or stop always ends a batch."""

    records: list[ScreenedRecord] = field(default_factory=list)
    outcomes: list[_Outcome] = field(default_factory=list)
    waiters: list[_Command] = field(default_factory=list)
    purge: _Purge | None = None
    stop: bool = False
    urgent: bool = False  # someone waits: commit what is there without waiting for more

    @property
    def size(self) -> int:
        return len(self.records) + len(self.outcomes)

    def add(self, item: _Item) -> bool:
        """Take one item; True when the batch must end here."""
        if isinstance(item, ScreenedRecord):
            self.records.append(item)
            return False
        if isinstance(item, _Stop):
            self.stop = True
            return True
        self.waiters.append(item)
        self.urgent = True
        if isinstance(item, _Outcome):
            self.outcomes.append(item)
        elif isinstance(item, _Purge):
            self.purge = item
            return True
        return False


# --- the queue between callers and the writer ---------------------------------------------

_NEVER = 1 << 62  # wake_at while the writer is busy: it looks at the queue when done


class _WriteQueue:
    """Callers append, the one writer takes batches; a notify only when the writer waits."""

    def __init__(self, path: Path, max_records: int) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.items: deque[_Item] = deque()
        self.path = path
        self.max_records = max_records
        self.records = 0  # screened records queued: what max_records bounds
        self.wake_at = 1  # the writer wants a notify once this many items are queued
        self.idle = False  # the writer waits for a first item: nothing is in flight
        self.started = False
        self.closed = False
        self.crashed = False

    def closed_error(self) -> JournalClosedError:
        if self.crashed:
            return JournalClosedError(f"journal writer for {self.path} stopped; see the log")
        return JournalClosedError(f"journal {self.path} is closed")

    @property
    def full(self) -> bool:
        return self.records >= self.max_records

    def put_record(self, record: ScreenedRecord) -> None:
        with self.cond:
            if self.closed or self.crashed:
                raise self.closed_error()
            if self.full:
                raise JournalBackpressureError(
                    f"journal queue is full ({self.records} records waiting): answer "
                    f"UNAVAILABLE so the terminal retries; operator: check that {self.path} is "
                    "writable and its disk has space (see journal.write_failed in the log)"
                )
            self.items.append(record)
            self.records += 1
            if len(self.items) >= self.wake_at:
                self.cond.notify()

    def put_records(self, records: Sequence[ScreenedRecord]) -> int:
        """As many of `records` as fit, in order; the count taken (0 when closed)."""
        with self.cond:
            if self.closed or self.crashed:
                return 0
            taken = max(0, min(len(records), self.max_records - self.records))
            self.items.extend(records[:taken])
            self.records += taken
            if taken and len(self.items) >= self.wake_at:
                self.cond.notify()
            return taken

    def put_command(self, command: _Command) -> None:
        with self.cond:
            if self.closed or self.crashed:
                raise self.closed_error()
            if not self.started:
                raise RuntimeError("journal writer not started; call start() first")
            self.items.append(command)
            self.cond.notify()

    def settled(self) -> bool:
        """Nothing queued and nothing in flight (the writer waits for a first item)."""
        with self.cond:
            return not self.items and self.idle and not (self.closed or self.crashed)

    def mark_started(self) -> None:
        with self.cond:
            if self.closed:
                raise self.closed_error()
            if self.started:
                raise RuntimeError("journal writer already started")
            self.started = True

    def close(self) -> bool:
        """Refuse new items, queue the stop; True if the writer was never started."""
        with self.cond:
            self.closed = True
            self.items.append(_Stop())
            self.cond.notify()
            never_started = not self.started
            self.started = True
            return never_started

    def wake(self) -> None:
        with self.cond:
            self.cond.notify()

    def take_batch(self, batch_max: int, interval: float, abandon: threading.Event) -> _Batch:
        """Block for a first item, then gather until full, urgent, or `interval` passed."""
        batch = _Batch()
        with self.cond:
            while not self.items and not abandon.is_set():
                self.idle = True
                self.wake_at = 1
                self.cond.wait()
            self.idle = False
            deadline = time.monotonic() + interval
            while True:
                while self.items and batch.size < batch_max:
                    item = self.items.popleft()
                    if isinstance(item, ScreenedRecord):
                        self.records -= 1
                    if batch.add(item):
                        self.wake_at = _NEVER
                        return batch
                remaining = deadline - time.monotonic()
                if batch.size >= batch_max or batch.urgent or remaining <= 0:
                    break
                if abandon.is_set():
                    break
                self.wake_at = batch_max - batch.size
                self.cond.wait(remaining)
            self.wake_at = _NEVER
            return batch

    def drain(self, crashed: bool = False) -> list[_Item]:
        """Everything still queued, removed; used only when the writer gives up."""
        with self.cond:
            self.crashed = self.crashed or crashed
            items = list(self.items)
            self.items.clear()
            self.records = 0
            return items


# --- the writer thread --------------------------------------------------------------------


class _Writer:
    """The one thread that writes: group commit, retry with backoff, give up only at close."""

    def __init__(
        self, conn: sqlite3.Connection, queue: _WriteQueue, settings: JournalSettings
    ) -> None:
        self.conn = conn
        self.queue = queue
        self.settings = settings
        self.path = str(settings.path)
        self.abandon = threading.Event()  # set by close() after its timeout
        self.commits = 0
        self.committed = 0
        self.write_errors = 0
        self.rejected = 0
        self.thread = threading.Thread(target=self.run, name="journal-writer", daemon=False)

    def run(self) -> None:
        batch = _Batch()  # the batch in hand, so a crash can still count it
        try:
            while True:
                batch = self.queue.take_batch(
                    self.settings.batch_max, self.settings.flush_interval, self.abandon
                )
                if self.abandon.is_set() or not self._write(batch):
                    self._give_up(batch)
                    return
                for waiter in batch.waiters:
                    waiter.done.set()
                if batch.stop:
                    return
                batch = _Batch()
        except BaseException:
            log.exception("journal.writer_crashed", path=self.path)
            self._give_up(batch, crashed=True)
            raise
        finally:
            self.conn.close()

    def _write(self, batch: _Batch) -> bool:
        """Commit the batch, retrying the same rows with backoff; False if close gave up."""
        rows = self._encode(batch.records)
        outcome_rows = [outcome.row for outcome in batch.outcomes]
        if not rows and not outcome_rows and batch.purge is None:
            return True
        delay = _BACKOFF_START
        failures = 0
        while True:
            try:
                self._commit(rows, outcome_rows, batch.purge)
            except Exception as exc:
                failures += 1
                self.write_errors += 1
                log.error(
                    "journal.write_failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    batch_size=batch.size,
                    attempt=failures,
                    retry_in=delay,
                    path=self.path,
                    action=_WRITE_ACTION,
                )
                if self.abandon.wait(delay):
                    return False
                delay = min(delay * 2, _BACKOFF_CAP)
                continue
            if failures:
                log.warning(
                    "journal.write_recovered",
                    attempts=failures + 1,
                    batch_size=batch.size,
                    path=self.path,
                )
            self.commits += 1
            self.committed += batch.size
            return True

    def _encode(self, records: list[ScreenedRecord]) -> list[tuple[object, ...]]:
        """Rows for INSERT; a record that can never be stored is counted and logged, once."""
        rows: list[tuple[object, ...]] = []
        for record in records:
            try:
                rows.append(_encode_record(record))
            except _RecordError as exc:
                self.rejected += 1
                log.error(
                    "journal.record_rejected",
                    reason=str(exc),
                    path=self.path,
                    action="a bug in the caller: this record was not stored; report it",
                )
        return rows

    def _commit(
        self,
        rows: list[tuple[object, ...]],
        outcome_rows: list[tuple[object, ...]],
        purge: _Purge | None,
    ) -> None:
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            if rows:
                conn.executemany(_INSERT_TX, rows)
            if outcome_rows:
                conn.executemany(_INSERT_OUTCOME, outcome_rows)
            if purge is not None:
                purge.deleted = self._purge(purge.now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                # the original error is what the operator needs; it is re-raised
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _purge(self, now: int | None) -> int:
        """Inside the batch's transaction, so a purge is ordered with the writes around it."""
        conn = self.conn
        if now is None:
            now = conn.execute("SELECT MAX(timestamp) FROM transactions").fetchone()[0]
            if now is None:
                return 0
        horizon = int(now) - self.settings.retention_seconds
        transactions = conn.execute(
            "DELETE FROM transactions WHERE timestamp < ?", (horizon,)
        ).rowcount
        outcomes = conn.execute(_PURGE_OUTCOMES, (horizon,)).rowcount
        log.info(
            "journal.purged",
            horizon=horizon,
            transactions=transactions,
            outcomes=outcomes,
            path=self.path,
        )
        return int(transactions) + int(outcomes)

    def _give_up(self, batch: _Batch, *, crashed: bool = False) -> None:
        """close() timed out (or the writer broke): fail the waiters, count what is lost."""
        remaining = self.queue.drain(crashed)
        error = self.queue.closed_error()
        unwritten = batch.size
        for waiter in batch.waiters:
            waiter.fail(error)
        for item in remaining:
            if isinstance(item, ScreenedRecord):
                unwritten += 1
            elif isinstance(item, _Command):
                unwritten += isinstance(item, _Outcome)
                item.fail(error)
        if unwritten:
            log.error(
                "journal.unwritten",
                count=unwritten,
                path=self.path,
                action="these records were never committed; " + _CHECK,
            )
