"""`fraudscreen simulate --sites` end to end in a child process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import structlog

from fraudscreen.cli import main
from fraudscreen.fleet_simulate import (
    FleetConfig,
    simulate_fleet,
)
from fraudscreen.history import (
    SITE_ID,
    TERMINAL_ID,
    load_history,
)
from fraudscreen.simulate import (
    TX_TIME_DAYS,
)


def run_cli(argv: list[str]) -> int:
    """`fraudscreen ARGV` in-process, with its exit code (a usage error exits from argparse);
    main() points logging at this test's captured stderr, so put it back after (later tests
    would log into a closed file)."""
    saved = structlog.get_config()
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        structlog.configure(**saved)


def test_cli_writes_the_fleet_the_api_simulates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fleet.parquet"
    argv = ["simulate", "--sites", "3", "--days", "12", "--seed", "2", "--out", str(out)]
    assert run_cli([*argv, "--drift-start", "2018-04-08", "--quiet"]) == 0
    printed = capsys.readouterr().out
    expected = simulate_fleet(FleetConfig(sites=3, days=12, seed=2, drift_start=7), progress=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    assert f"wrote {len(expected):,} transactions at 3 sites" in printed
    assert "card testing (scenario 4) from 2018-04-08" in printed
    loaded = load_history(out)
    assert loaded[SITE_ID].nunique() == 3
    # A day index means the same day as its date.
    again = tmp_path / "again.parquet"
    assert run_cli([*argv[:-1], str(again), "--drift-start", "7", "--quiet"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(again), expected)


def test_cli_shop_size_flags(tmp_path: Path) -> None:
    out = tmp_path / "small-shops.csv"
    argv = ["simulate", "--sites", "2", "--days", "3", "--out", str(out), "--quiet"]
    assert run_cli([*argv, "--site-terminals", "4,6", "--site-volume", "100,200"]) == 0
    table = pd.read_csv(out)
    assert table.groupby(SITE_ID)[TERMINAL_ID].nunique().between(4, 6).all()
    assert table.groupby([SITE_ID, TX_TIME_DAYS]).size().between(60, 300).all()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--sites", "0"], "sites must be between 1 and 5000, got 0"),
        (["--sites", "5001"], "sites must be between 1 and 5000"),
        (["--sites", "abc"], "--sites: 'abc' is not a whole number"),
        (["--sites", "٣"], "is not a whole number"),
        (["--sites", "3", "--customers", "10"], "--customers: only without --sites"),
        (["--drift-start", "3"], "--drift-start: only with --sites N"),
        (["--site-volume", "1,2"], "--site-volume: only with --sites N"),
        (["--sites", "3", "--drift-start", "2018-03-31"], "drift_start must be a day of"),
        (["--sites", "3", "--drift-start", "79"], "0..78 (2018-04-01..2018-06-18), got 79"),
        (["--sites", "3", "--drift-start", "soon"], "--drift-start: 'soon' is neither a date"),
        (["--sites", "3", "--site-volume", "10"], "--site-volume: '10' is not LOW,HIGH"),
        (["--sites", "3", "--site-terminals", "9,3"], "needs 1 <= LOW <= HIGH"),
        (["--sites", "3", "--days", "0"], "--days: '0' must be at least 1"),
    ],
)
def test_cli_bad_fleet_arguments_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    out = tmp_path / "never.parquet"
    assert run_cli(["simulate", "--out", str(out), "--quiet", *flags]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("fraudscreen simulate: error: ")
    assert message in lines[0]
    assert not out.exists()
