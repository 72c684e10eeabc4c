"""The score-band schema: the deployed model's score, in bands, as one dimension of the cells.

A table over coarse feature bins alone makes the hub learn a *replacement* of the deployed
model that sees only those bins; with the deployed model's score band as a dimension, it
learns a *correction* of the deployed model (see `model.stacked`), which keeps most of
what the deployed model knows while the table stays small (1,152 cells, see
BAND_FEATURE_EDGES), so the noise of a known-domain release does not drown it.

The band of a score means something only for the model that produced it: the edges are
fixed in that model's bundle from its own training data (never from site data), a batch
names the deployed model version its bands came from, and the hub sums only batches of
one version.

The score is the last column of the row the schema bins: `DEPLOYED_SCORE` after the
model's features (`with_score`), so every piece of the aggregate path (binning, bounding,
release, summing, weighted rows) works on it unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fraudscreen.binschema import BinSchema
from fraudscreen.features.definitions import FEATURE_NAMES

DEPLOYED_SCORE = "DEPLOYED_SCORE"
SCORED_FEATURES: tuple[str, ...] = (*FEATURE_NAMES, DEPLOYED_SCORE)

# Quantile levels of the deployed model's scores on its training rows: 7 edges, 8 bands,
# most of them in the top 2 % where fraud lives (~0.8 % of transactions). 16 bands gave the
# correction finer steps but twice the cells, whose noise cost more than the steps gained
# under drift (README, "The cost of privacy").
BAND_QUANTILES: tuple[float, ...] = (0.8, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)

# The 16-band levels of bundles trained before 2026-12-05: their edges still imply nominal
# shares (`nominal_band_shares`).
BAND_QUANTILES_16: tuple[float, ...] = (
    0.5,
    0.8,
    0.9,
    0.95,
    0.97,
    0.98,
    0.985,
    0.99,
    0.993,
    0.995,
    0.996,
    0.997,
    0.998,
    0.9985,
    0.999,
)

# A card-testing burst (many small payments on a card new to the shop) as three 2-bin
# codes of existing online features from the site's own journal: the card's mean amount
# today (<= 10), its 30-day count at this site (<= 10: new to the shop) and its 1-day
# count (> 3). Without them the correction cannot see a pattern the deployed model puts in
# low bands (measured: 57 % of the raw retraining's recovery vs 82 % with them).
CARD_BURST_EDGES: dict[str, tuple[float, ...]] = {
    "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW": (10.0,),
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW": (10.0,),
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW": (3.0,),
}

# The other dimensions: amount (the handbook's > 220 among them), delayed 7-day terminal
# risk, how the card was read (missing allowed), and the card burst: 8 x 3 x 2 x 3 x 8 =
# 1,152 cells.
BAND_FEATURE_EDGES: dict[str, tuple[float, ...]] = {
    "TX_AMOUNT": (25.0, 220.0),
    "TERMINAL_ID_RISK_7DAY_WINDOW": (0.2,),
    "ENTRY_MODE": (2.0,),
    **CARD_BURST_EDGES,
}
BAND_NULLABLE: tuple[str, ...] = ("ENTRY_MODE",)


def band_edges(
    training_scores: npt.ArrayLike, quantiles: Sequence[float] = BAND_QUANTILES
) -> tuple[float, ...]:
    """Band edges from the deployed model's scores on its own training rows.

    Quantiles that coincide (a model with few distinct scores) are merged, so the edges
    stay strictly increasing; the result is rounded to 9 digits so the schema's JSON and
    hash are stable.
    """
    scores = np.asarray(training_scores, dtype=np.float64)
    if scores.size == 0 or not np.all(np.isfinite(scores)):
        raise ValueError("band edges need finite training scores")
    edges = np.round(np.quantile(scores, np.asarray(quantiles, dtype=np.float64)), 9)
    return tuple(float(e) for e in np.unique(edges))


def band_shares(edges: Sequence[float], scores: npt.ArrayLike) -> tuple[float, ...]:
    """Share of `scores` in each band, binned as the schema bins them (code = number of
    edges strictly below): the deployed model's training scores give the reference the
    fleet's score-band tables are compared with for drift. Rounded to 9 digits so the
    manifest's JSON is stable."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError("band shares need finite scores")
    codes = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    counts = np.bincount(codes, minlength=len(edges) + 1)
    return tuple(round(float(c) / values.size, 9) for c in counts)


def nominal_band_shares(edges: Sequence[float]) -> tuple[float, ...] | None:
    """The reference a bundle trained before `band_shares` was stored implies: its edges
    are the training scores' BAND_QUANTILES (or the older BAND_QUANTILES_16), so each band
    holds about the gap between consecutive levels (exactly, but for ties at an edge).
    None when equal quantiles merged: which levels the remaining edges sit at is then
    unknown."""
    for quantiles in (BAND_QUANTILES, BAND_QUANTILES_16):
        if len(edges) == len(quantiles):
            levels = (0.0, *quantiles, 1.0)
            return tuple(round(b - a, 9) for a, b in itertools.pairwise(levels))
    return None


def score_band_schema(
    edges: Sequence[float],
    feature_edges: dict[str, tuple[float, ...]] | None = None,
    *,
    model_version: str | None = None,
) -> BinSchema:
    """The schema binning (features..., DEPLOYED_SCORE): score bands x a few feature bins,
    for the deployed model `model_version` (part of the schema's hash)."""
    chosen = dict(BAND_FEATURE_EDGES if feature_edges is None else feature_edges)
    chosen[DEPLOYED_SCORE] = tuple(float(e) for e in edges)
    nullable = tuple(n for n in BAND_NULLABLE if n in chosen)
    return BinSchema.from_edges(
        chosen, features=SCORED_FEATURES, nullable=nullable, model_version=model_version
    )


def reads_score(schema: BinSchema) -> bool:
    """True when the schema bins the deployed model's score (its rows need `with_score`)."""
    return bool(schema.features) and schema.features[-1] == DEPLOYED_SCORE


def with_score(features: Sequence[float], score: float | None) -> tuple[float, ...]:
    """A journaled feature row plus the deployed score, the row a score-band schema bins.

    A transaction scored by the stand-in policy (no model) has no score: NaN, which the
    schema does not allow in the band (such rows cannot be tabled under a model version).
    """
    return (*features, float("nan") if score is None else float(score))


def with_scores(
    features: npt.NDArray[np.float64], scores: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Vectorized `with_score` for the evaluation and training."""
    return np.column_stack([features, np.asarray(scores, dtype=np.float64)])
