"""`fraudscreen evaluate --privacy` through the CLI's entry point, end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import structlog

from fraudscreen.cli import main
from fraudscreen.privacy.evaluation_report import PLOT_FILE
from tests.unit.privacy.test_privacy_evaluation import PNG_MAGIC


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """main() points structlog at this test's captured stderr; later tests must not log
    into that closed file."""
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


@pytest.mark.usefixtures("restore_logging")
def test_cli_privacy_mode(
    small_history: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "history.parquet"
    small_history.to_parquet(path)
    code = main(
        [
            "evaluate", "--privacy", str(path), "--sites", "2", "--epsilons", "4",
            "--train-end", "2018-05-20", "--train-days", "7", "--period-days", "7",
            "--repetitions", "1", "--out", str(tmp_path / "report"), "--seed", "5",
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "| DP known domain, ε = 4 |" in out  # both mechanisms by default
    assert "| DP threshold, ε = 4" in out
    assert (tmp_path / "report" / PLOT_FILE).read_bytes().startswith(PNG_MAGIC)
    assert main(["evaluate", str(path)]) == 2  # the bundle mode still needs both arguments
