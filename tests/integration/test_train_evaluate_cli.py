"""`fraudscreen train` and `evaluate` end to end in child processes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.service_support import run_cli


def test_cli_train_and_evaluate_small(tmp_path: Path) -> None:
    data = tmp_path / "h.csv.gz"
    out = run_cli(
        "simulate",
        "--out",
        str(data),
        "--customers",
        "300",
        "--terminals",
        "600",
        "--days",
        "60",
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    bundle = tmp_path / "bundle"
    out = run_cli(
        "train",
        str(data),
        "--out",
        str(bundle),
        "--train-end",
        "2018-05-10",
        "--max-trees",
        "30",
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["metrics"]["test_period"] == ["2018-05-17", "2018-05-24"]
    out = run_cli("evaluate", str(bundle), str(data))
    assert out.returncode == 0, out.stderr
    assert "handbook: XGBoost | 0.862" in out.stdout
    assert f"fraudscreen ({manifest['model_version']})" in out.stdout


def test_cli_reports_a_bad_history_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("TRANSACTION_ID,TX_DATETIME\n1,2018-01-01\n")
    out = run_cli("train", str(bad), "--out", str(tmp_path / "b"))
    assert out.returncode == 2
    assert "missing required column" in out.stderr
    assert "Traceback" not in out.stderr
