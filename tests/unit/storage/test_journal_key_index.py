"""The journal's key index (day first, so the writer appends) and the move from version 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from fraudscreen.storage.journal import SCHEMA_VERSION, Journal, JournalOpenError, OutcomeRecord
from fraudscreen.storage.journal.codec import _encode_record
from fraudscreen.storage.journal.schema import (
    _FIND_TX,
    _INSERT_TX,
    _LATEST_OUTCOMES_SINCE,
    _PURGE_OUTCOMES,
)
from tests.unit.storage.test_journal import DAY, T0, query, record, settings

# Version 1 as it shipped: the key in the table's own UNIQUE constraint.
VERSION_1 = """
CREATE TABLE transactions (
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
CREATE INDEX transactions_timestamp ON transactions (timestamp);
CREATE TABLE outcomes (
    seq INTEGER PRIMARY KEY,
    terminal_id TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    is_fraud INTEGER NOT NULL,
    reported_at INTEGER NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE INDEX outcomes_key ON outcomes (terminal_id, transaction_id);
PRAGMA user_version = 1;
"""


def version_1_file(path: Path, days: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(VERSION_1)
    conn.executemany(
        _INSERT_TX, [_encode_record(record(i, timestamp=T0 + i * DAY)) for i in range(days)]
    )
    conn.execute(
        "INSERT INTO outcomes (terminal_id, transaction_id, outcome, is_fraud, reported_at, "
        "recorded_at) VALUES ('T1', 'tx-1', 'CHARGEBACK', 1, ?, ?)",
        (T0 + 2 * DAY, T0 + 2 * DAY),
    )
    conn.close()


def test_a_version_1_journal_keeps_every_row_and_loses_the_random_index(tmp_path: Path) -> None:
    path = settings(tmp_path).path
    version_1_file(path, days=5)
    before = query(path, "SELECT * FROM transactions ORDER BY seq")
    with capture_logs() as logs:
        journal = Journal(settings(tmp_path))
    try:
        journal.start()
        assert query(path, "SELECT * FROM transactions ORDER BY seq") == before
        assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        indexes = {name for (name,) in query(path, "SELECT name FROM sqlite_master")}
        assert "sqlite_autoindex_transactions_1" not in indexes
        assert {"transactions_key", "transactions_timestamp", "outcomes_key"} <= indexes
        leading = query(path, "PRAGMA index_xinfo(transactions_key)")[0]
        assert leading[1] == -2  # an expression, the day, leads: new rows share its last pages
        found = journal.find_transaction("T1", "tx-3")
        assert found is not None
        assert found.timestamp == T0 + 3 * DAY
        assert journal.latest_outcomes(T0)[("T1", "tx-1")].outcome == "CHARGEBACK"
        journal.submit(record(3, timestamp=T0 + 3 * DAY, decision="DECLINE"))  # a retry
        journal.submit(record(9))
        journal.flush()
        assert query(path, "SELECT COUNT(*) FROM transactions") == [(6,)]
    finally:
        journal.close()
    migrated = [e for e in logs if e["event"] == "journal.migrated"]
    assert [e["rows"] for e in migrated] == [5]
    Journal(settings(tmp_path)).close()  # reopening a version-2 file migrates nothing
    assert query(path, "SELECT COUNT(*) FROM transactions") == [(6,)]


def test_a_transaction_id_reused_on_another_day_is_another_transaction(tmp_path: Path) -> None:
    journal = Journal(settings(tmp_path))
    journal.start()
    try:
        journal.submit(record(1, decision="DECLINE"))
        journal.submit(record(1, decision="APPROVE"))  # same day: a retry, the first stays
        journal.submit(record(1, timestamp=T0 + 40 * DAY, decision="REVIEW"))
        journal.flush()
        decisions = query(journal.settings.path, "SELECT decision FROM transactions ORDER BY seq")
        assert decisions == [("DECLINE",), ("REVIEW",)]
        found = journal.find_transaction("T1", "tx-1")
        assert found is not None
        assert found.decision == "REVIEW"  # the newest use of the id
        assert journal.find_transaction("T1", "tx-2") is None
    finally:
        journal.close()


def test_an_empty_journal_finds_nothing(tmp_path: Path) -> None:
    journal = Journal(settings(tmp_path))
    journal.start()
    try:
        assert journal.find_transaction("T1", "tx-1") is None
        assert journal.latest_outcomes(T0) == {}
    finally:
        journal.close()


def test_outcomes_of_purged_transactions_go_and_the_rest_stay(tmp_path: Path) -> None:
    journal = Journal(settings(tmp_path, retention_seconds=10 * DAY))
    journal.start()
    try:
        for day in (0, 5, 20):
            journal.submit(record(day, timestamp=T0 + day * DAY))
        for day in (0, 5, 20):
            journal.record_outcome(
                OutcomeRecord("T1", f"tx-{day}", "CHARGEBACK", True, T0 + day * DAY)
            )
        journal.flush()
        assert journal.purge(T0 + 20 * DAY) == 2 + 2  # days 0 and 5, each with its outcome
        assert set(journal.latest_outcomes()) == {("T1", "tx-20")}
        assert set(journal.latest_outcomes(T0 + 20 * DAY)) == {("T1", "tx-20")}
        assert journal.latest_outcomes(T0 + 20 * DAY + 1) == {}
    finally:
        journal.close()


@pytest.mark.parametrize("analyzed", [False, True], ids=["fresh", "with statistics"])
@pytest.mark.parametrize(
    ("sql", "parameters"),
    [(_FIND_TX, ("T1", "tx-1")), (_LATEST_OUTCOMES_SINCE, (T0,)), (_PURGE_OUTCOMES, (T0,))],
    ids=["find", "latest outcomes since", "purge outcomes"],
)
def test_key_lookups_probe_the_index_day_by_day_and_never_scan_the_table(
    tmp_path: Path, sql: str, parameters: tuple[object, ...], analyzed: bool
) -> None:
    """A scan of the transactions would cost a 60-day journal seconds per lookup; a Bloom
    filter on the days (SQLite 3.40, once sqlite_stat1 exists) lost matching rows."""
    if analyzed:
        _analyzed_journal(tmp_path, days=10)
    else:
        Journal(settings(tmp_path)).close()
    conn = sqlite3.connect(settings(tmp_path).path)
    try:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, parameters)]
    finally:
        conn.close()
    assert any("USING INDEX transactions_key" in step for step in plan), plan
    assert not any(step.startswith("SCAN t") or "BLOOM" in step for step in plan), plan


def test_outcomes_since_the_epoch_walk_only_the_journaled_days(tmp_path: Path) -> None:
    """`since` before the oldest row starts the walk at the oldest row's day, not at 1970."""
    journal = Journal(settings(tmp_path))
    journal.start()
    try:
        for day in (0, 3):
            journal.submit(record(day, timestamp=T0 + day * DAY))
        journal.record_outcome(OutcomeRecord("T1", "tx-3", "CHARGEBACK", True, T0 + 3 * DAY))
        journal.flush()
        assert set(journal.latest_outcomes(0)) == {("T1", "tx-3")}
    finally:
        journal.close()
    days = _LATEST_OUTCOMES_SINCE[: _LATEST_OUTCOMES_SINCE.index(" SELECT o.")]
    conn = sqlite3.connect(settings(tmp_path).path)
    try:
        walked = conn.execute(days + " SELECT COUNT(*) FROM day", (0,)).fetchone()[0]  # noqa: S608
    finally:
        conn.close()
    assert walked == 4  # days 0..3


def _analyzed_journal(tmp_path: Path, days: int = 40, per_day: int = 100) -> Path:
    """A populated file with planner statistics, as `PRAGMA optimize` or an operator leaves it."""
    Journal(settings(tmp_path)).close()
    path = settings(tmp_path).path
    rows = [
        record(day * per_day + i, terminal=f"T{i % 5}", timestamp=T0 + day * DAY + i)
        for day in range(days)
        for i in range(per_day)
    ]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executemany(_INSERT_TX, [_encode_record(row) for row in rows])
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return path


def test_key_lookups_stay_right_once_the_planner_has_statistics(tmp_path: Path) -> None:
    """SQLite 3.40 with sqlite_stat1 put a Bloom filter on the day join that lost matches."""
    _analyzed_journal(tmp_path)
    journal = Journal(settings(tmp_path, retention_seconds=30 * DAY))
    journal.start()
    try:
        found = journal.find_transaction("T2", "tx-1702")  # day 17
        assert found is not None
        assert found.timestamp == T0 + 17 * DAY + 2
        assert journal.find_transaction("T2", "tx-1703") is None  # that id is T3's
        journal.record_outcome(OutcomeRecord("T0", "tx-3500", "CHARGEBACK", True, T0))
        journal.record_outcome(OutcomeRecord("T1", "tx-101", "CHARGEBACK", True, T0 + DAY))
        journal.flush()
        assert set(journal.latest_outcomes(T0 + 30 * DAY)) == {("T0", "tx-3500")}
        # both outcomes were reported before the horizon; only tx-101 (day 1) is purged
        assert journal.purge(T0 + 39 * DAY) == 900 + 1
        assert set(journal.latest_outcomes()) == {("T0", "tx-3500")}
    finally:
        journal.close()


def test_a_move_that_fails_says_so_in_one_line_and_leaves_the_file_as_it_was(
    tmp_path: Path,
) -> None:
    path = settings(tmp_path).path
    version_1_file(path, days=5)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE transactions_v2 (left_over INTEGER)")  # a half-done manual move
    conn.close()
    with pytest.raises(JournalOpenError, match="could not move to schema version 2") as caught:
        Journal(settings(tmp_path))
    assert "free disk" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert query(path, "PRAGMA user_version") == [(1,)]
    assert query(path, "SELECT COUNT(*) FROM transactions") == [(5,)]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TABLE transactions_v2")
    conn.close()
    Journal(settings(tmp_path)).close()
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
