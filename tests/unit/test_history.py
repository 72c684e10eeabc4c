"""A malformed history file is rejected with the row and column to fix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fraudscreen import history
from fraudscreen.history import HistoryError, load_history

GOOD = {
    "TRANSACTION_ID": [1, 2, 3, 4],
    "TX_DATETIME": [
        "2018-04-01 10:00:00",
        "2018-04-01 09:00:00",
        "2018-04-02 00:00:01",
        "2018-04-03 12:30:00",
    ],
    "CUSTOMER_ID": [10, 11, 10, 12],
    "TERMINAL_ID": [5, 5, 6, 7],
    "TX_AMOUNT": [12.5, 3.99, 250.0, 0.0],
    "TX_FRAUD": [0, 0, 1, 0],
}


def write_csv(tmp_path: Path, **overrides: list[object]) -> Path:
    data = {**GOOD, **overrides}
    path = tmp_path / "history.csv"
    pd.DataFrame(data).to_csv(path, index=False)
    return path


def test_handbook_columns_are_enough(tmp_path: Path) -> None:
    frame = load_history(write_csv(tmp_path))
    assert frame[history.TRANSACTION_ID].tolist() == [2, 1, 3, 4]  # sorted by time
    assert frame[history.AMOUNT_MINOR].tolist() == [399, 1250, 25000, 0]
    assert (frame[history.MINOR_PER_MAJOR] == 100).all()
    assert history.ENTRY_MODE not in frame


def test_parquet_with_pos_columns(tmp_path: Path) -> None:
    data = {
        **GOOD,
        "ENTRY_MODE": ["Chip", "contactless", None, "manual"],
        "MCC": [5411, 5411, None, 5812],
        "CURRENCY": ["JPY"] * 4,
        "AMOUNT_MINOR": [13, 4, 250, 0],
    }
    path = tmp_path / "history.parquet"
    pd.DataFrame(data).to_parquet(path)
    frame = load_history(path)
    assert frame[history.ENTRY_MODE].tolist()[:2] == ["contactless", "chip"]
    assert (frame[history.MINOR_PER_MAJOR] == 1).all()
    assert frame[history.AMOUNT_MINOR].tolist() == [4, 13, 250, 0]


@pytest.mark.parametrize(
    ("overrides", "row", "column", "words"),
    [
        ({"TX_AMOUNT": [1.0, "abc", 2.0, 3.0]}, 2, "TX_AMOUNT", "not a number"),
        ({"TX_AMOUNT": [1.0, 2.0, -5.0, 3.0]}, 3, "TX_AMOUNT", "below the minimum"),
        ({"TX_FRAUD": [0, 1, 2, 0]}, 3, "TX_FRAUD", "2 is not one of [0, 1]"),
        (
            {"TX_DATETIME": ["2018-04-01", "yesterday", "2018-04-02", "2018-04-03"]},
            2,
            "TX_DATETIME",
            "not a date-time",
        ),
        ({"TRANSACTION_ID": [1, 2, 2, 4]}, 3, "TRANSACTION_ID", "appears twice"),
        ({"CUSTOMER_ID": [1, None, 3, 4]}, 2, "CUSTOMER_ID", "is empty"),
        (
            {"ENTRY_MODE": ["chip", "chip", "chip", "telepathy"]},
            4,
            "ENTRY_MODE",
            "not an entry mode",
        ),
        ({"MCC": [5411, 123456, 5411, 5411]}, 2, "MCC", "above the maximum"),
        ({"CURRENCY": ["EUR", "EUR", "euro", "EUR"]}, 3, "CURRENCY", "ISO 4217"),
        ({"AMOUNT_MINOR": [1, 2, 3.5, 4]}, 3, "AMOUNT_MINOR", "whole number"),
    ],
)
def test_bad_cell_is_located(
    tmp_path: Path, overrides: dict[str, list[object]], row: int, column: str, words: str
) -> None:
    with pytest.raises(HistoryError) as caught:
        load_history(write_csv(tmp_path, **overrides))
    assert caught.value.row == row
    assert caught.value.column == column
    assert words in str(caught.value)
    assert f"row {row}" in str(caught.value)
    assert column in str(caught.value)
    assert "np." not in str(caught.value)  # the value as the file has it, not its NumPy repr


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    pd.DataFrame({k: v for k, v in GOOD.items() if k != "TX_FRAUD"}).to_csv(path, index=False)
    with pytest.raises(HistoryError, match=r"missing required column.*TX_FRAUD"):
        load_history(path)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("h.json", "{}", "unknown format"),
        ("h.csv", None, "file not found"),
        ("h.parquet", "not parquet", "cannot be read"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: str | None, words: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(HistoryError, match=words):
        load_history(path)
