"""`fraudscreen simulate --handbook-exact` end to end in a child process."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fraudscreen.history import validate_history
from tests.support.service_support import run_cli


def test_handbook_exact_refuses_a_seed(tmp_path: Path) -> None:
    out = tmp_path / "h.csv"
    done = run_cli("simulate", "--handbook-exact", "--seed", "3", "--out", str(out))
    assert done.returncode == 2
    assert "--handbook-exact uses the handbook's own seeds" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_handbook_exact_small_run_writes_a_valid_history(tmp_path: Path) -> None:
    out = tmp_path / "h.parquet"
    done = run_cli(
        "simulate", "--handbook-exact", "--customers", "50", "--days", "20", "--quiet",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    frame = validate_history(pd.read_parquet(out))
    assert len(frame) > 0
    assert frame["TX_DATETIME"].is_monotonic_increasing
    assert f"wrote {len(frame):,} transactions" in done.stdout
