"""`fraudscreen bench --front` from the command line: a bad leaf list is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

from tests.support.service_support import run_cli


def test_front_rejects_a_bad_leaf_list(tmp_path: Path) -> None:
    done = run_cli("bench", "--front", str(tmp_path / "h.parquet"), "--leaves", "7,x")
    assert done.returncode == 2
    assert "--leaves: '7,x' is not a comma-separated list of integers" in done.stderr
    assert "Traceback" not in done.stderr
