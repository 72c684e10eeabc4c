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

import contextlib
import functools
import math
import os
import sqlite3
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, TypeAlias

import structlog

__all__ = [
    "SCHEMA_VERSION",
    "Durability",
    "Journal",
    "JournalBackpressureError",
    "JournalClosedError",
    "JournalOpenError",
    "JournalSettings",
    "OutcomeRecord",
    "ScreenedRecord",
]

log = structlog.get_logger(__name__)

Durability = Literal["normal", "full"]

SCHEMA_VERSION = 1
_SYNCHRONOUS: dict[str, str] = {"normal": "NORMAL", "full": "FULL"}
_BACKOFF_START = 0.05
_BACKOFF_CAP = 2.0
_ABANDON_GRACE = 0.5  # seconds close() still waits for the writer after giving up on it
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_CHECK = (
    "check free disk space and write permissions on the journal file and its directory, "
    "and that no other process holds a write lock on it"
)
_WRITE_ACTION = _CHECK + "; the records stay queued and are retried"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transactions (
    seq INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    card_token TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    mcc INTEGER,
    entry_mode INTEGER,
    local_weekday INTEGER NOT NULL,
    local_hour INTEGER NOT NULL,
    features BLOB NOT NULL,
    fingerprint TEXT NOT NULL,
    decision TEXT NOT NULL,
    score REAL,
    reasons_json TEXT NOT NULL,
    model_version TEXT NOT NULL,
    stand_in INTEGER NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (terminal_id, transaction_id)
);
CREATE INDEX IF NOT EXISTS transactions_timestamp ON transactions (timestamp);
CREATE TABLE IF NOT EXISTS outcomes (
    seq INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    is_fraud INTEGER NOT NULL,
    reported_at INTEGER NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outcomes_key ON outcomes (terminal_id, transaction_id);
"""

_INSERT_TX = (
    "INSERT OR IGNORE INTO transactions (terminal_id, transaction_id, card_token, timestamp, "
    "amount_minor, currency, mcc, entry_mode, local_weekday, local_hour, features, fingerprint, "
    "decision, score, reasons_json, model_version, stand_in, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_OUTCOME = (
    "INSERT INTO outcomes (terminal_id, transaction_id, outcome, is_fraud, reported_at, "
    "recorded_at) VALUES (?, ?, ?, ?, ?, ?)"
)
_SELECT_TX = (
    "SELECT terminal_id, transaction_id, card_token, timestamp, amount_minor, currency, mcc, "
    "entry_mode, local_weekday, local_hour, features, fingerprint, decision, score, "
    "reasons_json, model_version, stand_in, received_at FROM transactions"
)
_FIND_TX = _SELECT_TX + " WHERE terminal_id = ? AND transaction_id = ?"
_ITER_TX = _SELECT_TX + " WHERE timestamp >= ? AND timestamp < ? ORDER BY seq"
_LATEST_OUTCOMES = (
    "SELECT o.terminal_id, o.transaction_id, o.outcome, o.is_fraud, o.reported_at "
    "FROM outcomes o JOIN (SELECT MAX(seq) AS seq FROM outcomes "
    "GROUP BY terminal_id, transaction_id) latest ON o.seq = latest.seq"
)
_LATEST_OUTCOMES_SINCE = (
    _LATEST_OUTCOMES + " JOIN transactions t ON t.terminal_id = o.terminal_id "
    "AND t.transaction_id = o.transaction_id WHERE t.timestamp >= ?"
)
_PURGE_OUTCOMES = (
    "DELETE FROM outcomes WHERE reported_at < ? AND NOT EXISTS (SELECT 1 FROM transactions t "
    "WHERE t.terminal_id = outcomes.terminal_id AND t.transaction_id = outcomes.transaction_id)"
)


class ScreenedRecord(NamedTuple):
    """One screened transaction as journaled; the card is a token, never a PAN."""

    terminal_id: str
    transaction_id: str
    card_token: str
    timestamp: int
    amount_minor: int
    currency: str
    mcc: int | None
    entry_mode: int | None
    local_weekday: int
    local_hour: int
    features: tuple[float, ...]
    fingerprint: str
    decision: str
    score: float | None
    reasons_json: str
    model_version: str
    stand_in: bool
    received_at: float


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """A label reported later for a transaction (chargeback, confirmed fraud or genuine)."""

    terminal_id: str
    transaction_id: str
    outcome: str
    is_fraud: bool
    reported_at: int


class JournalBackpressureError(RuntimeError):
    """The write queue is full: answer UNAVAILABLE rather than accept what cannot be kept."""


class JournalClosedError(RuntimeError):
    """The journal was closed (or its writer stopped); nothing more can be written."""


class JournalOpenError(RuntimeError):
    """The journal file cannot be used: not SQLite, a newer schema, or no WAL support."""


@dataclass(frozen=True)
class JournalSettings:
    """Where the journal lives and how it trades durability, latency and memory."""

    path: Path
    durability: Durability = "normal"
    batch_max: int = 512
    flush_interval: float = 0.005
    max_queue: int = 200_000
    retention_seconds: int = 60 * 86400

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path):
            if not isinstance(self.path, str | os.PathLike):
                raise ValueError(f"path must be a file path, got {type(self.path).__name__}")
            object.__setattr__(self, "path", Path(self.path))
        if str(self.path) in ("", ".", ":memory:"):
            raise ValueError(f"path must name a journal file, got {str(self.path)!r}")
        if self.durability not in _SYNCHRONOUS:
            raise ValueError(f"durability must be 'normal' or 'full', got {self.durability!r}")
        _require_int("batch_max", self.batch_max, minimum=1)
        _require_int("max_queue", self.max_queue, minimum=1)
        _require_int("retention_seconds", self.retention_seconds, minimum=1)
        if (
            not isinstance(self.flush_interval, int | float)
            or isinstance(self.flush_interval, bool)
            or not math.isfinite(self.flush_interval)
            or not 0 <= self.flush_interval <= 10
        ):
            raise ValueError(
                f"flush_interval must be seconds between 0 and 10, got {self.flush_interval!r}"
            )


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


# --- encoding: validated on the writer thread (records) or the caller (outcomes) ---------


class _RecordError(ValueError):
    """A record that can never be stored; names the field, never its value."""


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise _RecordError(f"{name} must be str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _RecordError(f"{name} is not valid UTF-8 text") from None
    return value


def _integer(value: object, name: str) -> int:
    if not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        raise _RecordError(f"{name} must be a 64-bit integer")
    return int(value)


def _optional_integer(value: object, name: str) -> int | None:
    return None if value is None else _integer(value, name)


def _real(value: object, name: str) -> float:
    if not isinstance(value, int | float) or math.isnan(value):
        raise _RecordError(f"{name} must be a number, not NaN")
    return float(value)


@functools.lru_cache(maxsize=64)
def _features_struct(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}d")


def _pack_features(features: object) -> bytes:
    """Little-endian float64s: the bit patterns (NaN payloads, -0.0) are kept exactly."""
    if not isinstance(features, tuple):
        raise _RecordError(f"features must be a tuple, got {type(features).__name__}")
    try:
        return _features_struct(len(features)).pack(*features)
    except (struct.error, TypeError):
        raise _RecordError("features must be numbers") from None


def _unpack_features(blob: bytes) -> tuple[float, ...]:
    if len(blob) % 8:
        raise ValueError(f"journal features blob of {len(blob)} bytes is not float64s")
    return _features_struct(len(blob) // 8).unpack(blob)


def _encode_record(record: ScreenedRecord) -> tuple[object, ...]:
    """The row for INSERT; a NaN score is stored as NULL (SQLite has no NaN) and reads None."""
    score = record.score
    if score is not None:
        if not isinstance(score, int | float):
            raise _RecordError(f"score must be a number or None, got {type(score).__name__}")
        score = None if math.isnan(score) else float(score)
    return (
        _text(record.terminal_id, "terminal_id"),
        _text(record.transaction_id, "transaction_id"),
        _text(record.card_token, "card_token"),
        _integer(record.timestamp, "timestamp"),
        _integer(record.amount_minor, "amount_minor"),
        _text(record.currency, "currency"),
        _optional_integer(record.mcc, "mcc"),
        _optional_integer(record.entry_mode, "entry_mode"),
        _integer(record.local_weekday, "local_weekday"),
        _integer(record.local_hour, "local_hour"),
        _pack_features(record.features),
        _text(record.fingerprint, "fingerprint"),
        _text(record.decision, "decision"),
        score,
        _text(record.reasons_json, "reasons_json"),
        _text(record.model_version, "model_version"),
        1 if record.stand_in else 0,
        _real(record.received_at, "received_at"),
    )


def _decode_record(row: tuple[object, ...]) -> ScreenedRecord:
    (
        terminal_id,
        transaction_id,
        card_token,
        timestamp,
        amount_minor,
        currency,
        mcc,
        entry_mode,
        weekday,
        hour,
        features,
        print_,
        decision,
        score,
        reasons,
        version,
        stand_in,
        received_at,
    ) = row
    assert isinstance(features, bytes)
    return ScreenedRecord(
        terminal_id=str(terminal_id),
        transaction_id=str(transaction_id),
        card_token=str(card_token),
        timestamp=_as_int(timestamp),
        amount_minor=_as_int(amount_minor),
        currency=str(currency),
        mcc=None if mcc is None else _as_int(mcc),
        entry_mode=None if entry_mode is None else _as_int(entry_mode),
        local_weekday=_as_int(weekday),
        local_hour=_as_int(hour),
        features=_unpack_features(features),
        fingerprint=str(print_),
        decision=str(decision),
        score=None if score is None else _as_float(score),
        reasons_json=str(reasons),
        model_version=str(version),
        stand_in=bool(stand_in),
        received_at=_as_float(received_at),
    )


def _as_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _as_float(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


def _encode_outcome(outcome: OutcomeRecord, recorded_at: float) -> tuple[object, ...]:
    try:
        return (
            _text(outcome.terminal_id, "terminal_id"),
            _text(outcome.transaction_id, "transaction_id"),
            _text(outcome.outcome, "outcome"),
            1 if outcome.is_fraud else 0,
            _integer(outcome.reported_at, "reported_at"),
            recorded_at,
        )
    except _RecordError as exc:
        raise ValueError(f"outcome record rejected: {exc}") from None


def _decode_outcome(row: tuple[object, ...]) -> OutcomeRecord:
    terminal_id, transaction_id, outcome, is_fraud, reported_at = row
    return OutcomeRecord(
        str(terminal_id), str(transaction_id), str(outcome), bool(is_fraud), _as_int(reported_at)
    )


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


# --- the journal --------------------------------------------------------------------------


class Journal:
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
    def queue_full(self) -> bool:
        """`submit` would refuse a record now: callers check before deciding anything."""
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

    # -- reading: own connections, never the writer's -----------------------------------

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            raise JournalClosedError(f"journal {self._path} is closed")
        return self._reader

    def find_transaction(self, terminal_id: str, transaction_id: str) -> ScreenedRecord | None:
        """The committed record for a key (a retry after restart gets the first answer)."""
        with self._read_lock:
            row = self._read().execute(_FIND_TX, (terminal_id, transaction_id)).fetchone()
        return None if row is None else _decode_record(row)

    def latest_timestamp(self) -> int | None:
        """The newest transaction timestamp committed, or None for an empty journal."""
        with self._read_lock:
            row = self._read().execute("SELECT MAX(timestamp) FROM transactions").fetchone()
        return None if row[0] is None else int(row[0])

    def earliest_timestamp(self) -> int | None:
        """The oldest transaction timestamp still journaled (retention moves it forward)."""
        with self._read_lock:
            row = self._read().execute("SELECT MIN(timestamp) FROM transactions").fetchone()
        return None if row[0] is None else int(row[0])

    def iter_transactions(
        self, since_timestamp: int, until_timestamp: int = _INT64_MAX
    ) -> Iterator[ScreenedRecord]:
        """Records with since <= timestamp < until, in arrival order, streamed from a snapshot.

        Each call uses its own connection (closed when the iterator is exhausted or closed)
        so a long replay neither holds the shared reader nor loads everything in memory.
        """
        self._read()  # closed journal: fail now, not at the first next()
        return _stream(self._connect(query_only=True), since_timestamp, until_timestamp)

    def latest_outcomes(
        self, since_timestamp: int | None = None
    ) -> dict[tuple[str, str], OutcomeRecord]:
        """The newest outcome per transaction (by arrival); with `since`, only for known
        transactions whose timestamp >= since."""
        with self._read_lock:
            if since_timestamp is None:
                rows = self._read().execute(_LATEST_OUTCOMES).fetchall()
            else:
                rows = self._read().execute(_LATEST_OUTCOMES_SINCE, (since_timestamp,)).fetchall()
        outcomes = (_decode_outcome(row) for row in rows)
        return {(o.terminal_id, o.transaction_id): o for o in outcomes}


def _stream(conn: sqlite3.Connection, since: int, until: int) -> Iterator[ScreenedRecord]:
    try:
        cursor = conn.execute(_ITER_TX, (since, until))
        while rows := cursor.fetchmany(1024):
            for row in rows:
                yield _decode_record(row)
    finally:
        conn.close()


def _open_schema(conn: sqlite3.Connection, path: Path) -> None:
    """WAL on, then create or check the schema in one write transaction."""
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    except sqlite3.Error as exc:
        raise _open_error(path, exc) from exc
    if str(mode).lower() != "wal":
        raise JournalOpenError(
            f"journal {path} cannot use WAL mode (got {mode!r}); put it on a local filesystem"
        )
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise JournalOpenError(
                f"journal {path} has schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this fraudscreen release understands; it was written by "
                "a newer release: upgrade fraudscreen, or set another journal path"
            )
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _open_error(path: Path, exc: sqlite3.Error) -> JournalOpenError:
    if isinstance(exc, sqlite3.OperationalError):  # locked, I/O, permissions: not the file
        return JournalOpenError(f"cannot open journal {path}: {exc}; {_CHECK}")
    return JournalOpenError(
        f"journal {path} is not a usable SQLite database ({exc}); move it aside or set "
        "another journal path"
    )


def _prepare_file(path: Path) -> None:
    """Parent directory 0700, journal file 0600 before SQLite opens it: it holds tokens.

    SQLite gives the -wal and -shm files the database file's permissions.
    """
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise JournalOpenError(f"cannot create or open journal {path}: {exc}") from exc
    try:
        mode = os.fstat(fd).st_mode & 0o777
        if mode & 0o077:  # only a pre-existing file: a new one was created 0600 or tighter
            os.fchmod(fd, 0o600)
            log.warning("journal.permissions_tightened", path=str(path), previous=oct(mode))
    finally:
        os.close(fd)
