"""`simulate --handbook-exact` regenerates the handbook's published data set, and our
Card Precision@100 gives the handbook's published number for its logistic regression on it.

Known values are the ones printed in the handbook's chapter 3 ("Transaction data
simulator") and its baseline table (logistic regression: CP@100 0.291).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from fraudscreen.features.batch import compute_features
from fraudscreen.history import validate_history
from fraudscreen.model.evaluate import (
    ProtocolPeriods,
    card_precision_at_k,
    compute_metrics,
    day_mask,
    evaluation_mask,
)
from fraudscreen.simulate_handbook import (
    PUBLISHED_FRAUDS,
    PUBLISHED_TRANSACTIONS,
    simulate_handbook,
)

# (TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT) as published
FIRST_ROWS = [
    (0, "2018-04-01 00:00:31", 596, 3156, 57.16),
    (1, "2018-04-01 00:02:10", 4961, 3412, 81.51),
    (2, "2018-04-01 00:07:56", 2, 1365, 146.00),
    (3, "2018-04-01 00:09:29", 4128, 8737, 64.49),
    (4, "2018-04-01 00:10:34", 927, 9906, 50.99),
]
LAST_ROWS = [
    (1754150, "2018-09-30 23:56:36", 161, 655, 54.24),
    (1754151, "2018-09-30 23:57:38", 4342, 6181, 1.23),
    (1754152, "2018-09-30 23:58:21", 618, 1502, 6.62),
    (1754153, "2018-09-30 23:59:52", 4056, 3067, 55.40),
    (1754154, "2018-09-30 23:59:57", 3542, 9849, 23.59),
]
PUBLISHED_SCENARIOS = {0: 1_739_474, 1: 973, 2: 9077, 3: 4631}


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    return simulate_handbook(progress=False)


def _rows(frame: pd.DataFrame) -> list[tuple[int, str, int, int, float]]:
    return list(
        zip(
            frame["TRANSACTION_ID"].astype(int).tolist(),
            frame["TX_DATETIME"].astype(str).tolist(),
            frame["CUSTOMER_ID"].astype(int).tolist(),
            frame["TERMINAL_ID"].astype(int).tolist(),
            frame["TX_AMOUNT"].round(2).tolist(),
            strict=True,
        )
    )


@pytest.mark.slow
def test_handbook_exact_mode_gives_the_published_data_set(published: pd.DataFrame) -> None:
    assert len(published) == PUBLISHED_TRANSACTIONS
    assert int(published["TX_FRAUD"].sum()) == PUBLISHED_FRAUDS
    assert published["TX_FRAUD_SCENARIO"].value_counts().to_dict() == PUBLISHED_SCENARIOS
    assert _rows(published.head(5)) == FIRST_ROWS
    assert _rows(published.tail(5)) == LAST_ROWS


@pytest.mark.slow
def test_card_precision_gives_the_published_logistic_regression_number(
    published: pd.DataFrame,
) -> None:
    """The handbook's baseline: standardized handbook features, LogisticRegression
    (random_state=0) trained on 2018-07-25..31, tested on 2018-08-08..14."""
    frame = validate_history(published)
    features = compute_features(frame)[:, :15]  # the handbook's 15 features
    periods = ProtocolPeriods.after_training(dt.date(2018, 8, 1))
    train = day_mask(frame, periods.train_start, periods.train_end)
    test = evaluation_mask(frame, periods)
    scaler = StandardScaler().fit(features[train])
    model = LogisticRegression(random_state=0).fit(
        scaler.transform(features[train]), frame["TX_FRAUD"].to_numpy()[train]
    )
    scores = model.predict_proba(scaler.transform(features[test]))[:, 1]
    metrics = compute_metrics(frame[test], scores)
    assert (metrics.transactions, metrics.frauds) == (58_264, 385)
    assert round(metrics.card_precision_at_100, 3) == 0.291  # published: 0.291
    assert round(card_precision_at_k(frame[test], scores), 3) == 0.346  # without the rule
    assert np.isclose(metrics.auc_roc, 0.871, atol=0.002)  # published: 0.871
