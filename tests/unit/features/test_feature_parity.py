"""Batch (training) and online (serving) features are the same numbers, bit for bit."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudscreen import history
from fraudscreen.features.batch import compute_features, epoch_seconds
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.features.online import OnlineFeatureStore
from fraudscreen.history import validate_history
from fraudscreen.transaction import EntryMode, Transaction


def replay_online(frame: pd.DataFrame, *, purge_every: int = 0) -> np.ndarray:
    """Feed the table to the online store in order, reporting each label right after,
    as terminals and the card issuer would (labels arrive well within the 7-day delay)."""
    store = OnlineFeatureStore()
    times = epoch_seconds(frame[history.TX_DATETIME], "UTC").tolist()
    local = pd.DatetimeIndex(frame[history.TX_DATETIME])
    columns = zip(
        frame[history.TERMINAL_ID].astype(str).tolist(),
        frame[history.TRANSACTION_ID].astype(str).tolist(),
        frame[history.CUSTOMER_ID].astype(str).tolist(),
        frame[history.AMOUNT_MINOR].tolist(),
        frame[history.CURRENCY].tolist(),
        times,
        local.day_of_week.tolist(),
        local.hour.tolist(),
        frame[history.ENTRY_MODE].tolist() if history.ENTRY_MODE in frame else [None] * len(frame),
        frame[history.TX_FRAUD].tolist(),
        strict=True,
    )
    rows = []
    for i, (terminal, tx_id, card, amount, currency, ts, weekday, hour, mode, fraud) in enumerate(
        columns
    ):
        tx = Transaction(
            terminal_id=terminal,
            transaction_id=tx_id,
            card_token=card,
            amount_minor=amount,
            currency=currency,
            timestamp=ts,
            local_weekday=weekday,
            local_hour=hour,
            entry_mode=None if mode is None or pd.isna(mode) else EntryMode.from_name(mode),
        )
        rows.append(store.add(tx))
        if fraud:
            store.set_fraud(tx.terminal_id, tx.timestamp, True)
        if purge_every and i % purge_every == 0:
            store.purge()
    return np.asarray(rows, dtype=np.float64)


def assert_bitwise_equal(batch: np.ndarray, online: np.ndarray) -> None:
    assert batch.shape == online.shape
    both_nan = np.isnan(batch) & np.isnan(online)
    mismatch = ~(both_nan | (batch == online))
    if mismatch.any():
        row, col = np.argwhere(mismatch)[0]
        raise AssertionError(
            f"{mismatch.sum()} cells differ; first at row {row}, {FEATURE_NAMES[col]}: "
            f"batch {batch[row, col]!r} vs online {online[row, col]!r}"
        )


def test_simulated_stream_online_equals_batch(small_history: pd.DataFrame) -> None:
    frame = small_history.iloc[:30_000]
    batch = compute_features(frame)
    online = replay_online(frame, purge_every=500)
    assert_bitwise_equal(batch, online)
    # the windows are not trivially empty: terminals saw fraud, cards saw repeat visits
    names = list(FEATURE_NAMES)
    assert batch[:, names.index("TERMINAL_ID_RISK_30DAY_WINDOW")].max() > 0
    assert batch[:, names.index("CUSTOMER_ID_NB_TX_1DAY_WINDOW")].max() > 1


def test_purging_forgets_only_what_no_window_needs(small_history: pd.DataFrame) -> None:
    frame = small_history.iloc[:20_000]
    assert_bitwise_equal(replay_online(frame), replay_online(frame, purge_every=1))


_start = dt.datetime(2020, 3, 1)


@st.composite
def tiny_histories(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(min_value=1, max_value=60))
    # offsets in seconds, many ties and window-boundary hits (multiples of a day)
    offsets = draw(
        st.lists(
            st.one_of(
                st.integers(0, 50 * 86_400),
                st.integers(0, 50).map(lambda d: d * 86_400),
            ),
            min_size=n,
            max_size=n,
        )
    )
    offsets.sort()
    return pd.DataFrame(
        {
            history.TRANSACTION_ID: range(n),
            history.TX_DATETIME: [_start + dt.timedelta(seconds=s) for s in offsets],
            history.CUSTOMER_ID: draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)),
            history.TERMINAL_ID: draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)),
            history.TX_AMOUNT: [
                a / 100 for a in draw(st.lists(st.integers(0, 50_000), min_size=n, max_size=n))
            ],
            history.TX_FRAUD: draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
            history.ENTRY_MODE: draw(
                st.lists(
                    st.sampled_from([None, *[m.name.lower() for m in EntryMode]]),
                    min_size=n,
                    max_size=n,
                )
            ),
        }
    )


@settings(max_examples=150, deadline=None)
@given(tiny_histories())
def test_online_equals_batch_on_edge_cases(raw: pd.DataFrame) -> None:
    """Ties, zero amounts, exact window boundaries, missing entry modes."""
    frame = validate_history(raw)
    assert_bitwise_equal(compute_features(frame), replay_online(frame, purge_every=3))


def test_window_boundaries_by_hand() -> None:
    """A card seen exactly 1 day apart: the older one is outside the 1-day window."""
    raw = pd.DataFrame(
        {
            history.TRANSACTION_ID: [1, 2, 3],
            history.TX_DATETIME: [
                _start,
                _start + dt.timedelta(days=1),
                _start + dt.timedelta(days=1, seconds=1),
            ],
            history.CUSTOMER_ID: [7, 7, 7],
            history.TERMINAL_ID: [1, 1, 1],
            history.TX_AMOUNT: [10.0, 20.0, 60.0],
            history.TX_FRAUD: [0, 0, 0],
        }
    )
    features = compute_features(validate_history(raw))
    names = list(FEATURE_NAMES)
    count_1d = features[:, names.index("CUSTOMER_ID_NB_TX_1DAY_WINDOW")]
    mean_1d = features[:, names.index("CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW")]
    ratio_7d = features[:, names.index("CUSTOMER_ID_AMOUNT_RATIO_7DAY_WINDOW")]
    assert count_1d.tolist() == [1, 1, 2]
    assert mean_1d.tolist() == [10.0, 20.0, 40.0]
    assert ratio_7d[2] == 60 * 3 / 90
    assert math.isnan(features[0, names.index("ENTRY_MODE")])
