"""The journal's tables and statements, and opening the file: 0600, WAL, schema version.

The file may hold other modules' tables (created with their own connection and
`CREATE TABLE IF NOT EXISTS`); `PRAGMA user_version` is this module's schema version, so
other modules must not set it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import structlog

from fraudscreen.storage.journal.settings import JournalOpenError

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1
_CHECK = (
    "check free disk space and write permissions on the journal file and its directory, "
    "and that no other process holds a write lock on it"
)

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
