"""Training from count tables and the cost-of-privacy evaluation, on real components.

The small simulation of conftest (400 cards, 800 terminals, 70 days) is enough to see a
model learn from an exact table; the end-to-end run uses a tiny config so the file stays
well under CI's budget.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import statistics
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fraudscreen import history
from fraudscreen.binschema import BinSchema
from fraudscreen.features.batch import compute_features
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.model.bundle import MODEL_INPUT_BIN_CODES, Thresholds, load_bundle
from fraudscreen.model.train_aggregates import (
    AggregateTrainingConfig,
    clamp_counts,
    exact_as_released,
    sum_tables,
    table_from_payload,
    train_from_table,
    weighted_rows,
    weighted_threshold_for_precision,
    write_aggregate_bundle,
)
from fraudscreen.privacy.aggregate import LabelledRow, exact_table
from fraudscreen.privacy.evaluation import (
    PrivacyReport,
    discrete_laplace_sd,
    run_privacy_evaluation,
)
from fraudscreen.privacy.evaluation_batches import assign_sites, feature_matrix, period_index
from fraudscreen.privacy.evaluation_config import PrivacyEvaluationConfig
from fraudscreen.privacy.evaluation_report import (
    JSON_FILE,
    MARKDOWN_FILE,
    PLOT_FILE,
    format_report,
    write_report,
)
from fraudscreen.privacy.release import (
    MECHANISMS,
    Mechanism,
    NoisyTable,
    ReleaseParameters,
    release,
)
from fraudscreen.privacy.seeded_noise import SeededDiscreteLaplace

SCHEMA = BinSchema.default()
SPLIT = dt.date(2018, 5, 20)  # train on days before, hold out the days after
TINY = PrivacyEvaluationConfig(
    sites=2,
    epsilons=(1.0, 8.0),
    train_end=SPLIT,
    train_days=14,
    period_days=7,
    repetitions=2,
    raw_max_trees=30,
    aggregate=AggregateTrainingConfig(num_trees=40),
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cell(amount: int) -> tuple[int, ...]:
    """A cell of the default schema: only the amount code varies."""
    return (amount,) + (0,) * (len(SCHEMA.binned) - 1)


@pytest.fixture(scope="module")
def small_features(small_history: pd.DataFrame) -> np.ndarray:
    return compute_features(small_history)


def _rows(frame: pd.DataFrame, features: np.ndarray, mask: np.ndarray) -> list[LabelledRow]:
    idx = np.flatnonzero(mask)
    return [
        LabelledRow(str(card), str(key), tuple(values), bool(fraud))
        for card, key, values, fraud in zip(
            frame[history.CUSTOMER_ID].to_numpy()[idx],
            frame[history.TRANSACTION_ID].to_numpy()[idx],
            features[idx].tolist(),
            frame[history.TX_FRAUD].to_numpy()[idx],
            strict=True,
        )
    ]


# -- weighted rows -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "fraud", "expected"),
    [
        (10, 3, (7, 3)),
        (10, -4, (10, 0)),  # negative noisy fraud -> no fraud
        (10, 14, (0, 10)),  # fraud above the total -> all fraud
        (-3, 2, (0, 0)),  # a negative total (possible after summing noise) -> nothing
        (0, 0, (0, 0)),
    ],
)
def test_clamp_counts(total: int, fraud: int, expected: tuple[int, int]) -> None:
    assert clamp_counts(total, fraud) == expected


def test_weighted_rows_from_counts() -> None:
    table = {_cell(4): (5, 5), _cell(0): (100, 3), _cell(2): (20, -2), _cell(1): (7, 9)}
    data = weighted_rows(table, SCHEMA)
    amount = SCHEMA.features.index("TX_AMOUNT")
    got = sorted(
        (int(row[amount]), int(label), float(weight))
        for row, label, weight in zip(data.rows, data.labels, data.weights, strict=True)
    )
    # (cell amount code, label, weight); zero-weight rows are left out
    assert got == [(0, 0, 97.0), (0, 1, 3.0), (1, 1, 7.0), (2, 0, 20.0), (4, 1, 5.0)]
    assert data.rows.shape == (5, len(SCHEMA.features))
    assert data.total == 132.0
    assert data.frauds == 15.0
    unbinned = [i for i in range(len(SCHEMA.features)) if i not in SCHEMA.binned]
    assert not data.rows[:, unbinned].any()  # unbinned features are 0, as at serving


def test_weighted_rows_reject_a_foreign_cell() -> None:
    with pytest.raises(ValueError, match="codes"):
        weighted_rows({(1, 2): (3, 1)}, SCHEMA)


def test_sum_tables_adds_before_clamping() -> None:
    a = {_cell(0): (50, -3), _cell(1): (20, 2)}
    b = NoisyTable(
        cells={_cell(0): (40, 5)},
        epsilon=1.0,
        delta=1e-7,
        total_scale=4.0,
        fraud_scale=4.0,
        threshold=66,
        mechanism="test",
    )
    summed = sum_tables([a, b, {}])
    assert summed == {_cell(0): (90, 2), _cell(1): (20, 2)}  # -3 + 5, not max(-3, 0) + 5
    assert exact_as_released({_cell(0): (7, 3)}) == {_cell(0): (10, 3)}


def test_table_from_payload() -> None:
    payload = {"cells": [[list(_cell(3)), 80, 4], [list(_cell(0)), 500, -1]]}
    assert table_from_payload(payload) == {_cell(3): (80, 4), _cell(0): (500, -1)}


def test_weighted_threshold_never_splits_a_cell() -> None:
    scores = np.array([0.9, 0.9, 0.5, 0.5, 0.1])
    labels = np.array([1, 0, 1, 0, 0], dtype=np.int8)
    weights = np.array([8.0, 2.0, 1.0, 9.0, 80.0])
    # cut at 0.9: 8/10 fraud; at 0.5: 9/20; at 0.1: 9/100
    assert weighted_threshold_for_precision(scores, labels, weights, 0.8) == 0.9
    assert weighted_threshold_for_precision(scores, labels, weights, 0.4) == 0.5
    assert weighted_threshold_for_precision(scores, labels, weights, 0.05) == 0.1
    assert weighted_threshold_for_precision(scores, labels, weights, 0.99) == 0.9


# -- training from a table ------------------------------------------------------------------


def test_train_from_exact_table_learns(
    small_history: pd.DataFrame, small_features: np.ndarray
) -> None:
    days = small_history[history.TX_DATETIME].dt.normalize()
    train = (days < pd.Timestamp(SPLIT)).to_numpy()
    test = ~train
    exact = exact_table(_rows(small_history, small_features, train), SCHEMA, 10**9)
    booster = train_from_table(exact_as_released(exact), SCHEMA)

    codes = SCHEMA.transform_matrix(small_features[test])
    labels = small_history[history.TX_FRAUD].to_numpy()[test]
    auc = roc_auc_score(labels, booster.predict(codes))
    assert auc > 0.75, f"AUC {auc:.3f} on held-out rows in code space"
    assert booster.num_feature() == len(SCHEMA.features)  # full-width input


def test_train_from_table_refuses_one_class() -> None:
    with pytest.raises(ValueError, match="one class"):
        train_from_table({_cell(0): (100, 0), _cell(1): (50, -5)}, SCHEMA)
    with pytest.raises(ValueError, match="empty"):
        train_from_table({}, SCHEMA)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_train_from_noisy_tables(
    small_history: pd.DataFrame, small_features: np.ndarray, mechanism: Mechanism
) -> None:
    """The real release path feeds training: noisy, (thresholded,) summed, clamped."""
    days = small_history[history.TX_DATETIME].dt.normalize()
    weeks = ((days - days.min()).dt.days // 7).to_numpy()
    params = ReleaseParameters(epsilon=8.0, delta=1e-7, max_contributions=2)
    released = [
        release(
            mechanism,
            exact_table(_rows(small_history, small_features, weeks == w), SCHEMA, 2),
            SCHEMA,
            params,
        )
        for w in range(4, 7)
    ]
    summed = sum_tables(released)
    if mechanism == "known_domain":
        assert set(summed) == set(SCHEMA.domain())
        assert any(total <= 0 for total, _ in summed.values())  # noise around empty cells
    booster = train_from_table(summed, SCHEMA, AggregateTrainingConfig(num_trees=5))
    assert isinstance(booster, lightgbm.Booster)


def test_write_aggregate_bundle(
    small_history: pd.DataFrame, small_features: np.ndarray, tmp_path: Path
) -> None:
    days = small_history[history.TX_DATETIME].dt.normalize()
    fit = (days < pd.Timestamp(SPLIT)).to_numpy()
    table = exact_as_released(exact_table(_rows(small_history, small_features, fit), SCHEMA, 10**9))
    validation = exact_as_released(
        exact_table(_rows(small_history, small_features, ~fit), SCHEMA, 10**9)
    )
    booster = train_from_table(table, SCHEMA, AggregateTrainingConfig(num_trees=20))
    write_aggregate_bundle(tmp_path / "dp", booster, table, SCHEMA, validation_table=validation)
    bundle = load_bundle(tmp_path / "dp")
    assert bundle.manifest.model_input == MODEL_INPUT_BIN_CODES
    assert bundle.reads_bin_codes and bundle.bin_schema == SCHEMA
    golden = np.asarray(bundle.golden.rows)
    assert np.allclose(booster.predict(golden), bundle.golden.scores)
    assert not np.isnan(golden).any() and golden.min() == -1  # code space, missing = -1
    assert 0 <= bundle.manifest.thresholds.review <= bundle.manifest.thresholds.decline <= 1

    given = Thresholds(review=0.2, decline=0.8)
    write_aggregate_bundle(tmp_path / "given", booster, table, SCHEMA, thresholds=given)
    assert load_bundle(tmp_path / "given").manifest.thresholds == given
    with pytest.raises(ValueError, match="thresholds"):
        write_aggregate_bundle(tmp_path / "none", booster, table, SCHEMA)


# -- the evaluation ---------------------------------------------------------------------------


def test_sites_and_periods(small_history: pd.DataFrame) -> None:
    sites = assign_sites(small_history, 3)
    assert set(np.unique(sites)) == {0, 1, 2}
    terminals = small_history[history.TERMINAL_ID].to_numpy()
    assert (sites == terminals % 3).all()
    named = small_history.assign(
        **{history.TERMINAL_ID: small_history[history.TERMINAL_ID].astype(str)}
    )
    assert set(np.unique(assign_sites(named, 3))) == {0, 1, 2}

    periods = period_index(small_history, TINY)
    days = small_history[history.TX_DATETIME].dt.normalize()
    inside = ((days >= pd.Timestamp(TINY.train_start)) & (days < pd.Timestamp(SPLIT))).to_numpy()
    assert ((periods >= 0) == inside).all()
    assert set(np.unique(periods[inside])) == {0, 1}


def test_site_features_see_only_the_sites_journal(small_history: pd.DataFrame) -> None:
    sites = assign_sites(small_history, 2)
    whole = feature_matrix(small_history, sites, site_features=False, timezone="UTC")
    local = feature_matrix(small_history, sites, site_features=True, timezone="UTC")
    terminal = [i for i, name in enumerate(FEATURE_NAMES) if name.startswith("TERMINAL_ID")]
    assert np.array_equal(whole[:, terminal], local[:, terminal])  # a terminal has one site
    velocity = FEATURE_NAMES.index("CUSTOMER_ID_NB_TX_30DAY_WINDOW")
    assert (local[:, velocity] <= whole[:, velocity]).all()
    assert (local[:, velocity] < whole[:, velocity]).any()


def test_config_rejects_partial_periods() -> None:
    with pytest.raises(ValueError, match="whole number of periods"):
        PrivacyEvaluationConfig(train_days=10, period_days=7)
    with pytest.raises(ValueError, match="epsilon"):
        PrivacyEvaluationConfig(epsilons=(0.0,))
    with pytest.raises(ValueError, match="unknown mechanism"):
        PrivacyEvaluationConfig(mechanisms=("laplace",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="twice"):
        PrivacyEvaluationConfig(mechanisms=("threshold", "threshold"))
    with pytest.raises(ValueError, match="at least one mechanism"):
        PrivacyEvaluationConfig(mechanisms=())
    assert PrivacyEvaluationConfig().mechanisms == ("known_domain", "threshold")


@pytest.fixture(scope="module")
def tiny_report(small_history: pd.DataFrame) -> PrivacyReport:
    return run_privacy_evaluation(small_history, TINY, progress=False)


def test_evaluation_rows(tiny_report: PrivacyReport) -> None:
    labels = [row.label for row in tiny_report.rows]
    assert labels[0].startswith("raw rows, 1-week")
    assert labels[1] == "raw rows, 14-day window"
    dp_rows = tiny_report.rows[4:]
    assert [row.epsilon for row in tiny_report.rows[2:4]] == [math.inf, math.inf]
    # both mechanisms side by side at each epsilon, known domain (the default) first
    assert [(row.mechanism, row.epsilon) for row in dp_rows] == [
        ("known_domain", 1.0),
        ("threshold", 1.0),
        ("known_domain", 8.0),
        ("threshold", 8.0),
    ]
    assert labels[4:] == [
        "DP known domain, ε = 1",
        "DP threshold, ε = 1",
        "DP known domain, ε = 8",
        "DP threshold, ε = 8",
    ]
    assert all(row.mechanism is None for row in tiny_report.rows[:4])
    assert [len(row.runs) for row in tiny_report.rows] == [1, 1, 1, 1, 2, 2, 2, 2]
    tests = {m.transactions for row in tiny_report.rows for m in row.runs}
    assert len(tests) == 1  # every model is scored on the same test rows
    no_noise = tiny_report.rows[3]
    assert no_noise.failed_runs == 0
    assert no_noise.mean("auc_roc") > 0.7, "the exact binned table must beat a random model"
    known_8 = dp_rows[2]
    assert known_8.failed_runs == 0
    assert known_8.mean("auc_roc") > 0.7, "at ε = 8 known-domain noise is small"
    for stats in tiny_report.selection:
        assert 0 <= stats.cells_share <= stats.transactions_share <= 1
        assert stats.epsilon_spent <= stats.epsilon * (1 + 1e-9)
        assert stats.threshold >= TINY.max_contributions
    assert tiny_report.selection[-1].epsilon_spent == pytest.approx(8.0, rel=1e-6)
    assert [s.epsilon for s in tiny_report.known_domain] == [1.0, 8.0]
    for known in tiny_report.known_domain:
        assert known.epsilon_spent <= known.epsilon
        assert known.epsilon_spent == pytest.approx(known.epsilon, rel=1e-9)
        assert known.delta_spent == 0.0
        assert known.cells == SCHEMA.domain_size()
        assert known.scale == pytest.approx(TINY.max_contributions / known.epsilon)
        assert known.count_sd == pytest.approx(discrete_laplace_sd(known.scale))
        assert known.summed_sd == pytest.approx(known.count_sd * math.sqrt(4))  # 4 batches
    assert tiny_report.data.bounded_rows <= tiny_report.data.window_rows


def test_evaluation_writes_markdown_and_png(tiny_report: PrivacyReport, tmp_path: Path) -> None:
    written = write_report(tiny_report, tmp_path / "out")
    assert [p.name for p in written] == [MARKDOWN_FILE, PLOT_FILE, JSON_FILE]
    text = (tmp_path / "out" / MARKDOWN_FILE).read_text()
    assert "| DP known domain, ε = 8 |" in text
    assert "| DP threshold, ε = 8" in text
    assert "no noise (ε = ∞)" in text
    assert "## The mechanisms side by side" in text
    assert "| 8 | " in text.split("## The mechanisms side by side")[1]
    assert "## Known domain: noise on every cell" in text
    assert "released iff noisy total >" in text
    png = (tmp_path / "out" / PLOT_FILE).read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    data = json.loads((tmp_path / "out" / JSON_FILE).read_text())
    assert data["config"]["mechanisms"] == ["known_domain", "threshold"]
    assert [r["mechanism"] for r in data["rows"]][4:] == [*MECHANISMS, *MECHANISMS]
    assert [k["delta_spent"] for k in data["known_domain"]] == [0.0, 0.0]


def test_report_of_one_mechanism_has_only_its_sections(
    tiny_report: PrivacyReport, tmp_path: Path
) -> None:
    only_known = dataclasses.replace(
        tiny_report,
        config=dataclasses.replace(tiny_report.config, mechanisms=("known_domain",)),
        rows=tuple(r for r in tiny_report.rows if r.mechanism != "threshold"),
        selection=(),
    )
    text = format_report(only_known)
    assert "| DP known domain, ε = 1 |" in text and "DP threshold" not in text
    assert "side by side" not in text and "released iff" not in text
    write_report(only_known, tmp_path)  # the plot draws the one curve
    only_threshold = dataclasses.replace(
        tiny_report,
        config=dataclasses.replace(tiny_report.config, mechanisms=("threshold",)),
        rows=tuple(r for r in tiny_report.rows if r.mechanism != "known_domain"),
        known_domain=(),
    )
    text = format_report(only_threshold)
    assert "| DP threshold, ε = 1" in text and "DP known domain" not in text
    assert "Known domain:" not in text and "released iff" in text


def test_a_seed_makes_the_privacy_table_reproducible(small_history: pd.DataFrame) -> None:
    """`evaluate --privacy --seed`: the same noise, so the same table, run after run."""
    config = dataclasses.replace(TINY, epsilons=(1.0,), repetitions=1, seed=11)
    first = run_privacy_evaluation(small_history, config, progress=False)
    again = run_privacy_evaluation(small_history, config, progress=False)
    noisy = [row for row in first.rows if row.mechanism is not None]
    assert {row.mechanism for row in noisy} == {"known_domain", "threshold"}
    assert [row.runs for row in first.rows] == [row.runs for row in again.rows]
    assert "NumPy with seed 11" in first.markdown()  # the report says how noise was drawn


def test_seeded_noise_is_discrete_laplace_of_the_scale() -> None:
    draws = SeededDiscreteLaplace(1)([0] * 200_000, 2.0)
    assert SeededDiscreteLaplace(1)([0] * 200_000, 2.0) == draws
    assert all(isinstance(z, int) for z in draws[:10])
    assert statistics.fmean(draws) == pytest.approx(0.0, abs=0.05)
    assert statistics.pstdev(draws) == pytest.approx(discrete_laplace_sd(2.0), rel=0.02)
