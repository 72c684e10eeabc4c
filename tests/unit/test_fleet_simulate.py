"""The fleet simulator: realistic shops, cards that mostly shop at home, the handbook's fraud
scaled to the fleet, and the card-testing drift (scenario 4) from its start day."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from fraudscreen.config import DEFAULT_BUNDLE
from fraudscreen.features.batch import compute_features
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.fleet_simulate import (
    EXPECTED_TX_PER_CARD_DAY,
    FLEET_COLUMNS,
    ROAM_RADIUS,
    SCENARIO_2_PER_TERMINAL_DAY,
    SCENARIO_4,
    SCENARIO_4_CASH_OUT_MINOR,
    SCENARIO_4_MCCS,
    SCENARIO_4_TEST_MINOR,
    SCENARIO_4_TESTS,
    FleetConfig,
    fleet_profiles,
    simulate_fleet,
)
from fraudscreen.history import (
    AMOUNT_MINOR,
    CARD_PAN,
    CUSTOMER_ID,
    ENTRY_MODE,
    MCC,
    SITE_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
    HistoryError,
    validate_history,
)
from fraudscreen.model.bundle import load_bundle
from fraudscreen.model.train import TrainingConfig
from fraudscreen.simulate import (
    SCENARIO_2_WINDOW_DAYS,
    TX_TIME_DAYS,
    TX_TIME_SECONDS,
    SimulationConfig,
    simulate,
)
from tests.unit.test_simulate import EXPECTED_DTYPES, luhn_valid

DRIFT_DAY = 30
FLEET = FleetConfig(sites=6, days=45, drift_start=DRIFT_DAY, seed=3)
RISKY_MODES = {"magstripe", "fallback", "manual"}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simulate_fleet(FLEET, progress=False)


@pytest.fixture(scope="module")
def calm() -> pd.DataFrame:
    """The same fleet without the drift."""
    return simulate_fleet(FleetConfig(sites=6, days=45, seed=3), progress=False)


def test_columns_are_the_simulators_plus_site_id(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == [*EXPECTED_DTYPES, SITE_ID]
    assert list(frame.columns) == list(FLEET_COLUMNS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == {**EXPECTED_DTYPES, SITE_ID: "int64"}
    assert isinstance(frame.index, pd.RangeIndex)


def test_ids_unique_and_times_sorted(frame: pd.DataFrame) -> None:
    np.testing.assert_array_equal(frame[TRANSACTION_ID], np.arange(len(frame)))
    assert frame[TX_DATETIME].is_monotonic_increasing
    expected = pd.Timestamp(FLEET.start) + pd.to_timedelta(frame[TX_TIME_SECONDS], unit="s")
    assert (frame[TX_DATETIME] == expected).all()
    assert (frame[TX_TIME_DAYS] == frame[TX_TIME_SECONDS] // 86_400).all()
    assert frame[TX_TIME_DAYS].between(0, FLEET.days - 1).all()


def test_shops_have_20_to_50_terminals_unique_across_the_fleet(frame: pd.DataFrame) -> None:
    profiles = fleet_profiles(FLEET)
    sites = profiles.sites.set_index(SITE_ID)
    assert len(sites) == FLEET.sites
    assert sites["nb_terminals"].between(20, 50).all()
    terminals = profiles.terminals
    np.testing.assert_array_equal(terminals[TERMINAL_ID], np.arange(len(terminals)))
    assert (terminals.groupby(SITE_ID).size() == sites["nb_terminals"]).all()
    # Every terminal belongs to one shop, and a shop is one merchant category.
    assert (frame.groupby(TERMINAL_ID)[SITE_ID].nunique() == 1).all()
    site_of = terminals.set_index(TERMINAL_ID)[SITE_ID]
    np.testing.assert_array_equal(site_of.loc[frame[TERMINAL_ID]].to_numpy(), frame[SITE_ID])
    assert (frame.groupby(SITE_ID)[MCC].nunique() == 1).all()
    used = frame.groupby(SITE_ID)[TERMINAL_ID].nunique()
    assert (used == sites["nb_terminals"]).all()  # ~2,000 payments a day reach every lane


def test_daily_volume_of_every_shop_is_near_its_1000_to_3000_target(calm: pd.DataFrame) -> None:
    sites = fleet_profiles(FLEET).sites.set_index(SITE_ID)
    assert sites["target_tx_per_day"].between(1_000, 3_000).all()
    daily = calm.groupby([SITE_ID, TX_TIME_DAYS]).size().unstack()
    assert daily.shape == (FLEET.sites, FLEET.days)
    ratio = daily.div(sites["target_tx_per_day"], axis=0).to_numpy()
    assert 0.95 < np.median(ratio) < 1.05
    assert ratio.min() > 0.8
    assert ratio.max() < 1.3  # roaming in and out roughly balance
    assert daily.to_numpy().min() >= 800
    assert daily.to_numpy().max() <= 3_600


def test_cards_mostly_pay_at_home_and_some_roam_to_shops_in_reach(calm: pd.DataFrame) -> None:
    profiles = fleet_profiles(FLEET)
    customers = profiles.customers.set_index(CUSTOMER_ID)
    home = customers["HOME_SITE_ID"].to_numpy()[calm[CUSTOMER_ID].to_numpy()]
    at_home = calm[SITE_ID].to_numpy() == home
    assert 0.85 < at_home.mean() < 0.95
    per_card = pd.DataFrame({"card": calm[CUSTOMER_ID], "home": at_home}).groupby("card")["home"]
    share = per_card.mean()[per_card.size() >= 20]
    assert (share > 0.5).mean() > 0.98  # nearly every card pays mostly at home
    assert (share < 1).mean() > 0.5  # most regular cards also pay elsewhere now and then
    assert 0.3 < calm.groupby(CUSTOMER_ID)[SITE_ID].nunique().gt(1).mean() < 0.95
    # Roaming follows the handbook's reach: only shops within its radius of the card.
    sites = profiles.sites.set_index(SITE_ID)
    cx = customers.loc[calm[CUSTOMER_ID], "x_customer_id"].to_numpy()
    cy = customers.loc[calm[CUSTOMER_ID], "y_customer_id"].to_numpy()
    sx = sites.loc[calm[SITE_ID], "x_site"].to_numpy()
    sy = sites.loc[calm[SITE_ID], "y_site"].to_numpy()
    assert (np.hypot(cx - sx, cy - sy) < ROAM_RADIUS).all()


def test_cards_and_terminals_grow_with_the_fleet() -> None:
    small, large = fleet_profiles(FleetConfig(sites=5)), fleet_profiles(FleetConfig(sites=40))
    for profiles in (small, large):
        expected = profiles.sites["target_tx_per_day"].sum() / EXPECTED_TX_PER_CARD_DAY
        assert len(profiles.customers) == pytest.approx(expected, rel=0.01)
        assert len(profiles.terminals) == profiles.sites["nb_terminals"].sum()
    assert len(large.customers) > 6 * len(small.customers)
    assert len(large.terminals) > 6 * len(small.terminals)


def test_pans_are_luhn_valid_and_one_per_card(frame: pd.DataFrame) -> None:
    pans = frame.groupby(CUSTOMER_ID)[CARD_PAN].agg(["nunique", "first"])
    assert (pans["nunique"] == 1).all()
    assert pans["first"].is_unique
    assert all(len(pan) == 16 and pan.startswith("400000") for pan in pans["first"])
    assert all(luhn_valid(pan) for pan in pans["first"])


def test_fraud_share_and_mix_stay_near_the_handbooks(calm: pd.DataFrame) -> None:
    assert set(calm[TX_FRAUD_SCENARIO].unique()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(calm[TX_FRAUD], (calm[TX_FRAUD_SCENARIO] > 0).astype(np.int8))
    # After scenario 2's 28-day windows have filled up, the handbook's steady state is
    # ~0.56 % (scenario 2) + ~0.28 % (scenario 3) + ~0.06 % (scenario 1).
    steady = calm[calm[TX_TIME_DAYS] >= SCENARIO_2_WINDOW_DAYS]
    share = steady[TX_FRAUD_SCENARIO].value_counts(normalize=True)
    assert 0.006 < steady[TX_FRAUD].mean() < 0.013
    assert 0.0015 < share[3] < 0.0045
    assert 0.0002 < share[1] < 0.0015


def test_scenario_2_compromises_terminals_at_the_handbooks_rate_per_terminal() -> None:
    config = FleetConfig(sites=40, days=60, seed=1)
    fleet = simulate_fleet(config, progress=False)
    terminals = len(fleet_profiles(config).terminals)
    compromised = fleet.loc[fleet[TX_FRAUD_SCENARIO] == 2, TERMINAL_ID].nunique()
    expected = 2 / 10_000 * terminals * config.days  # the handbook: 2 of 10,000 terminals a day
    assert expected == pytest.approx(SCENARIO_2_PER_TERMINAL_DAY * terminals * config.days)
    # Compromises are spread evenly over the days; a terminal drawn twice counts once, and
    # one compromised late may have no row of its own labelled 2 yet.
    assert expected - 3 <= compromised <= expected + 1


def test_no_card_testing_before_the_drift_and_every_day_after(frame: pd.DataFrame) -> None:
    tested = frame[frame[TX_FRAUD_SCENARIO] == SCENARIO_4]
    assert tested[TX_TIME_DAYS].min() == DRIFT_DAY
    assert set(tested[TX_TIME_DAYS]) == set(range(DRIFT_DAY, FLEET.days))
    assert (tested[TX_FRAUD] == 1).all()
    after = frame[TX_TIME_DAYS] >= DRIFT_DAY
    assert 0.001 < (frame.loc[after, TX_FRAUD_SCENARIO] == SCENARIO_4).mean() < 0.005


def test_card_testing_is_bursts_of_small_payments_then_a_larger_one(frame: pd.DataFrame) -> None:
    tested = frame[frame[TX_FRAUD_SCENARIO] == SCENARIO_4]
    bursts = tested.groupby([CUSTOMER_ID, TX_TIME_DAYS])
    low, high = SCENARIO_4_TESTS
    assert bursts.size().between(low + 1, high + 1).all()
    assert (bursts[SITE_ID].nunique() == 1).all()
    assert frame.loc[frame[SITE_ID].isin(tested[SITE_ID]), MCC].isin(SCENARIO_4_MCCS).all()
    span = bursts[TX_TIME_SECONDS].agg(lambda s: s.max() - s.min())
    assert span.median() < 3_600  # minutes to an hour
    is_last = tested.index.isin(bursts[TX_TIME_SECONDS].idxmax())
    last = tested.loc[is_last, AMOUNT_MINOR]
    tests = tested.loc[~is_last, AMOUNT_MINOR]
    assert tests.between(*SCENARIO_4_TEST_MINOR).mean() > 0.95  # ties at the end aside
    assert last.between(*SCENARIO_4_CASH_OUT_MINOR).mean() > 0.95
    assert tested[ENTRY_MODE].isin(RISKY_MODES | {"contactless"}).mean() > 0.9
    assert tested[ENTRY_MODE].isin(RISKY_MODES).mean() > 0.45


def test_drift_leaves_every_day_before_it_unchanged(
    frame: pd.DataFrame, calm: pd.DataFrame
) -> None:
    before = frame[frame[TX_TIME_DAYS] < DRIFT_DAY]
    pd.testing.assert_frame_equal(before, calm[calm[TX_TIME_DAYS] < DRIFT_DAY])
    genuine = frame[frame[TX_FRAUD_SCENARIO] != SCENARIO_4].drop(columns=TRANSACTION_ID)
    pd.testing.assert_frame_equal(genuine.reset_index(drop=True), calm.drop(columns=TRANSACTION_ID))


def test_same_seed_same_fleet_other_seed_other_fleet(frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate_fleet(FLEET, progress=False), frame)
    other = simulate_fleet(
        FleetConfig(sites=6, days=45, drift_start=DRIFT_DAY, seed=4), progress=False
    )
    assert not other.equals(frame)
    assert set(other[CARD_PAN]).isdisjoint(set(frame[CARD_PAN].head(1000)))


def test_features_and_history_take_the_fleet_unchanged(tmp_path: Path) -> None:
    config = FleetConfig(sites=2, days=10, drift_start=5, seed=0)
    fleet = simulate_fleet(config, progress=False)
    history = validate_history(fleet)
    np.testing.assert_array_equal(history[SITE_ID], fleet[SITE_ID])
    features = compute_features(history)
    assert features.shape == (len(fleet), len(FEATURE_NAMES))
    assert np.isfinite(features).all()
    bad = fleet.head(3).assign(**{SITE_ID: [0, -1, 0]})
    with pytest.raises(HistoryError, match=r"row 2, column SITE_ID"):
        validate_history(bad)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sites": 0},
        {"days": 0},
        {"seed": -1},
        {"drift_start": 45},
        {"drift_start": -1},
        {"site_terminals": (0, 3)},
        {"site_daily_transactions": (300, 200)},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        FleetConfig(**{"days": 45, **kwargs})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sites": 2.5},
        {"drift_start": True},
        {"site_terminals": (1, 2, 3)},
        {"start": datetime.datetime(2018, 4, 1, 12)},
    ],
)
def test_config_rejects_bad_types(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        FleetConfig(**kwargs)  # type: ignore[arg-type]


def _digest(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for name in frame.columns:
        column = frame[name]
        digest.update(f"{name}:{column.dtype}".encode())
        if column.dtype == "str":
            digest.update("\n".join(column.tolist()).encode())
        else:
            digest.update(np.ascontiguousarray(column.to_numpy()).tobytes())
    return digest.hexdigest()


def test_single_population_is_unchanged_by_the_fleet() -> None:
    """The digest of this small data set from `simulate.py` before the fleet simulator
    shared its pieces: the default data set (and the shipped model) must not move."""
    frame = simulate(
        SimulationConfig(customers=200, terminals=400, days=40, seed=7), progress=False
    )
    assert len(frame) == 14_449
    assert _digest(frame) == "6e5ad4b611ba9727f5d734bfd93f2ab66fa549aeafbd980be04fbf303925e690"


@pytest.mark.slow
def test_card_testing_is_new_to_the_shipped_model_and_learnable_from_our_features() -> None:
    """The drift does what it is for: the shipped model misses it, a model retrained on the
    product's own features (each shop's, as its gateway computes them) after it starts finds
    it. Scored on scenario 4 against genuine rows only, on days after a 7-day label delay."""
    config = FleetConfig(sites=4, days=72, drift_start=30, seed=5)
    fleet = validate_history(simulate_fleet(config, progress=False))
    features = np.empty((len(fleet), len(FEATURE_NAMES)))
    for rows in fleet.groupby(SITE_ID).indices.values():
        features[rows] = compute_features(fleet.iloc[rows].reset_index(drop=True))
    day = ((fleet[TX_DATETIME] - pd.Timestamp(config.start)).dt.days).to_numpy()
    scenario = fleet[TX_FRAUD_SCENARIO].to_numpy()
    train = (day >= 30) & (day < 51)
    test = (day >= 58) & np.isin(scenario, [0, SCENARIO_4])
    assert (scenario[test] == SCENARIO_4).sum() > 100

    shipped = lightgbm.Booster(model_str=load_bundle(DEFAULT_BUNDLE).model_text)
    params = {**TrainingConfig().lightgbm_params(), "num_threads": 1}
    data = lightgbm.Dataset(features[train], fleet[TX_FRAUD].to_numpy()[train])
    retrained = lightgbm.train(params, data, num_boost_round=100)
    truth = scenario[test] == SCENARIO_4
    before = average_precision_score(truth, shipped.predict(features[test]))
    after = average_precision_score(truth, retrained.predict(features[test]))
    assert before < 0.2  # measured 0.04
    assert after > 0.5  # measured 0.71
