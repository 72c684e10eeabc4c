"""Training picks thresholds on validation; evaluation follows the handbook protocol."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd

from fraudscreen import history
from fraudscreen.model.evaluate import (
    ProtocolPeriods,
    card_precision_at_k,
    compute_metrics,
    evaluation_mask,
)
from fraudscreen.model.train import threshold_for_precision
from tests.service_support import run_cli


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


def test_metrics_of_a_perfect_ranking() -> None:
    frame = _day_frame([("2018-01-01", i, int(i < 3)) for i in range(10)])
    metrics = compute_metrics(frame, np.linspace(1, 0, 10))
    assert metrics.auc_roc == 1.0
    assert metrics.average_precision == 1.0
    assert metrics.frauds == 3


def test_cli_train_and_evaluate_small(tmp_path: Path) -> None:
    data = tmp_path / "h.csv.gz"
    out = run_cli(
        "simulate",
        "--out",
        str(data),
        "--customers",
        "300",
        "--terminals",
        "600",
        "--days",
        "60",
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    bundle = tmp_path / "bundle"
    out = run_cli(
        "train",
        str(data),
        "--out",
        str(bundle),
        "--train-end",
        "2018-05-10",
        "--max-trees",
        "30",
        "--quiet",
    )
    assert out.returncode == 0, out.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["metrics"]["test_period"] == ["2018-05-17", "2018-05-24"]
    out = run_cli("evaluate", str(bundle), str(data))
    assert out.returncode == 0, out.stderr
    assert "handbook: XGBoost | 0.862" in out.stdout
    assert f"fraudscreen ({manifest['model_version']})" in out.stdout


def test_cli_reports_a_bad_history_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("TRANSACTION_ID,TX_DATETIME\n1,2018-01-01\n")
    out = run_cli("train", str(bad), "--out", str(tmp_path / "b"))
    assert out.returncode == 2
    assert "missing required column" in out.stderr
    assert "Traceback" not in out.stderr
