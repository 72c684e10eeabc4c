"""Reading analysts' transaction history (CSV or Parquet) into one validated table.

A bank's own export looks like the Fraud Detection Handbook's table: the six required
columns below. The point-of-sale columns are optional; where they are absent the features
that need them are missing values, which the model handles.

Every schema problem is reported with the row (1-based data row, header not counted) and
the column, because the analyst has to find it in a file of millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraudscreen.currency import minor_per_major
from fraudscreen.transaction import EntryMode

TRANSACTION_ID = "TRANSACTION_ID"
TX_DATETIME = "TX_DATETIME"
CUSTOMER_ID = "CUSTOMER_ID"
TERMINAL_ID = "TERMINAL_ID"
TX_AMOUNT = "TX_AMOUNT"
TX_FRAUD = "TX_FRAUD"

TX_FRAUD_SCENARIO = "TX_FRAUD_SCENARIO"
CARD_PAN = "CARD_PAN"
MCC = "MCC"
ENTRY_MODE = "ENTRY_MODE"
CURRENCY = "CURRENCY"
AMOUNT_MINOR = "AMOUNT_MINOR"
SITE_ID = "SITE_ID"

REQUIRED_COLUMNS: tuple[str, ...] = (
    TRANSACTION_ID,
    TX_DATETIME,
    CUSTOMER_ID,
    TERMINAL_ID,
    TX_AMOUNT,
    TX_FRAUD,
)

MINOR_PER_MAJOR = "MINOR_PER_MAJOR"
"""Added by `load_history`: 100 for EUR, so amounts stay exact integers."""

DEFAULT_CURRENCY = "EUR"


class HistoryError(ValueError):
    """A history file that cannot be used, located by row and column where possible."""

    def __init__(
        self, path: Path, message: str, *, row: int | None = None, column: str | None = None
    ) -> None:
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column}")
        location = f" ({', '.join(where)})" if where else ""
        super().__init__(f"{path}{location}: {message}")
        self.path = path
        self.row = row
        self.column = column


@dataclass(frozen=True)
class _Reader:
    path: Path

    def read(self) -> pd.DataFrame:
        name = self.path.name.lower()
        if not self.path.exists():
            raise HistoryError(self.path, "file not found; check the path")
        try:
            if name.endswith(".parquet"):
                return pd.read_parquet(self.path)
            if name.endswith((".csv", ".csv.gz")):
                return pd.read_csv(self.path, low_memory=False)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise HistoryError(self.path, f"cannot be read: {exc}") from exc
        raise HistoryError(self.path, "unknown format; use .csv, .csv.gz or .parquet")


def load_history(path: Path, *, currency: str = DEFAULT_CURRENCY) -> pd.DataFrame:
    """Read and validate a history file; returns it sorted by time (stable).

    `currency` applies to rows without a CURRENCY column; amounts become AMOUNT_MINOR
    (from that column if present, else rounded from TX_AMOUNT).
    """
    frame = _Reader(path).read()
    return validate_history(frame, path=path, currency=currency)


def validate_history(
    frame: pd.DataFrame, *, path: Path = Path("<table>"), currency: str = DEFAULT_CURRENCY
) -> pd.DataFrame:
    """Check every column the features read; raise HistoryError at the first bad cell."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise HistoryError(
            path,
            f"missing required column(s) {', '.join(missing)}; "
            f"a history needs {', '.join(REQUIRED_COLUMNS)}",
        )
    out = pd.DataFrame(index=frame.index)
    check = _ColumnCheck(frame, path)
    out[TRANSACTION_ID] = check.present(TRANSACTION_ID)
    check.unique(TRANSACTION_ID)
    out[TX_DATETIME] = check.datetimes(TX_DATETIME)
    out[CUSTOMER_ID] = check.present(CUSTOMER_ID)
    out[TERMINAL_ID] = check.present(TERMINAL_ID)
    out[TX_AMOUNT] = check.numbers(TX_AMOUNT, minimum=0.0)
    out[TX_FRAUD] = check.numbers(TX_FRAUD, allowed={0, 1}).astype(np.int8)
    if TX_FRAUD_SCENARIO in frame:
        out[TX_FRAUD_SCENARIO] = check.numbers(TX_FRAUD_SCENARIO, minimum=0).astype(np.int8)
    if CARD_PAN in frame:
        out[CARD_PAN] = check.present(CARD_PAN).astype(str)
    if MCC in frame:
        out[MCC] = check.numbers(MCC, minimum=0, maximum=9999, nullable=True).astype("Int64")
    if ENTRY_MODE in frame:
        out[ENTRY_MODE] = check.entry_modes(ENTRY_MODE)
    if SITE_ID in frame:
        out[SITE_ID] = check.numbers(SITE_ID, minimum=0, integral=True).astype(np.int64)
    out[CURRENCY] = check.currencies(CURRENCY) if CURRENCY in frame else currency
    try:
        scales = {code: minor_per_major(code) for code in out[CURRENCY].unique()}
    except ValueError as exc:
        raise HistoryError(path, str(exc), column=CURRENCY) from exc
    out[MINOR_PER_MAJOR] = out[CURRENCY].map(scales).astype(np.int64)
    if AMOUNT_MINOR in frame:
        out[AMOUNT_MINOR] = check.numbers(AMOUNT_MINOR, minimum=0, integral=True).astype(np.int64)
    else:
        out[AMOUNT_MINOR] = np.rint(out[TX_AMOUNT] * out[MINOR_PER_MAJOR]).astype(np.int64)
    return out.sort_values(TX_DATETIME, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class _ColumnCheck:
    frame: pd.DataFrame
    path: Path

    def _fail(self, column: str, mask: pd.Series | np.ndarray, message: str) -> None:
        bad = np.flatnonzero(np.asarray(mask))
        if len(bad):
            first = int(bad[0])
            value = self.frame[column].iloc[first]
            if isinstance(value, np.generic):  # 2, not np.int64(2)
                value = value.item()
            raise HistoryError(self.path, f"{value!r} {message}", row=first + 1, column=column)

    def present(self, column: str) -> pd.Series:
        values = self.frame[column]
        self._fail(column, values.isna(), "is empty; every row needs a value")
        return values

    def unique(self, column: str) -> None:
        self._fail(column, self.frame[column].duplicated(), "appears twice; ids must be unique")

    def datetimes(self, column: str) -> pd.Series:
        values = self.present(column)
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
        self._fail(column, parsed.isna(), "is not a date-time (use YYYY-MM-DD HH:MM:SS)")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        return parsed.astype("datetime64[s]")

    def numbers(
        self,
        column: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        allowed: set[int] | None = None,
        integral: bool = False,
        nullable: bool = False,
    ) -> pd.Series:
        raw = self.frame[column]
        if not nullable:
            self.present(column)
        values = pd.to_numeric(raw, errors="coerce")
        self._fail(column, values.isna() & raw.notna(), "is not a number")
        self._fail(column, ~np.isfinite(values.fillna(0)), "is not a finite number")
        if allowed is not None:
            self._fail(
                column, values.notna() & ~values.isin(allowed), f"is not one of {sorted(allowed)}"
            )
        if minimum is not None:
            self._fail(column, values < minimum, f"is below the minimum {minimum}")
        if maximum is not None:
            self._fail(column, values > maximum, f"is above the maximum {maximum}")
        if integral or allowed is not None:
            self._fail(
                column, values.notna() & (values != np.floor(values)), "is not a whole number"
            )
        return values

    def entry_modes(self, column: str) -> pd.Series:
        names = {mode.name.lower() for mode in EntryMode}
        values = self.frame[column].astype("string").str.strip().str.lower()
        self._fail(
            column,
            values.notna() & ~values.isin(names),
            f"is not an entry mode ({', '.join(sorted(names))})",
        )
        return values

    def currencies(self, column: str) -> pd.Series:
        values = self.present(column).astype(str).str.strip()
        self._fail(column, ~values.str.fullmatch(r"[A-Z]{3}"), "is not an ISO 4217 currency code")
        return values
