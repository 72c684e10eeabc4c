"""From journaled transactions to one exact (site, period) cell table, ready for DP release.

Per period (a UTC day by default) and only once its labels have had time to mature:
each transaction becomes a cell of bin codes (from the feature row the gateway scored, so
aggregates see exactly what serving saw) with its label from reported outcomes, and each
card contributes at most m transactions (chosen by a keyed hash, so the choice depends on
that card's own transactions only and is not biased towards early hours).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from fraudscreen.binschema import BinSchema, Cell

DAY = 86_400


@dataclass(frozen=True, slots=True)
class LabelledRow:
    card_token: str
    transaction_key: str
    features: tuple[float, ...]
    is_fraud: bool


@dataclass(frozen=True)
class Period:
    """[start, end) in epoch seconds; named by its first UTC day."""

    start: int
    end: int

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
    """At most `max_per_card` rows per card, picked by a hash of the transaction key."""
    by_card: dict[str, list[LabelledRow]] = defaultdict(list)
    for row in rows:
        by_card[row.card_token].append(row)
    kept: list[LabelledRow] = []
    for card_rows in by_card.values():
        if len(card_rows) > max_per_card:
            card_rows.sort(
                key=lambda r: hashlib.blake2b(r.transaction_key.encode(), digest_size=8).digest()
            )
            card_rows = card_rows[:max_per_card]
        kept.extend(card_rows)
    return kept


def exact_table(
    rows: Iterable[LabelledRow], schema: BinSchema, max_per_card: int
) -> dict[Cell, tuple[int, int]]:
    """Cell -> (n_genuine, n_fraud) after contribution bounding."""
    table: dict[Cell, list[int]] = defaultdict(lambda: [0, 0])
    for row in bound_contributions(rows, max_per_card):
        table[schema.cell(row.features)][1 if row.is_fraud else 0] += 1
    return {cell: (counts[0], counts[1]) for cell, counts in table.items()}
