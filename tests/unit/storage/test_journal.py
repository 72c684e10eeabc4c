"""The journal against real SQLite files: ordering, group commit, retries, close, retention."""

from __future__ import annotations

import math
import sqlite3
import stat
import struct
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from fraudscreen.storage.journal import (
    SCHEMA_VERSION,
    Journal,
    JournalBackpressureError,
    JournalClosedError,
    JournalOpenError,
    JournalSettings,
    OutcomeRecord,
    ScreenedRecord,
)

T0 = 1_700_000_000
DAY = 86_400


def _bits(value: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", value))[0])


# NaN with a payload, a negative NaN, infinities and a negative zero: all must keep their bits.
SPECIAL_FEATURES: tuple[float, ...] = (
    math.nan,
    _bits(0x7FF8_0000_DEAD_BEEF),
    _bits(0xFFF8_0000_0000_0001),
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    1.25,
    -3.5e-300,
)


def packed(features: tuple[float, ...]) -> bytes:
    return struct.pack(f"<{len(features)}d", *features)


def record(index: int, *, terminal: str = "T1", **overrides: Any) -> ScreenedRecord:
    base = ScreenedRecord(
        terminal_id=terminal,
        transaction_id=f"tx-{index}",
        card_token=f"tok-{index % 7}",
        timestamp=T0 + index,
        amount_minor=1_000 + index,
        currency="EUR",
        mcc=5411,
        entry_mode=5,
        local_weekday=index % 7,
        local_hour=index % 24,
        features=(float(index), 0.5, -1.0),
        fingerprint=f"fp-{index}",
        decision="APPROVE",
        score=0.01 * (index % 100),
        reasons_json="[]",
        model_version="m-1",
        stand_in=False,
        received_at=T0 + index + 0.123456789,
    )
    return base._replace(**overrides)


def settings(tmp_path: Path, **overrides: Any) -> JournalSettings:
    return JournalSettings(path=tmp_path / "journal.db", **overrides)


def query(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read through a fresh connection: what another process would see."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(settings(tmp_path))
    journal.start()
    yield journal
    journal.close()


def test_concurrent_submits_are_committed_once_in_order_with_exact_features(
    journal: Journal,
) -> None:
    threads, per_thread = 4, 500
    barrier = threading.Barrier(threads)

    def produce(terminal: str) -> None:
        barrier.wait()
        for index in range(per_thread):
            journal.submit(record(index, terminal=terminal, features=SPECIAL_FEATURES))

    workers = [threading.Thread(target=produce, args=(f"T{n}",)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    journal.flush()

    rows = list(journal.iter_transactions(0))
    assert len(rows) == threads * per_thread
    assert len({(r.terminal_id, r.transaction_id) for r in rows}) == threads * per_thread
    for n in range(threads):
        order = [r.transaction_id for r in rows if r.terminal_id == f"T{n}"]
        assert order == [f"tx-{index}" for index in range(per_thread)]
    assert all(packed(r.features) == packed(SPECIAL_FEATURES) for r in rows)
    assert journal.committed == threads * per_thread
    assert journal.queue_depth == 0


def test_duplicate_key_is_stored_once_and_first_wins(journal: Journal) -> None:
    journal.submit(record(1, decision="DECLINE"))
    journal.submit(record(1, decision="APPROVE"))
    journal.flush()
    assert query(journal.settings.path, "SELECT decision FROM transactions") == [("DECLINE",)]
    found = journal.find_transaction("T1", "tx-1")
    assert found is not None
    assert found.decision == "DECLINE"
    assert journal.find_transaction("T1", "tx-2") is None


def test_group_commit_batches_many_records(journal: Journal) -> None:
    for index in range(2_000):
        journal.submit(record(index))
    journal.flush()
    assert journal.committed == 2_000
    assert 0 < journal.commits < 100, journal.commits
    assert query(journal.settings.path, "SELECT COUNT(*) FROM transactions") == [(2_000,)]


def test_record_outcome_is_committed_before_returning(journal: Journal) -> None:
    path = journal.settings.path
    journal.submit(record(1))
    journal.submit(record(2, timestamp=T0 - 10 * DAY))
    journal.flush()

    journal.record_outcome(OutcomeRecord("T1", "tx-1", "CHARGEBACK", True, T0 + 100))
    assert query(path, "SELECT outcome FROM outcomes") == [("CHARGEBACK",)]
    journal.record_outcome(OutcomeRecord("T1", "tx-1", "CONFIRMED_GENUINE", False, T0 + 50))
    journal.record_outcome(OutcomeRecord("T1", "tx-2", "CONFIRMED_FRAUD", True, T0 + 60))
    journal.record_outcome(OutcomeRecord("T9", "unknown", "CHARGEBACK", True, T0 + 70))
    assert query(path, "SELECT COUNT(*) FROM outcomes") == [(4,)]

    latest = journal.latest_outcomes()
    assert latest[("T1", "tx-1")] == OutcomeRecord(
        "T1", "tx-1", "CONFIRMED_GENUINE", False, T0 + 50
    )  # newest by arrival, not by reported_at
    assert set(latest) == {("T1", "tx-1"), ("T1", "tx-2"), ("T9", "unknown")}
    assert set(journal.latest_outcomes(T0 - DAY)) == {("T1", "tx-1")}


def test_concurrent_outcomes_are_all_committed(journal: Journal) -> None:
    callers = [
        threading.Thread(
            target=journal.record_outcome,
            args=(OutcomeRecord("T1", f"tx-{n}", "CHARGEBACK", True, T0),),
        )
        for n in range(20)
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(journal.latest_outcomes()) == 20
    assert journal.committed == 20


def test_close_drains_the_queue_and_refuses_more(tmp_path: Path) -> None:
    journal = Journal(settings(tmp_path, flush_interval=0.05))
    journal.start()
    for index in range(300):
        journal.submit(record(index))
    journal.close()
    journal.close()  # idempotent

    assert query(tmp_path / "journal.db", "SELECT COUNT(*) FROM transactions") == [(300,)]
    with pytest.raises(JournalClosedError):
        journal.submit(record(301))
    with pytest.raises(JournalClosedError):
        journal.flush()
    with pytest.raises(JournalClosedError):
        journal.latest_timestamp()
    with pytest.raises(JournalClosedError):
        journal.iter_transactions(0)
    assert not any(t.name == "journal-writer" and t.is_alive() for t in threading.enumerate())


def test_reopened_journal_replays_in_arrival_order_with_all_fields(tmp_path: Path) -> None:
    submitted = [
        record(5),
        record(3, mcc=None, entry_mode=None, stand_in=True, score=None, decision="REVIEW"),
        record(9, terminal="T2", features=(), reasons_json='[{"f": "amount"}]'),
        record(4, timestamp=T0 - DAY),  # before `since`: not replayed
        record(1, features=tuple(float(n) / 3 for n in range(40)), received_at=1e9 + 1e-6),
    ]
    first = Journal(settings(tmp_path))
    first.start()
    for item in submitted:
        first.submit(item)
    first.close()

    reopened = Journal(settings(tmp_path))
    try:
        assert reopened.latest_timestamp() == T0 + 9
        replay = reopened.iter_transactions(T0)
        assert next(replay) == submitted[0]
        assert list(replay) == [submitted[1], submitted[2], submitted[4]]
        assert list(reopened.iter_transactions(T0 + 100)) == []
        # a period's range: since inclusive, until exclusive, still in arrival order
        assert list(reopened.iter_transactions(T0 - DAY, T0 + 3)) == [submitted[3], submitted[4]]
        assert reopened.earliest_timestamp() == T0 - DAY
        partial = reopened.iter_transactions(0)
        next(partial)
        assert isinstance(partial, Generator)
        partial.close()  # closes its own connection
    finally:
        reopened.close()


def test_purge_applies_retention_and_returns_count(journal: Journal) -> None:
    now = T0 + 200 * DAY
    journal.submit(record(1, timestamp=now - 100 * DAY))
    journal.submit(record(2, timestamp=now - 61 * DAY))
    journal.submit(record(3, timestamp=now - 59 * DAY))
    journal.submit(record(4, timestamp=now))
    journal.flush()
    old, recent = now - 70 * DAY, now - DAY
    journal.record_outcome(OutcomeRecord("T1", "tx-1", "CHARGEBACK", True, old))  # gone
    journal.record_outcome(OutcomeRecord("T1", "tx-2", "CHARGEBACK", True, recent))  # recent
    journal.record_outcome(OutcomeRecord("T1", "tx-3", "CHARGEBACK", True, old))  # tx kept
    journal.record_outcome(OutcomeRecord("T8", "lost", "CHARGEBACK", True, old))  # gone
    journal.record_outcome(OutcomeRecord("T8", "new", "CHARGEBACK", True, recent))  # recent

    assert journal.purge(now) == 2 + 2
    remaining = [r.transaction_id for r in journal.iter_transactions(0)]
    assert remaining == ["tx-3", "tx-4"]
    assert set(journal.latest_outcomes()) == {("T1", "tx-2"), ("T1", "tx-3"), ("T8", "new")}
    assert journal.purge() == 0  # default "now" is the newest transaction: nothing more is old
    assert journal.purge(now + 2 * DAY) == 2  # tx-3 ages out, and with it its old outcome
    assert set(journal.latest_outcomes()) == {("T1", "tx-2"), ("T8", "new")}


def test_full_queue_raises_backpressure_and_close_still_drains(tmp_path: Path) -> None:
    journal = Journal(settings(tmp_path, max_queue=3))
    for index in range(3):
        assert not journal.queue_full
        journal.submit(record(index))
    assert journal.queue_full
    with pytest.raises(JournalBackpressureError, match="UNAVAILABLE"):
        journal.submit(record(3))
    assert journal.queue_depth == 3
    with pytest.raises(RuntimeError, match="not started"):
        journal.flush()
    journal.close()  # never started: close starts the writer just to drain
    assert query(tmp_path / "journal.db", "SELECT COUNT(*) FROM transactions") == [(3,)]


def _locked(path: Path) -> sqlite3.Connection:
    """Another connection holding the write lock, as a stuck process or a full disk would."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


def test_failed_writes_are_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    journal = Journal(settings(tmp_path), _busy_timeout=0.01)
    journal.start()
    try:
        with capture_logs() as logs:
            other = _locked(tmp_path / "journal.db")
            for index in range(50):
                journal.submit(record(index))
            wait_until(lambda: journal.write_errors >= 1)
            with pytest.raises(TimeoutError, match="stays queued"):
                journal.record_outcome(
                    OutcomeRecord("T1", "tx-1", "CHARGEBACK", True, T0), timeout=0.1
                )
            wait_until(lambda: journal.write_errors >= 2)
            other.execute("ROLLBACK")
            other.close()
            journal.flush()
        assert journal.committed == 51
        assert query(tmp_path / "journal.db", "SELECT COUNT(*) FROM transactions") == [(50,)]
        assert set(journal.latest_outcomes()) == {("T1", "tx-1")}
    finally:
        journal.close()

    failures = [entry for entry in logs if entry["event"] == "journal.write_failed"]
    assert len(failures) == journal.write_errors >= 2
    assert failures[0]["batch_size"] == 50
    assert "disk space" in failures[0]["action"]
    assert failures[1]["retry_in"] == 2 * failures[0]["retry_in"]
    assert any(entry["event"] == "journal.write_recovered" for entry in logs)
    assert "tok-" not in repr(logs)  # never a token, never record contents


def test_close_gives_up_after_its_timeout_and_counts_what_is_unwritten(tmp_path: Path) -> None:
    journal = Journal(settings(tmp_path), _busy_timeout=0.01)
    journal.start()
    other = _locked(tmp_path / "journal.db")
    try:
        with capture_logs() as logs:
            for index in range(10):
                journal.submit(record(index))
            wait_until(lambda: journal.write_errors >= 1)
            started = time.monotonic()
            journal.close(timeout=0.2)
            assert time.monotonic() - started < 2.0
            writer = journal._writer.thread
            writer.join(5.0)
            assert not writer.is_alive()
    finally:
        other.execute("ROLLBACK")
        other.close()
    unwritten = [entry for entry in logs if entry["event"] == "journal.unwritten"]
    assert [entry["count"] for entry in unwritten] == [10]
    assert "tok-" not in repr(logs)


def test_writer_rejects_unstorable_record_loudly_and_keeps_the_rest(journal: Journal) -> None:
    with capture_logs() as logs:
        journal.submit(record(1))
        journal.submit(record(2, received_at=math.nan))
        journal.submit(record(3))
        journal.flush()
    assert [r.transaction_id for r in journal.iter_transactions(0)] == ["tx-1", "tx-3"]
    assert journal.rejected == 1
    rejected = [entry for entry in logs if entry["event"] == "journal.record_rejected"]
    assert len(rejected) == 1
    assert "received_at" in rejected[0]["reason"]


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_file_is_private_and_pragmas_are_applied(
    tmp_path: Path, durability: Any, synchronous: int
) -> None:
    path = tmp_path / "site" / "data" / "journal.db"
    journal = Journal(JournalSettings(path=path, durability=durability))
    try:
        assert journal._writer.conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
        journal.start()
        journal.submit(record(1))
        journal.flush()
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        wal = path.with_name(path.name + "-wal")
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600
        assert query(path, "PRAGMA journal_mode") == [("wal",)]
        assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        assert journal._writer.thread.name == "journal-writer"
        assert not journal._writer.thread.daemon
    finally:
        journal.close()


def test_existing_file_with_loose_permissions_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Journal(JournalSettings(path=path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalOpenError, match=rf"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        Journal(JournalSettings(path=path))


def test_other_modules_tables_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE outbox (batch_id TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO outbox VALUES ('b1')")
    conn.commit()
    conn.close()
    for _ in range(2):  # create, then reopen
        Journal(JournalSettings(path=path)).close()
    assert query(path, "SELECT batch_id FROM outbox") == [("b1",)]
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    path.write_bytes(b"definitely not a database" * 100)
    with pytest.raises(JournalOpenError, match="not a usable SQLite database"):
        Journal(JournalSettings(path=path))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("durability", "fast"),
        ("batch_max", 0),
        ("flush_interval", -1.0),
        ("flush_interval", math.nan),
        ("max_queue", 0),
        ("retention_seconds", 0),
    ],
)
def test_settings_are_validated(tmp_path: Path, name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        JournalSettings(path=tmp_path / "journal.db", **{name: value})  # type: ignore[arg-type]
