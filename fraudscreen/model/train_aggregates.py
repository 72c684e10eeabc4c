"""Train LightGBM from DP count tables (the hub's side of "what leaves the site").

The hub never sees a transaction, only tables of cell -> (total, fraud) over the bin
schema, summed over sites and periods. LightGBM trains *exactly* on such a table as
weighted rows: each cell becomes at most two rows (its full-width bin codes, label 0 with
weight n_genuine and label 1 with weight n_fraud). Every leaf statistic LightGBM computes
(sums of gradients and hessians) is then the same as on the expanded transactions, so a
count of 1,000 is worth 1,000 rows and costs one. The model reads exactly what
`BinSchema.transform` produces at serving time; its bundle says `model_input="bin_codes"`.

Noisy counts: released fraud counts carry unbiased noise and may be negative, and so may
the totals of a known-domain release (every cell of the schema's domain is released, empty
ones as noise around 0). Sum across batches first (noise averages out), clamp last: total
to >= 0, fraud to [0, total], genuine = total - fraud.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightgbm
import numpy as np
import numpy.typing as npt

from fraudscreen import __version__
from fraudscreen.binschema import MISSING_CODE, BinSchema, Cell
from fraudscreen.model.bundle import (
    BASE_GOLDEN_FILE,
    BASE_MODEL_FILE,
    GOLDEN_FILE,
    MODEL_FILE,
    MODEL_INPUT_BIN_CODES,
    MODEL_INPUT_STACKED,
    Bundle,
    GoldenRows,
    Manifest,
    Thresholds,
    write_bundle,
)

CountTable = Mapping[Cell, tuple[int, int]]
"""A released-style table: cell -> (total, fraud). Exact tables are (genuine, fraud)."""


class ReleasedTable(Protocol):
    """What training reads of a DP release (privacy.release.NoisyTable): its cells. A
    Protocol, so the model does not import the privacy package that imports it."""

    @property
    def cells(self) -> CountTable: ...


GOLDEN_CELLS = 256


@dataclass(frozen=True)
class AggregateTrainingConfig:
    """LightGBM settings for weighted-row training.

    Leaf size is bounded by hessian (weighted), never by row count: a row is a whole cell.
    No bagging or GOSS: sampling a row would drop a whole cell. Defaults were picked on an
    earlier protocol split (train end 2018-07-04), not on the reported test week.
    """

    num_trees: int = 100
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_sum_hessian_in_leaf: float = 1.0
    lambda_l2: float = 10.0
    seed: int = 0
    extra_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_trees <= 0 or self.num_leaves < 2:
            raise ValueError("num_trees must be positive and num_leaves at least 2")
        if self.min_sum_hessian_in_leaf < 0 or self.learning_rate <= 0:
            raise ValueError("min_sum_hessian_in_leaf must be >= 0 and learning_rate > 0")

    def lightgbm_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": 0,
            "min_sum_hessian_in_leaf": self.min_sum_hessian_in_leaf,
            "min_data_in_bin": 1,
            "feature_pre_filter": False,
            "lambda_l2": self.lambda_l2,
            "bagging_fraction": 1.0,
            "bagging_freq": 0,
            "data_sample_strategy": "bagging",
            "feature_fraction": 1.0,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 1,  # a table has a few thousand rows: threads cost more than they save
            "verbosity": -1,
            "zero_as_missing": False,
            **self.extra_params,
        }


@dataclass(frozen=True)
class WeightedRows:
    """A table as LightGBM input: full-width bin-code rows, labels and weights."""

    rows: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int8]
    weights: npt.NDArray[np.float64]

    @property
    def frauds(self) -> float:
        return float(self.weights[self.labels == 1].sum())

    @property
    def total(self) -> float:
        return float(self.weights.sum())


def clamp_counts(total: int, fraud: int) -> tuple[int, int]:
    """Summed noisy (total, fraud) -> usable (genuine, fraud): fraud in [0, total]."""
    total = max(total, 0)
    fraud = min(max(fraud, 0), total)
    return total - fraud, fraud


def sum_tables(tables: Iterable[ReleasedTable | CountTable]) -> dict[Cell, tuple[int, int]]:
    """Add released tables cell by cell (cell -> (total, fraud)); no clamping here.

    A cell missing from a batch (not selected by a threshold release) adds nothing; a
    known-domain batch holds every cell. Clamping must come after the sum, or the negative
    noise that cancels positive noise would be cut away.
    """
    sums: dict[Cell, list[int]] = {}
    for table in tables:
        cells = table if isinstance(table, Mapping) else table.cells
        for cell, (total, fraud) in cells.items():
            acc = sums.get(cell)  # a tuple of NumPy ints finds its int twin: equal hashes
            if acc is None:
                acc = sums[tuple(int(c) for c in cell)] = [0, 0]
            acc[0] += int(total)
            acc[1] += int(fraud)
    return {cell: (acc[0], acc[1]) for cell, acc in sums.items()}


def exact_as_released(exact: Mapping[Cell, tuple[int, int]]) -> dict[Cell, tuple[int, int]]:
    """An exact (genuine, fraud) table in the released (total, fraud) form: epsilon = inf."""
    return {tuple(cell): (g + f, f) for cell, (g, f) in exact.items()}


def table_from_payload(payload: Mapping[str, Any]) -> dict[Cell, tuple[int, int]]:
    """The cells of one outbox/hub batch payload (`storage.outbox.encode_payload`)."""
    return {
        tuple(int(c) for c in cell): (int(total), int(fraud))
        for cell, total, fraud in payload["cells"]
    }


def weighted_rows(table: CountTable, schema: BinSchema) -> WeightedRows:
    """Each cell -> up to two rows (label 0 weight genuine, label 1 weight fraud), clamped.

    Rows of zero weight are left out; cells come in sorted order so training is
    reproducible whatever order the table was summed in.
    """
    width = len(schema.binned)
    rows: list[list[float]] = []
    labels: list[int] = []
    weights: list[float] = []
    for cell in sorted(table):
        if len(cell) != width:
            raise ValueError(f"cell {cell!r} has {len(cell)} codes; the schema bins {width}")
        genuine, fraud = clamp_counts(*table[cell])
        for label, weight in ((0, genuine), (1, fraud)):
            if weight > 0:
                rows.append(schema.expand(cell))
                labels.append(label)
                weights.append(float(weight))
    return WeightedRows(
        rows=np.asarray(rows, dtype=np.float64).reshape(len(rows), len(schema.features)),
        labels=np.asarray(labels, dtype=np.int8),
        weights=np.asarray(weights, dtype=np.float64),
    )


def train_from_table(
    table: CountTable,
    schema: BinSchema,
    config: AggregateTrainingConfig | None = None,
) -> lightgbm.Booster:
    """A LightGBM booster trained on a (summed) table; it reads full-width bin codes.

    Raises ValueError when the table cannot teach anything: no rows, or one class only
    (e.g. at a tiny epsilon no cell survived a threshold release's selection).
    """
    config = config or AggregateTrainingConfig()
    data = weighted_rows(table, schema)
    if data.total <= 0:
        raise ValueError("the table is empty (no cell survived the DP selection); nothing to learn")
    if data.frauds <= 0 or data.frauds >= data.total:
        raise ValueError("the table holds only one class after clamping; nothing to learn")
    dataset = lightgbm.Dataset(
        data.rows,
        data.labels,
        weight=data.weights,
        feature_name=list(schema.features),
        free_raw_data=False,
    )
    return lightgbm.train(config.lightgbm_params(), dataset, num_boost_round=config.num_trees)


def weighted_threshold_for_precision(
    scores: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int8],
    weights: npt.NDArray[np.float64],
    precision: float,
) -> float:
    """Lowest score cut-off whose flagged weight has at least `precision` fraud.

    Rows of one cell share a score, so cut-offs are taken between distinct scores only
    (a cut never splits a cell). Falls back to the top score when none qualifies.
    """
    if len(scores) == 0:
        return 1.0
    distinct, inverse = np.unique(-scores, return_inverse=True)
    flagged = np.cumsum(np.bincount(inverse, weights=weights))
    hits = np.cumsum(np.bincount(inverse, weights=weights * (labels == 1)))
    ok = np.flatnonzero((flagged > 0) & (hits >= precision * flagged))
    best = distinct[ok[-1]] if len(ok) else distinct[0]
    return float(min(max(-best, 0.0), 1.0))


def thresholds_from_table(
    booster: lightgbm.Booster,
    table: CountTable,
    schema: BinSchema,
    *,
    review_precision: float = 0.3,
    decline_precision: float = 0.9,
) -> Thresholds:
    """REVIEW / DECLINE cut-offs chosen on a validation table (e.g. later periods)."""
    data = weighted_rows(table, schema)
    scores = np.asarray(booster.predict(data.rows), dtype=np.float64)
    review = weighted_threshold_for_precision(scores, data.labels, data.weights, review_precision)
    decline = weighted_threshold_for_precision(scores, data.labels, data.weights, decline_precision)
    return Thresholds(review=min(review, decline), decline=decline)


def golden_code_rows(booster: lightgbm.Booster, table: CountTable, schema: BinSchema) -> GoldenRows:
    """Golden rows in code space: the heaviest cells, plus all-missing, zero and top codes.

    These are what the compiled model will be fed at serving time, so parity is checked
    where it matters.
    """
    heaviest = sorted(table, key=lambda c: (-abs(table[c][0]), c))[:GOLDEN_CELLS]
    rows = [schema.expand(cell) for cell in heaviest]
    width = len(schema.binned)
    top = tuple(len(schema.edges[i]) for i in schema.binned)
    rows += [
        schema.expand((MISSING_CODE,) * width),
        schema.expand((0,) * width),
        schema.expand(top),
    ]
    scores = booster.predict(np.asarray(rows, dtype=np.float64))
    return GoldenRows(rows=rows, scores=[float(s) for s in scores])


def write_aggregate_bundle(
    out_dir: Path,
    booster: lightgbm.Booster,
    table: CountTable,
    schema: BinSchema,
    *,
    thresholds: Thresholds | None = None,
    validation_table: CountTable | None = None,
    config: AggregateTrainingConfig | None = None,
    name: str = "fraudscreen-dp",
    trained_on: str = "",
    source: Sequence[str] = (),
    metrics: Mapping[str, Any] | None = None,
    base: Bundle | None = None,
) -> Manifest:
    """Write a bundle for a booster trained by `train_from_table` (model_input="bin_codes").

    With `base` (the deployed model whose score bands `schema` bins), the bundle is a
    stacked correction of it (model_input="stacked") and ships the base model's text and
    golden rows beside its own (see `model.bundle`).

    Thresholds are either given or chosen on `validation_table` (a table the booster did
    not train on); with neither the bundle cannot say when to decline, so this refuses.
    `trained_on` names the data (e.g. "2018-07-04..2018-07-31"), `source` the batch ids.
    """
    if thresholds is None:
        if validation_table is None:
            raise ValueError("give thresholds, or a validation table to choose them on")
        thresholds = thresholds_from_table(booster, validation_table, schema)
    config = config or AggregateTrainingConfig()
    model_text = booster.model_to_string()
    data = weighted_rows(table, schema)
    version = (
        f"{name}-{dt.date.today():%Y%m%d}-" + hashlib.sha256(model_text.encode()).hexdigest()[:8]
    )
    training = {
        "source": "dp aggregates",
        "trained_on": trained_on,
        "batches": list(source),
        "cells": len(table),
        "weighted_rows": len(data.labels),
        "transactions": data.total,
        "frauds": data.frauds,
        "trees": booster.num_trees(),
        "config": asdict(config),
        "bin_schema_sha256": schema.hash,
        "lightgbm_version": lightgbm.__version__,
        "fraudscreen_version": __version__,
    }
    return write_bundle(
        out_dir,
        model_text=model_text,
        golden=golden_code_rows(booster, table, schema),
        model_version=version,
        thresholds=thresholds,
        training=training,
        metrics=dict(metrics or {}),
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        bin_schema=schema.to_json(),
        model_input=MODEL_INPUT_BIN_CODES if base is None else MODEL_INPUT_STACKED,
        features=schema.features if base is None else base.manifest.features,
        extra_files=None if base is None else _base_files(base),
        base=None
        if base is None
        else {"model_version": base.model_version, "model_sha256": base.model_sha256},
    )


def _base_files(base: Bundle) -> dict[str, bytes]:
    """The deployed bundle's model and golden rows, byte for byte (its hashes stay valid)."""
    if base.is_stacked or base.reads_bin_codes:
        raise ValueError(f"{base.model_version} is not a raw-feature model; it cannot be a base")
    return {
        BASE_MODEL_FILE: (base.path / MODEL_FILE).read_bytes(),
        BASE_GOLDEN_FILE: (base.path / GOLDEN_FILE).read_bytes(),
    }
