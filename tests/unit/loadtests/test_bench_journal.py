"""bench_journal on a tiny journal: both indexes measured, the table printed, bad sizes refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from loadtests import bench_journal


def test_a_small_run_prints_both_indexes_with_the_baseline_at_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_journal.main(["--days", "2", "--per-day", "200", "--insert", "300"]) == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert table[0] == "| key index | CPU µs per row | vs baseline |"
    assert [line.split(" | ")[0] for line in table[1:]] == [
        f"| {name}" for name in bench_journal.VARIANTS
    ]
    assert table[-1].endswith("| 1.00× |")


def test_the_filled_journal_has_the_index_it_claims(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    bench_journal.fill(path, bench_journal.VERSION_1_KEY, days=1, per_day=10, terminals=3)
    conn = sqlite3.connect(path)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        count = conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0]
    finally:
        conn.close()
    assert "v1_key" in names
    assert "transactions_key" not in names
    assert count == 10


def test_a_size_below_one_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_journal.main(["--insert", "0"])
    assert exit_.value.code == 2
    assert "--insert must be at least 1" in capsys.readouterr().err
