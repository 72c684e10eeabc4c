"""The journal writer's CPU per row on a journal as full as a busy site keeps it.

    python -m loadtests.bench_journal [--days 60] [--per-day 10000] [--insert 30000]

Each screened transaction costs the writer thread one row. How much depends on the size
of the journal, because the key index is as large as the retention: keyed on (terminal,
transaction id) alone, every new row lands on a random page of it, and each commit rewrites
those pages into the WAL. The shipped index leads with the transaction's day, so the
next day's rows share a few pages. This compares the two on the same rows: it fills a
journal with `--days` × `--per-day` transactions (the baseline gets the version-1 key
index in place of the shipped one), then times inserting the next `--insert` rows in
commits of the writer's default size (`batch_max`, 512) with the writer's statement and
pragmas, `--repeats` times from a copy of the filled file. Prints medians (process CPU per
row) and the ratio. No timed assertion anywhere; compare within one run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fraudscreen.records import ScreenedRecord
from fraudscreen.storage.journal import JournalSettings
from fraudscreen.storage.journal.codec import _encode_record
from fraudscreen.storage.journal.schema import _INSERT_TX, _SCHEMA
from loadtests.bench.plan import progress

DAY = 86_400
START = 1_780_000_000 // DAY * DAY
# what the key index looked like in journal schema version 1 (same B-tree as its UNIQUE)
VERSION_1_KEY = (
    "DROP INDEX transactions_key",
    "CREATE UNIQUE INDEX v1_key ON transactions (terminal_id, transaction_id)",
)
VARIANTS: dict[str, tuple[str, ...]] = {
    "shipped: day, terminal, transaction id": (),
    "version 1: terminal, transaction id (baseline)": VERSION_1_KEY,
}


def rows(first: int, count: int, per_day: int, terminals: int) -> list[tuple[object, ...]]:
    """Encoded rows of transactions first..first+count, `per_day` a day, in time order:
    terminals pick their own ids (random hex, as many terminals do), cards repeat."""
    rng = random.Random(first)
    features = tuple(rng.random() for _ in range(18))
    out = []
    for index in range(first, first + count):
        record = ScreenedRecord(
            f"T{rng.randrange(terminals):04d}",
            f"{rng.getrandbits(64):016x}",
            f"{rng.getrandbits(256):064x}",
            START + index * DAY // per_day,
            rng.randrange(100, 50_000),
            "EUR",
            5411,
            2,
            index % 7,
            index % 24,
            features,
            f"{rng.getrandbits(96):024x}",
            "APPROVE",
            rng.random(),
            "[]",
            "default-20180801-21c0df54",
            False,
            float(START + index * DAY // per_day),
        )
        out.append(_encode_record(record))
    return out


def connect(path: Path) -> sqlite3.Connection:
    """As the journal writer connects: autocommit off, WAL, synchronous NORMAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def fill(path: Path, changes: Sequence[str], days: int, per_day: int, terminals: int) -> None:
    conn = connect(path)
    conn.executescript(_SCHEMA)
    for statement in changes:
        conn.execute(statement)
    for day in range(days):
        conn.execute("BEGIN")
        conn.executemany(_INSERT_TX, rows(day * per_day, per_day, per_day, terminals))
        conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def insert_cpu(path: Path, fresh: list[tuple[object, ...]], batch: int) -> float:
    """Process CPU seconds per row to insert `fresh` in commits of `batch` rows."""
    conn = connect(path)
    try:
        started = time.process_time()
        for at in range(0, len(fresh), batch):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(_INSERT_TX, fresh[at : at + batch])
            conn.execute("COMMIT")
        return (time.process_time() - started) / len(fresh)
    finally:
        conn.close()


def run(days: int, per_day: int, insert: int, repeats: int, terminals: int) -> int:
    batch = JournalSettings(path=Path("journal")).batch_max
    fresh = rows(days * per_day, insert, per_day, terminals)
    medians: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        for name, changes in VARIANTS.items():
            filled = Path(tmp) / "filled.sqlite3"
            progress(f"{name}: filling {days} days x {per_day:,} rows")
            fill(filled, changes, days, per_day, terminals)
            samples = []
            for repeat in range(repeats):
                trial = Path(tmp) / "trial.sqlite3"
                shutil.copyfile(filled, trial)
                samples.append(insert_cpu(trial, fresh, batch))
                trial.unlink()
                trial.with_name(trial.name + "-wal").unlink(missing_ok=True)
                trial.with_name(trial.name + "-shm").unlink(missing_ok=True)
                progress(f"{name}: run {repeat + 1}/{repeats} {samples[-1] * 1e6:.1f} µs/row")
            medians[name] = statistics.median(samples)
            filled.unlink()
    baseline = medians[list(VARIANTS)[-1]]
    print(
        f"\nJournal writer, {insert:,} new rows onto {days * per_day:,} ({days} days x "
        f"{per_day:,}, {terminals:,} terminals), commits of {batch}, median of {repeats}:\n"
    )
    print("| key index | CPU µs per row | vs baseline |")
    print("|---|---:|---:|")
    for name, seconds in medians.items():
        print(f"| {name} | {seconds * 1e6:.1f} | {baseline / seconds:.2f}× |")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_journal",
        description="Journal writer CPU per row on a full journal: shipped vs version-1 index.",
    )
    parser.add_argument("--days", type=int, default=60, help="days in the journal (60)")
    parser.add_argument("--per-day", type=int, default=10_000, help="rows a day (10,000)")
    parser.add_argument("--insert", type=int, default=30_000, help="rows timed (30,000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs each (3)")
    parser.add_argument("--terminals", type=int, default=200, help="terminals (200)")
    args = parser.parse_args(argv)
    for name in ("days", "per_day", "insert", "repeats", "terminals"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return run(args.days, args.per_day, args.insert, args.repeats, args.terminals)


if __name__ == "__main__":
    sys.exit(main())
