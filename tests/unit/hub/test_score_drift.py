"""Score drift: PSI of the fleet's score-band distribution per period against the model's
training shares, on hand-made tables; where the reference comes from; feature drift
leaves the score column to it."""

from __future__ import annotations

import math

import pytest

from fraudscreen.binschema import Cell
from fraudscreen.hub.drift import RETRAIN_PSI, WATCH_PSI, drift_table
from fraudscreen.hub.score_drift import (
    REFERENCE_KEY,
    ScoreReference,
    band_totals,
    reference_from_manifest,
    score_drift,
)
from fraudscreen.hub.storage import CellSum
from fraudscreen.score_bands import (
    BAND_QUANTILES,
    BAND_QUANTILES_16,
    DEPLOYED_SCORE,
    score_band_schema,
)

# 4 bands x amount x terminal risk x entry mode (the drift mechanics, not the shipped layout)
SCHEMA = score_band_schema(
    (0.1, 0.5, 0.9),
    {
        "TX_AMOUNT": (25.0, 60.0, 120.0, 220.0),
        "TERMINAL_ID_RISK_7DAY_WINDOW": (0.0, 0.2),
        "ENTRY_MODE": (2.0,),
    },
    model_version="m1",
)
REFERENCE = ScoreReference((0.5, 0.3, 0.15, 0.05), "hand-made")


def table(per_band: list[int]) -> dict[Cell, CellSum]:
    """Each band's transactions split over two amount codes (the band is the last code)."""
    cells: dict[Cell, CellSum] = {}
    for band, count in enumerate(per_band):
        cells[(0, 1, 0, band)] = CellSum(count - count // 3, 0, 1)
        cells[(3, 0, -1, band)] = CellSum(count // 3, 0, 1)
    return cells


def hand_psi(p: list[float], q: list[float]) -> float:
    return sum((a - b) * math.log(a / b) for a, b in zip(p, q, strict=True))


def test_no_shift_stays_below_the_watch_line_and_a_shift_to_the_top_bands_is_flagged() -> None:
    tables = {
        "2018-08-01": table([5000, 3000, 1500, 500]),  # the training shares
        "2018-08-02": table([2000, 2000, 3000, 3000]),  # weight moved to the high scores
    }
    drift = score_drift(SCHEMA, tables, REFERENCE)
    assert drift.model_version == "m1" and drift.schema_hash == SCHEMA.hash
    assert drift.periods == ("2018-08-01", "2018-08-02")
    assert drift.totals == (10000, 10000)
    assert drift.values[0] == pytest.approx(0.0, abs=1e-12) and drift.values[0] < WATCH_PSI
    assert not drift.suggests_retraining(0)
    expected = hand_psi([0.2, 0.2, 0.3, 0.3], list(REFERENCE.shares))
    assert drift.values[1] == pytest.approx(expected) and expected > RETRAIN_PSI
    assert drift.suggests_retraining(1)
    assert drift.shares[1] == pytest.approx((0.2, 0.2, 0.3, 0.3))


def test_noisy_band_totals_are_summed_then_clamped_and_no_reference_gives_no_psi() -> None:
    cells = table([100, 50, 0, 0])
    cells[(1, 1, 1, 2)] = CellSum(-7, 0, 1)  # noise pushed an empty band below zero
    cells[(2, 1, 1, 3)] = CellSum(-3, 0, 1)
    cells[(2, 2, 1, 3)] = CellSum(5, 0, 1)  # band 3 sums to 2
    assert band_totals(SCHEMA, cells) == {0: 100, 1: 50, 2: 0.0, 3: 2}
    drift = score_drift(SCHEMA, {"2018-08-01": cells}, None)
    assert math.isnan(drift.values[0]) and not drift.suggests_retraining(0)
    assert drift.totals == (152,)
    empty = score_drift(SCHEMA, {"2018-08-01": {(0, 0, 0, 0): CellSum(-4, 0, 1)}}, REFERENCE)
    assert math.isnan(empty.values[0])  # nothing left after clamping: no share to compare


def test_the_reference_is_the_manifests_stored_shares_else_the_nominal_quantiles() -> None:
    stored = {"bin_schema_sha256": SCHEMA.hash, "rows": 1234, "shares": [0.4, 0.4, 0.1, 0.1]}
    found = reference_from_manifest(SCHEMA, {"training": {REFERENCE_KEY: stored}})
    assert found is not None and found.shares == (0.4, 0.4, 0.1, 0.1)
    assert "1234 training rows" in found.source
    # three edges are not the standard quantiles: without stored shares, nothing is known
    other = dict(stored, bin_schema_sha256="0" * 64)
    assert reference_from_manifest(SCHEMA, {"training": {REFERENCE_KEY: other}}) is None
    assert reference_from_manifest(SCHEMA, None) is None
    standard = score_band_schema(
        tuple(q / 2 for q in BAND_QUANTILES), model_version="m2"
    )  # 7 edges: the quantiles band_edges cuts at
    nominal = reference_from_manifest(standard, None)
    assert nominal is not None and "nominal" in nominal.source and "no release" in nominal.source
    assert len(nominal.shares) == 8 and sum(nominal.shares) == pytest.approx(1.0)
    assert nominal.shares[0] == pytest.approx(0.8) and nominal.shares[-1] == pytest.approx(0.001)
    # a bundle of the older 16-band layout still gets its nominal shares
    older = score_band_schema(tuple(q / 2 for q in BAND_QUANTILES_16), model_version="m0")
    old_nominal = reference_from_manifest(older, None)
    assert old_nominal is not None and len(old_nominal.shares) == 16
    assert old_nominal.shares[0] == pytest.approx(0.5)


def test_feature_drift_of_a_score_band_schema_leaves_the_score_to_score_drift() -> None:
    tables = {"2018-08-01": table([100, 0, 0, 0]), "2018-08-02": table([0, 0, 0, 100])}
    drift = drift_table(SCHEMA, tables, None)
    assert DEPLOYED_SCORE not in drift.features
    assert drift.features == ("TX_AMOUNT", "TERMINAL_ID_RISK_7DAY_WINDOW", "ENTRY_MODE")
    assert drift.values[1] == pytest.approx((0.0, 0.0, 0.0))  # only the score moved
