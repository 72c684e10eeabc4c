"""The journal's tables and statements, and opening the file: 0600, WAL, schema version.

The file may hold other modules' tables (created with their own connection and
`CREATE TABLE IF NOT EXISTS`); `PRAGMA user_version` is this module's schema version, so
other modules must not set it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

import structlog

from fraudscreen.storage.journal.settings import JournalOpenError

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 2  # 2: the key index leads with the transaction's day (was UNIQUE(key))
_CHECK = (
    "check free disk space and write permissions on the journal file and its directory, "
    "and that no other process holds a write lock on it"
)

_TRANSACTIONS = """
CREATE TABLE IF NOT EXISTS {name} (
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
    received_at REAL NOT NULL
)"""

# The key index leads with the transaction's UTC day. Keyed on (terminal_id,
# transaction_id) alone, each new row landed on a random page of an index as large as the
# retention: ~25 µs of writer CPU per row at 600,000 rows (60 days of a busy site), against
# ~9 µs with the day first, where new rows share the newest day's few pages. A key is
# unique per day (a retry carries the same timestamp); lookups by key walk the days.
_SCHEMA = (
    _TRANSACTIONS.format(name="transactions")
    + """;
CREATE UNIQUE INDEX IF NOT EXISTS transactions_key
    ON transactions (timestamp / 86400, terminal_id, transaction_id);
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
)

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
# Every journaled day from `first` on, so a key is found by one index probe per day.
# `IN (SELECT d FROM day)`, not a join on the days: with sqlite_stat1 present (after ANALYZE
# or PRAGMA optimize) SQLite 3.40 puts a Bloom filter on such a join over the expression
# index, and that filter drops rows that match.
_DAYS_FROM = (
    "WITH RECURSIVE day(d) AS ({first} UNION ALL SELECT d + 1 FROM day "
    "WHERE d < (SELECT MAX(timestamp) / 86400 FROM transactions)) "
)
_ALL_DAYS = _DAYS_FROM.format(first="SELECT MIN(timestamp) / 86400 FROM transactions")
_KEY_ON_A_DAY = (
    "SELECT 1 FROM transactions t WHERE t.timestamp / 86400 IN (SELECT d FROM day) "
    "AND t.terminal_id = o.terminal_id AND t.transaction_id = o.transaction_id"
)
# the newest use of the key: a transaction id reused on another day is another transaction
_FIND_TX = (
    _ALL_DAYS  # noqa: S608 (constants)
    + _SELECT_TX
    + " t WHERE t.timestamp / 86400 IN (SELECT d FROM day) "
    "AND t.terminal_id = ? AND t.transaction_id = ? ORDER BY t.seq DESC LIMIT 1"
)
_ITER_TX = _SELECT_TX + " WHERE timestamp >= ? AND timestamp < ? ORDER BY seq"
_LATEST_OUTCOMES = (
    "SELECT o.terminal_id, o.transaction_id, o.outcome, o.is_fraud, o.reported_at "
    "FROM outcomes o JOIN (SELECT MAX(seq) AS seq FROM outcomes "
    "GROUP BY terminal_id, transaction_id) latest ON o.seq = latest.seq"
)
# from the later of `since` and the oldest row: `since` = 0 must not walk 20,000 days
_SINCE_OR_OLDEST = "SELECT MAX(?1, (SELECT MIN(timestamp) FROM transactions)) / 86400"
_LATEST_OUTCOMES_SINCE = (
    _DAYS_FROM.format(first=_SINCE_OR_OLDEST)
    + _LATEST_OUTCOMES
    + " WHERE EXISTS ("
    + _KEY_ON_A_DAY
    + " AND t.timestamp >= ?1)"
)
# the days inside the subquery: a statement that starts with WITH gets no rowcount
_PURGE_OUTCOMES = (
    "DELETE FROM outcomes AS o WHERE reported_at < ? AND NOT EXISTS ("  # noqa: S608 (constants)
    + _ALL_DAYS
    + _KEY_ON_A_DAY
    + ")"
)


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
    version = None
    try:
        conn.execute("BEGIN IMMEDIATE")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise JournalOpenError(
                f"journal {path} has schema version {version}, newer than the "
                f"{SCHEMA_VERSION} this fraudscreen release understands; it was written by "
                "a newer release: upgrade fraudscreen, or set another journal path"
            )
        if version == 1:
            _migrate_from_1(conn, path)
        _create(conn)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")  # a move's pages are mostly written here: disk full shows here
    except BaseException as exc:
        if conn.in_transaction:  # SQLite may have rolled back itself (disk full, I/O)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if not isinstance(exc, sqlite3.Error):
            raise
        if version == 1:
            raise JournalOpenError(
                f"journal {path} could not move to schema version {SCHEMA_VERSION} "
                f"({exc}); it is unchanged. The move needs about the journal's own size "
                f"in free disk; {_CHECK}, then start again"
            ) from exc
        raise _open_error(path, exc) from exc


def _create(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_from_1(conn: sqlite3.Connection, path: Path) -> None:
    """Version 1 kept the key in the table's own UNIQUE constraint, which SQLite cannot drop:
    the rows move to a table without it (same columns, same seq), inside the caller's
    transaction, so a crash leaves the version-1 file as it was. ~6 s for 600,000 rows
    (60 days of a busy site); the old table's pages stay in the file as free pages, which
    new rows reuse."""
    log.info("journal.migrating", path=str(path), from_version=1, to_version=SCHEMA_VERSION)
    started = time.monotonic()
    conn.execute(_TRANSACTIONS.format(name="transactions_v2"))
    moved = conn.execute("INSERT INTO transactions_v2 SELECT * FROM transactions").rowcount
    conn.execute("DROP TABLE transactions")
    conn.execute("ALTER TABLE transactions_v2 RENAME TO transactions")
    _create(conn)  # the indexes, inside the time reported
    log.info(
        "journal.migrated",
        path=str(path),
        rows=moved,
        seconds=round(time.monotonic() - started, 1),
    )


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
