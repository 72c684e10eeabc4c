"""Feature drift of the fleet per period, from the released (DP) tables: the population
stability index (PSI) of each binned feature's distribution in a period against its
distribution in the release's training reference. No gRPC, no SQL.

PSI = sum over codes of (p - q) * ln(p / q), p the period's share of a code, q the
reference's. Rule of thumb used by credit-risk teams: < 0.1 stable, 0.1-0.25 watch,
> 0.25 a shift large enough to suggest retraining (RETRAIN_PSI).

Noisy counts can be negative: a feature's marginal sums its cells' noisy totals per code
first (the noise averages out), then clamps at zero; shares get a small floor so an empty
code does not make the index infinite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.hub.storage import CellSum
from fraudscreen.score_bands import reads_score

RETRAIN_PSI = 0.25
WATCH_PSI = 0.1
_FLOOR = 1e-4


def marginals(table: Mapping[Cell, CellSum], width: int) -> list[dict[int, float]]:
    """Per binned feature (position in the cell key), clamped noisy totals per code."""
    sums: list[dict[int, float]] = [{} for _ in range(width)]
    for codes, cell in table.items():
        for position, code in enumerate(codes[:width]):
            sums[position][code] = sums[position].get(code, 0.0) + cell.total
    return [{code: max(0.0, total) for code, total in m.items()} for m in sums]


def psi(current: Mapping[int, float], reference: Mapping[int, float]) -> float:
    codes = set(current) | set(reference)
    cur_total = sum(current.values())
    ref_total = sum(reference.values())
    if cur_total <= 0 or ref_total <= 0:
        return float("nan")
    value = 0.0
    for code in codes:
        p = max(current.get(code, 0.0) / cur_total, _FLOOR)
        q = max(reference.get(code, 0.0) / ref_total, _FLOOR)
        value += (p - q) * math.log(p / q)
    return value


@dataclass(frozen=True)
class DriftTable:
    """PSI per period (rows) and binned feature (columns) against `reference_periods`."""

    features: tuple[str, ...]
    periods: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]  # [period][feature]
    reference_periods: tuple[str, ...]
    reference_source: str  # how the reference was chosen, said on the page

    def worst(self, period_index: int) -> float:
        finite = [v for v in self.values[period_index] if math.isfinite(v)]
        return max(finite) if finite else float("nan")


def drift_table(
    schema: BinSchema,
    tables: Mapping[str, Mapping[Cell, CellSum]],
    training_period: tuple[str, str] | None,
) -> DriftTable:
    """PSI of every period against the summed tables of the release's training period
    (manifest training.train_period, inclusive); with none, or no batch in it, against
    the first period the hub holds (said in `reference_source`). A score-band schema's
    last binned column, the deployed score, is left out: its reference is the model's
    training rows, not a period (hub.score_drift)."""
    names = tuple(schema.features[i] for i in schema.binned)
    if reads_score(schema):
        names = names[:-1]  # marginals() below reads the first `width` codes only
    width = len(names)
    periods = tuple(sorted(tables))
    reference_periods: tuple[str, ...] = ()
    source = ""
    if training_period is not None:
        start, end = training_period
        reference_periods = tuple(p for p in periods if start <= p <= end)
        source = f"the release's training period {start} to {end}"
    if not reference_periods and periods:
        reference_periods = periods[:1]
        source = f"the first period the hub holds ({periods[0]}): " + (
            "no batch falls in the release's training period"
            if training_period
            else "no release names its training period"
        )
    reference_table: dict[Cell, CellSum] = {}
    for period in reference_periods:
        for codes, cell in tables[period].items():
            old = reference_table.get(codes, CellSum(0, 0, 0))
            reference_table[codes] = CellSum(
                old.total + cell.total, old.fraud + cell.fraud, old.batches + cell.batches
            )
    reference = marginals(reference_table, width)
    values = tuple(
        tuple(psi(m, r) for m, r in zip(marginals(tables[p], width), reference, strict=True))
        for p in periods
    )
    return DriftTable(names, periods, values, reference_periods, source)
