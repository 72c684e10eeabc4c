"""Vectorized features over a whole history table, for training and evaluation.

Each window is a pair of binary searches in a (key, time) ordering plus prefix sums, so
1.75M rows take seconds. The semantics are those of `features.definitions`; the online
path must give bit-identical values (tests/test_feature_parity.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraudscreen import history
from fraudscreen.features.definitions import (
    FEATURES,
    NIGHT_LAST_HOUR,
    SECONDS_PER_DAY,
    STATE_HORIZON_SECONDS,
    TERMINAL_DELAY_DAYS,
    WEEKEND_FIRST_WEEKDAY,
    FeatureKind,
)
from fraudscreen.transaction import EntryMode

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class _KeyedTimeline:
    """Rows of one key column ordered by (key, time, arrival), with lookups by time.

    Arrival order is the row order of the table, which `history` sorts by time (stable),
    matching the order a gateway would have seen the transactions in.
    """

    def __init__(self, keys: pd.Series, times: IntArray) -> None:
        codes, _ = pd.factorize(keys, sort=False)
        self.order = np.argsort(codes, kind="stable")
        rel = times - times.min() + STATE_HORIZON_SECONDS + 1
        span = int(rel.max()) + STATE_HORIZON_SECONDS + 1
        self.sorted_keys = codes[self.order].astype(np.int64)
        self.sorted_times = times[self.order]
        self.composite = self.sorted_keys * span + rel[self.order]
        self.positions = np.arange(len(times), dtype=np.int64)
        self._first_after: dict[int, IntArray] = {}  # features share windows: search once

    def first_after(self, seconds_before: int) -> IntArray:
        """Sorted position of the first row of the same key with time > t - seconds_before."""
        found = self._first_after.get(seconds_before)
        if found is None:
            found = np.searchsorted(
                self.composite, self.composite - seconds_before, side="right"
            ).astype(np.int64)
            self._first_after[seconds_before] = found
        return found

    def prefix(self, values: npt.NDArray[np.int64]) -> IntArray:
        """Prefix sums in sorted order, with a leading zero: sum over [a, b) = p[b] - p[a]."""
        return np.concatenate(([0], np.cumsum(values[self.order], dtype=np.int64)))

    def scatter(self, sorted_values: FloatArray) -> FloatArray:
        """Back from sorted order to table order."""
        out = np.empty_like(sorted_values)
        out[self.order] = sorted_values
        return out


def epoch_seconds(local_times: pd.Series, timezone: str) -> IntArray:
    """Site wall-clock datetimes to epoch seconds (what serving receives)."""
    stamps = pd.DatetimeIndex(local_times)
    if timezone != "UTC":
        stamps = stamps.tz_localize(timezone, ambiguous="NaT", nonexistent="shift_forward")
        if stamps.isna().any():
            raise ValueError(
                f"history has wall-clock times that are ambiguous in {timezone} (DST change); "
                "export TX_DATETIME in UTC and pass --timezone UTC"
            )
        stamps = stamps.tz_convert("UTC").tz_localize(None)
    return stamps.as_unit("s").asi8.astype(np.int64)


def compute_features(frame: pd.DataFrame, *, timezone: str = "UTC") -> FloatArray:
    """Feature matrix (rows in table order, columns in `FEATURES` order).

    `frame` is a table from `history.load_history` (or the simulator): time-sorted, with
    AMOUNT_MINOR and MINOR_PER_MAJOR, and TX_FRAUD as the known label.
    """
    local = pd.DatetimeIndex(frame[history.TX_DATETIME])
    times = epoch_seconds(frame[history.TX_DATETIME], timezone)
    amount_minor = frame[history.AMOUNT_MINOR].to_numpy(dtype=np.int64)
    scale = frame[history.MINOR_PER_MAJOR].to_numpy(dtype=np.int64)
    fraud = frame[history.TX_FRAUD].to_numpy(dtype=np.int64)
    cards = _KeyedTimeline(frame[history.CUSTOMER_ID], times)
    terminals = _KeyedTimeline(frame[history.TERMINAL_ID], times)
    card_amounts = cards.prefix(amount_minor)
    terminal_frauds = terminals.prefix(fraud)
    card_scale = scale[cards.order]
    delay = TERMINAL_DELAY_DAYS * SECONDS_PER_DAY

    columns: list[FloatArray] = []
    for spec in FEATURES:
        window = spec.window_days * SECONDS_PER_DAY
        match spec.kind:
            case FeatureKind.AMOUNT:
                col = amount_minor / scale
            case FeatureKind.WEEKEND:
                col = (local.day_of_week >= WEEKEND_FIRST_WEEKDAY).astype(np.float64)
            case FeatureKind.NIGHT:
                col = (local.hour <= NIGHT_LAST_HOUR).astype(np.float64)
            case FeatureKind.CARD_COUNT:
                first = cards.first_after(window)
                col = cards.scatter((cards.positions - first + 1).astype(np.float64))
            case FeatureKind.CARD_MEAN_AMOUNT:
                first = cards.first_after(window)
                count = cards.positions - first + 1
                total = card_amounts[cards.positions + 1] - card_amounts[first]
                col = cards.scatter(total / (count * card_scale))
            case FeatureKind.CARD_AMOUNT_RATIO:
                first = cards.first_after(window)
                count = cards.positions - first + 1
                total = card_amounts[cards.positions + 1] - card_amounts[first]
                own = amount_minor[cards.order]
                ratio = np.divide(own * count, total, out=np.ones(len(total)), where=total > 0)
                col = cards.scatter(ratio)
            case FeatureKind.TERMINAL_COUNT:
                first = terminals.first_after(delay + window)
                end = terminals.first_after(delay)
                col = terminals.scatter((end - first).astype(np.float64))
            case FeatureKind.TERMINAL_RISK:
                first = terminals.first_after(delay + window)
                end = terminals.first_after(delay)
                count = end - first
                frauds = terminal_frauds[end] - terminal_frauds[first]
                col = terminals.scatter(
                    np.divide(frauds, count, out=np.zeros(len(count)), where=count > 0)
                )
            case FeatureKind.ENTRY_MODE:
                col = _entry_mode_codes(frame)
        columns.append(np.asarray(col, dtype=np.float64))
    return np.column_stack(columns) if columns else np.empty((len(frame), 0))


def _entry_mode_codes(frame: pd.DataFrame) -> FloatArray:
    if history.ENTRY_MODE not in frame:
        return np.full(len(frame), np.nan)
    codes = {mode.name.lower(): float(mode.value) for mode in EntryMode}
    mapped = frame[history.ENTRY_MODE].map(codes).to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(mapped, dtype=np.float64)
