"""Training picks thresholds on validation; evaluation follows the handbook protocol."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from fraudscreen import history
from fraudscreen.model.evaluate import (
    ProtocolPeriods,
    card_precision_at_k,
    card_precision_at_k_detected_removed,
    compute_metrics,
    evaluation_mask,
)
from fraudscreen.model.train import threshold_for_precision


def test_threshold_is_the_lowest_cut_with_enough_precision() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0], dtype=np.int8)
    # precision at each cut: 1, 1, 2/3, 3/4, 3/5, 1/2
    assert threshold_for_precision(scores, labels, 0.75) == 0.6
    assert threshold_for_precision(scores, labels, 1.0) == 0.8
    assert threshold_for_precision(scores, labels, 0.5) == 0.4


def _day_frame(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            history.TX_DATETIME: pd.to_datetime([r[0] for r in rows]),
            history.CUSTOMER_ID: [r[1] for r in rows],
            history.TX_FRAUD: [r[2] for r in rows],
        }
    )


def test_known_compromised_cards_leave_the_test_set() -> None:
    periods = ProtocolPeriods.after_training(dt.date(2018, 1, 8))  # test 01-15 .. 01-22
    frame = _day_frame(
        [
            ("2018-01-03", 1, 1),  # card 1 defrauded in training: never tested
            ("2018-01-09", 2, 1),  # card 2 defrauded on day 1 of the delay: known from 01-17
            ("2018-01-15", 1, 0),
            ("2018-01-15", 2, 0),
            ("2018-01-16", 2, 1),
            ("2018-01-17", 2, 0),
            ("2018-01-17", 3, 0),
            ("2018-01-23", 3, 0),  # after the test week
        ]
    )
    assert evaluation_mask(frame, periods).tolist() == [
        False,
        False,
        False,
        True,
        True,
        False,
        True,
        False,
    ]


def test_card_precision_counts_cards_not_transactions() -> None:
    frame = _day_frame(
        [
            ("2018-01-01", 1, 1),
            ("2018-01-01", 1, 1),
            ("2018-01-01", 2, 0),
            ("2018-01-02", 3, 0),
            ("2018-01-02", 4, 1),
        ]
    )
    scores = np.array([0.9, 0.8, 0.1, 0.7, 0.6])
    # day 1: card 1 is fraud (1 of k=2); day 2: card 4 fraud (1 of 2)
    assert card_precision_at_k(frame, scores, k=2) == 0.5
    assert card_precision_at_k(frame, scores, k=1) == 0.5  # day 2 top card is genuine


def _three_days_of_cards() -> tuple[pd.DataFrame, np.ndarray]:
    """k = 2. Day 1: A fraud .9, B genuine .8, C fraud .1 -> top A, B: 1/2, A detected
    (C is a fraud too, but not among the top 2). Day 2: A fraud .95, C fraud .5, D genuine
    .4 -> A is out, top C, D: 1/2, C detected. Day 3: C fraud .9, E genuine .3, F fraud .2
    -> C is out, top E, F: 1/2. Handbook CP@2 = 0.5. Without the rule: day 2 is A, C (2/2),
    day 3 C, E (1/2): 2/3. Removing every card truly defrauded on an earlier day instead
    would drop C on day 2 as well (D alone: 0/2): 1/3."""
    a, b, c, d, e, f = range(1, 7)
    frame = _day_frame(
        [
            ("2018-01-01", a, 1),
            ("2018-01-01", b, 0),
            ("2018-01-01", c, 1),
            ("2018-01-02", a, 1),
            ("2018-01-02", c, 1),
            ("2018-01-02", d, 0),
            ("2018-01-03", c, 1),
            ("2018-01-03", e, 0),
            ("2018-01-03", f, 1),
        ]
    )
    scores = np.array([0.9, 0.8, 0.1, 0.95, 0.5, 0.4, 0.9, 0.3, 0.2])
    return frame, scores


def test_card_precision_drops_cards_detected_on_earlier_days() -> None:
    frame, scores = _three_days_of_cards()
    assert card_precision_at_k_detected_removed(frame, scores, k=2) == 0.5
    assert card_precision_at_k(frame, scores, k=2) == 2 / 3  # the rule changes the answer


def test_reported_card_precision_uses_the_handbook_rule() -> None:
    """k = 100 keeps every card: day 1 A and C are frauds (2/100, both detected), day 2 only
    D is left (0/100), day 3 E and F (1/100); without the rule 2, 2 and 2 hits."""
    frame, scores = _three_days_of_cards()
    assert compute_metrics(frame, scores).card_precision_at_100 == pytest.approx(3 / 300)


def test_metrics_of_a_perfect_ranking() -> None:
    frame = _day_frame([("2018-01-01", i, int(i < 3)) for i in range(10)])
    metrics = compute_metrics(frame, np.linspace(1, 0, 10))
    assert metrics.auc_roc == 1.0
    assert metrics.average_precision == 1.0
    assert metrics.frauds == 3
