"""A correction of the deployed model, learned at the hub from score-band tables.

The hub's table has the deployed model's score band as one dimension (see
`privacy.score_bands`). LightGBM trains on it as weighted rows like any table
(`train_from_table`), with one constraint: the output never decreases with the band (a
higher deployed score is never evidence against fraud), so the model corrects the deployed
model's calibration per amount / terminal risk / entry mode instead of relearning it.

Every transaction of one cell gets the same corrected score; at serving, ties inside a
cell are broken by the raw deployed score: the final score is
``(1 - TIE_BREAK) * corrected + TIE_BREAK * deployed``, monotone in both, so the order of
cells is the correction's and the order inside a cell is the deployed model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import lightgbm
import numpy as np
import numpy.typing as npt

from fraudscreen.binschema import BinSchema
from fraudscreen.model.predictor import Predictor, predict_batch
from fraudscreen.model.train_aggregates import (
    AggregateTrainingConfig,
    CountTable,
    train_from_table,
)
from fraudscreen.score_bands import DEPLOYED_SCORE, reads_score, with_scores

TIE_BREAK = 1e-3

FloatArray = npt.NDArray[np.float64]


def correction_config(
    schema: BinSchema, config: AggregateTrainingConfig | None = None
) -> AggregateTrainingConfig:
    """`config` plus the monotone constraint on the score band."""
    if not reads_score(schema):
        raise ValueError(f"a correction needs a schema that bins {DEPLOYED_SCORE}")
    config = config or AggregateTrainingConfig()
    constraints = [1 if name == DEPLOYED_SCORE else 0 for name in schema.features]
    extra = dict(config.extra_params)
    extra["monotone_constraints"] = constraints
    extra.setdefault("monotone_constraints_method", "advanced")
    return replace(config, extra_params=extra)


def train_correction(
    table: CountTable, schema: BinSchema, config: AggregateTrainingConfig | None = None
) -> lightgbm.Booster:
    """LightGBM over (score band, bins) codes, monotone in the band."""
    return train_from_table(table, schema, correction_config(schema, config))


def stacked_scores(
    corrected: FloatArray, deployed: FloatArray, tie_break: float = TIE_BREAK
) -> FloatArray:
    """The served score: the correction, with ties inside a cell broken by the deployed score."""
    return (1.0 - tie_break) * np.asarray(corrected, dtype=np.float64) + tie_break * np.asarray(
        deployed, dtype=np.float64
    )


def score_rows(
    booster: lightgbm.Booster,
    schema: BinSchema,
    scored_rows: FloatArray,
    tie_break: float = TIE_BREAK,
) -> FloatArray:
    """Served scores of rows (features..., deployed score), vectorized."""
    corrected = np.asarray(booster.predict(schema.transform_matrix(scored_rows)), np.float64)
    return stacked_scores(corrected, scored_rows[:, -1], tie_break)


def score_feature_rows(
    base: lightgbm.Booster,
    correction: lightgbm.Booster,
    schema: BinSchema,
    features: FloatArray,
    tie_break: float = TIE_BREAK,
) -> FloatArray:
    """The batch path (training report, evaluation): feature rows -> base score -> bands
    -> correction -> served score; `StackedPredictor` is the same, one row at a time."""
    deployed = np.asarray(base.predict(features, num_threads=1), dtype=np.float64)
    return score_rows(correction, schema, with_scores(features, deployed), tie_break)


class StackedPredictor:
    """The online path: a `Predictor` over feature rows that serves a correction.

    `base` scores the feature row (the deployed model), the schema bins (features, base
    score), `correction` scores those codes, and the two combine as `stacked_scores` does.
    Both predictors are whatever the gateway compiled (native) or LightGBM's own.
    """

    kind = "stacked"

    def __init__(
        self,
        base: Predictor,
        correction: Predictor,
        schema: BinSchema,
        tie_break: float = TIE_BREAK,
    ) -> None:
        if not reads_score(schema):
            raise ValueError(f"a stacked predictor needs a schema that bins {DEPLOYED_SCORE}")
        width = len(schema.features)
        if correction.num_features != width or base.num_features + 1 != width:
            raise ValueError("the correction must read the schema's codes: features + score")
        self.base = base
        self.correction = correction
        self.schema = schema
        self.tie_break = tie_break
        self.num_features = base.num_features

    def predict_row(self, row: Sequence[float]) -> float:
        deployed = self.base.predict_row(row)
        corrected = self.correction.predict_row(self.schema.transform((*row, deployed)))
        return (1.0 - self.tie_break) * corrected + self.tie_break * deployed

    def predict_batch(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """`predict_row` over many rows, each model called once for the whole batch."""
        deployed = predict_batch(self.base, rows)
        transform = self.schema.transform
        corrected = predict_batch(
            self.correction, [transform((*row, d)) for row, d in zip(rows, deployed, strict=True)]
        )
        keep = 1.0 - self.tie_break
        return [keep * c + self.tie_break * d for c, d in zip(corrected, deployed, strict=True)]
