"""From journaled transactions to one exact (site, period) cell table, ready for DP release.

Per period (`privacy.period_days` UTC days) and only once its labels have had time to
mature: each transaction becomes a cell of bin codes (from the feature row the gateway
scored, so aggregates see exactly what serving saw) with its label from reported outcomes,
and each card contributes at most m transactions per UTC day (chosen by a keyed hash, so
the choice depends on that card's own transactions only and is not biased towards early
hours). The privacy unit is one card's day at this site: a table of several days is noised
for one card-day's m rows, and charged epsilon once per day it covers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.privacy.cell_counts import bounded_mask, cell_codes, count_cells, key_digests

DAY = 86_400


@dataclass(frozen=True, slots=True)
class LabelledRow:
    card_token: str
    transaction_key: str
    features: tuple[float, ...]
    is_fraud: bool
    day: int = 0  # UTC day number (epoch seconds // DAY): each card is bounded per day


@dataclass(frozen=True)
class Period:
    """[start, end) in epoch seconds; named by its first UTC day."""

    start: int
    end: int

    @property
    def days(self) -> int:
        return (self.end - self.start) // DAY

    @property
    def name(self) -> str:
        return dt.datetime.fromtimestamp(self.start, dt.UTC).date().isoformat()

    @classmethod
    def containing(cls, timestamp: int, days: int = 1) -> Period:
        start = timestamp - timestamp % (days * DAY)
        return cls(start, start + days * DAY)


def due_periods(
    first_timestamp: int, now: int, *, period_days: int, maturity_days: int
) -> list[Period]:
    """Periods from the first journaled one whose labels have matured by `now`."""
    periods = []
    period = Period.containing(first_timestamp, period_days)
    while period.end + maturity_days * DAY <= now:
        periods.append(period)
        period = Period(period.end, period.end + period_days * DAY)
    return periods


def bound_contributions(rows: Iterable[LabelledRow], max_per_card: int) -> list[LabelledRow]:
    """At most `max_per_card` rows per card and day, picked by a hash of the transaction key."""
    rows = list(rows)
    keep = bounded_mask(
        [r.card_token for r in rows],
        key_digests([r.transaction_key for r in rows]),
        max_per_card,
        np.asarray([r.day for r in rows], dtype=np.int64),
    )
    return [row for row, kept in zip(rows, keep.tolist(), strict=True) if kept]


def exact_table(
    rows: Iterable[LabelledRow], schema: BinSchema, max_per_card: int
) -> dict[Cell, tuple[int, int]]:
    """Cell -> (n_genuine, n_fraud) after contribution bounding (`cell_counts`, the path the
    evaluation uses for thousands of batches at once)."""
    kept = bound_contributions(rows, max_per_card)
    if not kept:
        return {}
    width = len(schema.features)
    matrix = np.asarray([r.features for r in kept], dtype=np.float64).reshape(len(kept), width)
    labels = np.asarray([r.is_fraud for r in kept], dtype=np.int64)
    tables = count_cells(cell_codes(schema, matrix), labels, np.zeros(len(kept), np.int64))
    return tables.get(0, {})
