"""The fleet measurement: the evaluation tables batches by the gateway's own path, scores
with the handbook's Card Precision rule, and runs end to end on a tiny fleet (CI size)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudscreen import history
from fraudscreen.config.settings import PrivacyConfig
from fraudscreen.fleet_simulate import FleetConfig, simulate_fleet_rows
from fraudscreen.model.evaluate import card_precision_at_k, card_precision_at_k_detected_removed
from fraudscreen.model.stacked import score_rows
from fraudscreen.model.train_aggregates import exact_as_released, sum_tables
from fraudscreen.privacy.aggregate import LabelledRow, exact_table
from fraudscreen.privacy.cell_counts import unique_rows
from fraudscreen.privacy.fleet_evaluation import (
    BAND_VARIANTS,
    CellScorer,
    ExactTable,
    FleetEvaluationConfig,
    Windows,
    fleet_history,
    release_all,
    schema_cases,
    simulate_fleet_history,
    train_shipped,
    window_batches,
)
from fraudscreen.privacy.fleet_report import (
    FleetRunConfig,
    recovery,
    recovery_line,
    run_fleet_privacy,
    write_fleet_report,
)
from fraudscreen.score_bands import score_band_schema, with_scores


@pytest.mark.parametrize(
    ("variant", "period_days"),
    [("score bands", 1), ("score bands", 2), ("16 score bands (720 cells)", 2)],
)
def test_evaluation_batches_are_the_gateway_tables(variant: str, period_days: int) -> None:
    """One code path: the evaluation's vectorized (site, period) tables equal what each
    gateway's `exact_table` makes of its own journal rows for that period (each card
    bounded per day); also for the card-burst schema (card features) on a fleet where card
    testing runs."""
    burst = variant == "score bands"
    fleet = simulate_fleet_history(2, days=12, drift_start=0 if burst else None)
    scores = np.random.default_rng(0).random(len(fleet.frame))
    rows = with_scores(fleet.features, scores)
    schema = score_band_schema((0.2, 0.5, 0.8, 0.95), BAND_VARIANTS[variant][1], model_version="m")
    windows = Windows(fleet.frame[history.TX_DATETIME].min().date() + dt.timedelta(days=8), 4)
    batches = window_batches(fleet, rows, schema, windows, 2, period_days)
    periods = 4 // period_days
    assert len(batches) == 2 * periods
    days = (
        fleet.frame[history.TX_DATETIME].dt.normalize() - pd.Timestamp(windows.aggregate_start)
    ).dt.days.to_numpy()
    checked = 0
    for site in range(2):
        for period in range(periods):
            idx = np.flatnonzero((fleet.site_of == site) & (days // period_days == period))
            idx = idx[(days[idx] >= 0) & (days[idx] < 4)]
            journal = [
                LabelledRow(
                    str(fleet.frame[history.CUSTOMER_ID].iat[i]),
                    f"{fleet.frame[history.TERMINAL_ID].iat[i]}:"
                    f"{fleet.frame[history.TRANSACTION_ID].iat[i]}",
                    tuple(rows[i]),
                    bool(fleet.frame[history.TX_FRAUD].iat[i]),
                    day=int(days[i]),
                )
                for i in idx.tolist()
            ]
            expected = exact_table(journal, schema, 2)
            assert batches[site * periods + period] == expected
            checked += sum(g + f for g, f in expected.values())
    assert checked > 1000  # real days, not empty tables


def test_the_evaluation_releases_as_a_default_gateway() -> None:
    """What the fleet report measures is what a gateway on defaults releases."""
    evaluation = FleetRunConfig().evaluation()
    assert evaluation.period_days == PrivacyConfig().period_days
    assert evaluation.max_contributions == PrivacyConfig().max_contributions


def test_card_precision_removes_cards_detected_on_an_earlier_day() -> None:
    day1, day2 = pd.Timestamp("2018-05-01 10:00"), pd.Timestamp("2018-05-02 10:00")
    frame = pd.DataFrame(
        {
            history.TX_DATETIME: [day1, day1, day2, day2],
            history.CUSTOMER_ID: ["a", "b", "a", "b"],
            history.TX_FRAUD: [1, 0, 1, 0],
        }
    )
    scores = np.array([0.9, 0.1, 0.9, 0.1])
    # k = 1: day 1 catches card a; day 2 a is known and removed, b (genuine) is the top card
    assert card_precision_at_k_detected_removed(frame, scores, k=1) == pytest.approx(0.5)
    assert card_precision_at_k(frame, scores, k=1) == pytest.approx(1.0)


def test_the_fleet_measurement_end_to_end(tmp_path: Path) -> None:
    fine = "score bands x fine card burst"
    config = FleetRunConfig(
        sites=(2,),
        epsilons=(1.0, 4.0),
        draws=2,
        drift=True,
        schemas=("feature bins", "score bands", fine),
    )
    assert config.drift_schemas == ("score bands", fine)
    results = run_fleet_privacy(config, progress=False)
    (result,) = results
    labels = [(r.schema, r.label) for r in result.rows]
    assert ("-", "raw rows, 14-day window") in labels
    assert ("score bands", "ε = 1") in labels and ("score bands", "ε = 4") in labels
    # today's feature bins: the baseline, at the goal's epsilon only
    assert ("feature bins", "ε = 1") in labels and ("feature bins", "ε = 4") not in labels
    noisy = next(r for r in result.rows if r.schema == "score bands" and r.label == "ε = 1")
    assert len(noisy.runs) == 2  # one per noise draw
    assert all(0.0 <= r.average_precision <= 1.0 for r in noisy.runs)
    drift_labels = [r.label for r in result.drift_rows]
    assert drift_labels[0].startswith("shipped") and "ε = 1" in drift_labels
    assert {r.schema for r in result.drift_rows} == {"-", "score bands", fine}
    written = write_fleet_report(results, config, 1.0, tmp_path)
    markdown = written[0].read_text()
    assert "## 2 sites" in markdown and "### Drift, 2 sites" in markdown
    document = json.loads(written[2].read_text())
    assert document["fleets"][0]["recovery"] == recovery(result.drift_rows)
    assert "not measured at ε = 1" in recovery_line(result.drift_rows, "16 score bands only")
    by_schema = document["fleets"][0]["recovery_by_schema"]
    assert by_schema == {s: recovery(result.drift_rows, s) for s in config.drift_schemas}
    assert f"- {fine}: " in markdown
    assert written[1].stat().st_size > 1000  # the plot


def test_cell_scorer_serves_what_the_gateway_path_scores() -> None:
    """Predicting each distinct cell once gives the scores of `score_rows` (the stacked
    path) and of the feature-bin model on every row."""
    fleet = simulate_fleet_history(2, days=12, drift_start=None)
    rng = np.random.default_rng(1)
    rows = with_scores(fleet.features, rng.random(len(fleet.frame)))
    config = FleetRunConfig(sites=(2,)).evaluation()
    for case in schema_cases(["score bands", "feature bins"], rows[:, -1], config):
        windows = Windows(fleet.frame[history.TX_DATETIME].min().date() + dt.timedelta(days=4), 8)
        batches = window_batches(fleet, rows, case.schema, windows, 2, 4)
        booster = case.train(sum_tables(exact_as_released(b) for b in batches))
        sample = rows[:5000]
        if case.name == "score bands":
            expected = score_rows(booster, case.schema, sample)
        else:
            expected = booster.predict(case.schema.transform_matrix(sample[:, :-1]))
        np.testing.assert_array_equal(CellScorer(case, sample)(booster), expected)


def test_seeded_fleet_noise_reproduces_and_differs_by_draw() -> None:
    schema = score_band_schema((0.2, 0.5, 0.8), {}, model_version="m")
    batches: list[ExactTable] = [{(0,): (10, 1)}, {}, {(2,): (3, 2)}]
    config = FleetRunConfig(sites=(2,)).evaluation()
    params = config.params(1.0)
    first = release_all(batches, schema, params, config.noise(2, "score bands", 1.0, 0))
    assert first == release_all(batches, schema, params, config.noise(2, "score bands", 1.0, 0))
    # another draw, schema, epsilon or fleet, or the drifted fleet: other noise
    for other in (
        config.noise(2, "score bands", 1.0, 1),
        config.noise(2, "feature bins", 1.0, 0),
        config.noise(2, "score bands", 2.0, 0),
        config.noise(3, "score bands", 1.0, 0),
        replace(config, drifted=True).noise(2, "score bands", 1.0, 0),
    ):
        assert first != release_all(batches, schema, params, other)


def test_a_row_of_the_table_does_not_depend_on_what_else_the_run_measured() -> None:
    """Noise draws are named by fleet size, schema, epsilon and draw: measuring one schema
    alone gives its rows of the full run, to the last digit."""
    alone = FleetRunConfig(sites=(2,), epsilons=(1.0,), draws=1, schemas=("score bands",))
    both = replace(alone, epsilons=(0.5, 1.0), schemas=("feature bins", "score bands"))
    (first,) = run_fleet_privacy(alone, progress=False)
    (second,) = run_fleet_privacy(both, progress=False)
    wanted = ("score bands", "ε = 1")
    row = next(r for r in first.rows if (r.schema, r.label) == wanted)
    assert row == next(r for r in second.rows if (r.schema, r.label) == wanted)


def test_a_fleet_history_is_its_sites_journals_from_the_kept_day() -> None:
    """Built a site at a time from the day `keep_from` on, the fleet has the rows and
    features of the whole-table build; without scenario 4 a drifted fleet is the fleet
    simulated without drift, row for row and feature for feature."""
    config = FleetConfig(sites=3, days=12, drift_start=5)
    rows = simulate_fleet_rows(config, progress=False)
    whole = fleet_history(rows)
    assert len(whole.frame) == len(rows.scenario) and whole.sites == 3
    late = fleet_history(rows, keep_from=8)
    from_day_8 = np.flatnonzero(rows.raw.day >= 8)
    assert late.frame[history.TRANSACTION_ID].tolist() == from_day_8.tolist()
    np.testing.assert_array_equal(late.features, whole.features[from_day_8])
    assert (late.frame[history.TX_FRAUD_SCENARIO] == 4).any()

    steady = fleet_history(rows, keep_from=8, without_scenario=4)
    expected = simulate_fleet_history(3, days=12, drift_start=None, keep_from=8)
    pd.testing.assert_frame_equal(steady.frame, expected.frame)
    np.testing.assert_array_equal(steady.features, expected.features)
    np.testing.assert_array_equal(steady.site_of, expected.site_of)
    assert not (steady.frame[history.TX_FRAUD_SCENARIO] == 4).any()


def test_a_drifted_fleet_ships_the_model_of_its_steady_twin() -> None:
    """Drift starts with the aggregate window: the shipped week is the same in both
    fleets, so the report trains the shipped model once and evaluates both with it."""
    rows = simulate_fleet_rows(FleetConfig(sites=3, days=12, drift_start=7), progress=False)
    drifted = fleet_history(rows)
    steady = fleet_history(rows, without_scenario=4)
    start = drifted.frame[history.TX_DATETIME].min().date()
    config = FleetEvaluationConfig(Windows(start + dt.timedelta(days=7)), raw_trees=20)
    assert len(drifted.frame) > len(steady.frame)
    shipped = train_shipped(drifted, config).model_to_string()
    assert shipped == train_shipped(steady, config).model_to_string()
    later = FleetEvaluationConfig(Windows(start + dt.timedelta(days=9)), raw_trees=20)
    assert train_shipped(drifted, later).model_to_string() != (
        train_shipped(steady, later).model_to_string()
    )


@pytest.mark.parametrize(
    "matrix",
    [
        np.random.default_rng(0).integers(-1, 4, (5000, 6)).astype(np.float64),
        np.random.default_rng(1).integers(0, 3, (3000, 4)),
        np.array([[1.5, 2.0], [1.5, 2.0], [0.0, 1.0]]),  # not whole numbers: np.unique itself
        np.zeros((0, 3)),
    ],
)
def test_unique_rows_is_numpys_unique_by_rows(matrix: np.ndarray) -> None:
    unique, inverse, counts = np.unique(matrix, axis=0, return_inverse=True, return_counts=True)
    got = unique_rows(matrix)
    np.testing.assert_array_equal(got[0], unique)
    np.testing.assert_array_equal(got[1], inverse.ravel())
    np.testing.assert_array_equal(got[2], counts)
