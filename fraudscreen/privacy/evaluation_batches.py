"""The gateway's path replayed on a history, for the privacy evaluation.

Sites by terminal, features over the whole history or each site's own journal, the exact
(genuine, fraud) tables of every (site, period) with and without contribution bounding,
and the handbook test week every model of the comparison is scored on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraudscreen import history
from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.features.batch import compute_features
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.model.evaluate import ProtocolPeriods, evaluation_mask
from fraudscreen.privacy.aggregate import LabelledRow, exact_table
from fraudscreen.privacy.evaluation_config import PrivacyEvaluationConfig

FloatArray = npt.NDArray[np.float64]
ExactTable = dict[Cell, tuple[int, int]]
UNBOUNDED = 2**62  # "no contribution bound" for exact_table


@dataclass(frozen=True)
class Batch:
    """One (site, period) of the training window, as the gateway would table it."""

    site: int
    period: int
    bounded: ExactTable  # (genuine, fraud) after contribution bounding
    unbounded: ExactTable  # every row: only used to price binning alone


def assign_sites(frame: pd.DataFrame, sites: int) -> npt.NDArray[np.int64]:
    """Site of each row: terminal_id % sites (a stable hash for non-integer ids)."""
    terminals = frame[history.TERMINAL_ID]
    if pd.api.types.is_integer_dtype(terminals):
        return np.asarray(terminals.to_numpy(dtype=np.int64) % sites, dtype=np.int64)
    codes = [
        int.from_bytes(hashlib.blake2b(str(t).encode(), digest_size=8).digest(), "big") % sites
        for t in terminals
    ]
    return np.asarray(codes, dtype=np.int64)


def feature_matrix(
    frame: pd.DataFrame, site_of: npt.NDArray[np.int64], *, site_features: bool, timezone: str
) -> FloatArray:
    """Features over the whole history, or (site_features) each site from its own journal.

    Site-local features are what a gateway really computes (a card's velocity counts only
    its transactions at this site); every row of the comparison then uses them.
    """
    if not site_features:
        return compute_features(frame, timezone=timezone)
    out = np.empty((len(frame), len(FEATURE_NAMES)), dtype=np.float64)
    for site in np.unique(site_of):
        rows = np.flatnonzero(site_of == site)
        out[rows] = compute_features(frame.iloc[rows].reset_index(drop=True), timezone=timezone)
    return out


def labelled_rows(
    frame: pd.DataFrame, features: FloatArray, rows: npt.NDArray[np.intp]
) -> list[LabelledRow]:
    """The gateway's journal rows for one batch: card, transaction key, features, label."""
    cards = frame[history.CUSTOMER_ID].to_numpy()[rows]
    keys = frame[history.TRANSACTION_ID].to_numpy()[rows]
    frauds = frame[history.TX_FRAUD].to_numpy()[rows]
    return [
        LabelledRow(str(card), str(key), tuple(values), bool(fraud))
        for card, key, values, fraud in zip(
            cards, keys, features[rows].tolist(), frauds, strict=True
        )
    ]


def period_index(frame: pd.DataFrame, config: PrivacyEvaluationConfig) -> npt.NDArray[np.int64]:
    """Period number of each row within the training window; -1 outside it."""
    days = (
        frame[history.TX_DATETIME].dt.normalize() - pd.Timestamp(config.train_start)
    ).dt.days.to_numpy(dtype=np.int64)
    inside = (days >= 0) & (days < config.train_days)
    return np.where(inside, days // config.period_days, -1)


def make_batches(
    frame: pd.DataFrame,
    features: FloatArray,
    site_of: npt.NDArray[np.int64],
    schema: BinSchema,
    config: PrivacyEvaluationConfig,
) -> list[Batch]:
    """Exact tables of every (site, period), with and without contribution bounding."""
    period_of = period_index(frame, config)
    batches = []
    for site in range(config.sites):
        for period in range(config.periods):
            rows = np.flatnonzero((site_of == site) & (period_of == period))
            journal = labelled_rows(frame, features, rows)
            batches.append(
                Batch(
                    site=site,
                    period=period,
                    bounded=exact_table(journal, schema, config.max_contributions),
                    unbounded=exact_table(journal, schema, UNBOUNDED),
                )
            )
    return batches


@dataclass(frozen=True)
class TestSet:
    """The handbook test week, as raw features and as bin codes."""

    frame: pd.DataFrame
    features: FloatArray
    codes: FloatArray


def make_test_set(
    frame: pd.DataFrame, features: FloatArray, schema: BinSchema, train_end: dt.date
) -> TestSet:
    """The handbook test week after `train_end` (1-week rule for known cards)."""
    mask = evaluation_mask(frame, ProtocolPeriods.after_training(train_end))
    labels = frame[history.TX_FRAUD].to_numpy()[mask]
    if len(np.unique(labels)) < 2:
        raise ValueError(
            f"the history has no usable test week after {train_end} (needs rows and both "
            "classes in the week starting 7 days later); use a longer history or --train-end"
        )
    return TestSet(frame[mask], features[mask], schema.transform_matrix(features[mask]))
