"""The journal's reading half: its own connections, never the writer's."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from fraudscreen.records import OutcomeRecord, ScreenedRecord
from fraudscreen.storage.journal.codec import _INT64_MAX, _decode_outcome, _decode_record
from fraudscreen.storage.journal.schema import (
    _FIND_TX,
    _ITER_TX,
    _LATEST_OUTCOMES,
    _LATEST_OUTCOMES_SINCE,
)
from fraudscreen.storage.journal.settings import JournalClosedError


class JournalReader:
    """Queries on the committed journal; `Journal` opens the connections."""

    _path: Path
    _reader: sqlite3.Connection | None
    _read_lock: threading.Lock

    def _connect(self, *, query_only: bool = False) -> sqlite3.Connection:
        raise NotImplementedError

    # -- reading: own connections, never the writer's -----------------------------------

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            raise JournalClosedError(f"journal {self._path} is closed")
        return self._reader

    def find_transaction(self, terminal_id: str, transaction_id: str) -> ScreenedRecord | None:
        """The committed record for a key: a retry after restart gets the answer first given.

        An id reused on a later day is another transaction; the newest one is returned."""
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
