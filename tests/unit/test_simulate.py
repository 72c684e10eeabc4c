"""The simulator keeps the handbook's rules and adds consistent point-of-sale fields."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fraudscreen.history import (
    AMOUNT_MINOR,
    CARD_PAN,
    CURRENCY,
    CUSTOMER_ID,
    ENTRY_MODE,
    MCC,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
)
from fraudscreen.simulate import (
    TX_TIME_DAYS,
    TX_TIME_SECONDS,
    SimulationConfig,
    compromise_schedule,
    scenario_2_mask,
    simulate,
    simulate_profiles,
    write_transactions,
)
from fraudscreen.simulate_pos import (
    COUNTERFEIT_ENTRY_MODE_PROBABILITIES,
    GENUINE_ENTRY_MODE_PROBABILITIES,
    MCC_WEIGHTS,
)
from fraudscreen.transaction import EntryMode

SMALL = SimulationConfig(customers=200, terminals=400, days=40, seed=7)

EXPECTED_DTYPES = {
    TRANSACTION_ID: "int64",
    TX_DATETIME: "datetime64[ns]",
    CUSTOMER_ID: "int64",
    TERMINAL_ID: "int64",
    TX_AMOUNT: "float64",
    TX_TIME_SECONDS: "int64",
    TX_TIME_DAYS: "int64",
    TX_FRAUD: "int8",
    TX_FRAUD_SCENARIO: "int8",
    CARD_PAN: "str",
    MCC: "int64",
    ENTRY_MODE: "str",
    CURRENCY: "str",
    AMOUNT_MINOR: "int64",
}
RISKY_MODES = {"magstripe", "fallback", "manual"}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return simulate(SMALL, progress=False)


def luhn_valid(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"customers": 0},
        {"customers": 2},
        {"terminals": -1},
        {"terminals": 1},
        {"days": 0},
        {"radius": 0.0},
        {"radius": float("nan")},
        {"seed": -1},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SimulationConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"customers": 1.5}, {"days": True}, {"start": datetime.datetime(2018, 4, 1, 12)}],
)
def test_config_rejects_bad_types(kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        SimulationConfig(**kwargs)  # type: ignore[arg-type]


def test_same_seed_gives_identical_frame(frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate(SMALL, progress=False), frame)


def test_different_seed_gives_different_frame(frame: pd.DataFrame) -> None:
    other = simulate(
        SimulationConfig(customers=200, terminals=400, days=40, seed=8), progress=False
    )
    assert not other.equals(frame)
    assert set(other[CARD_PAN]) != set(frame[CARD_PAN])


def test_columns_and_dtypes(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(EXPECTED_DTYPES)
    assert {c: str(t) for c, t in frame.dtypes.items()} == EXPECTED_DTYPES
    assert isinstance(frame.index, pd.RangeIndex)
    assert len(frame) > 5_000


def test_sorted_by_time_with_sequential_ids(frame: pd.DataFrame) -> None:
    assert frame[TX_DATETIME].is_monotonic_increasing
    np.testing.assert_array_equal(frame[TRANSACTION_ID], np.arange(len(frame)))
    start = pd.Timestamp(SMALL.start)
    expected = start + pd.to_timedelta(frame[TX_TIME_SECONDS], unit="s")
    assert (frame[TX_DATETIME] == expected).all()
    assert (frame[TX_TIME_DAYS] == frame[TX_TIME_SECONDS] // 86_400).all()
    second_of_day = frame[TX_TIME_SECONDS] % 86_400
    assert second_of_day.between(1, 86_399).all()
    assert frame[TX_TIME_DAYS].between(0, SMALL.days - 1).all()


def test_pans_are_valid_unique_and_constant_per_customer(frame: pd.DataFrame) -> None:
    profiles = simulate_profiles(SMALL)
    pans = profiles.customers[CARD_PAN]
    assert pans.is_unique
    for pan in pans:
        assert len(pan) == 16
        assert pan.isdigit()
        assert pan.startswith("400000")
        assert luhn_valid(pan)
    assert (frame.groupby(CUSTOMER_ID)[CARD_PAN].nunique() == 1).all()
    by_customer = pans.to_numpy()[frame[CUSTOMER_ID].to_numpy()]
    assert (frame[CARD_PAN].to_numpy() == by_customer).all()


def test_luhn_helper_agrees_with_known_numbers() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_amount_minor_matches_amount(frame: pd.DataFrame) -> None:
    amount = frame[TX_AMOUNT].to_numpy()
    minor = frame[AMOUNT_MINOR].to_numpy()
    np.testing.assert_array_equal(np.round(amount * 100).astype(np.int64), minor)
    np.testing.assert_array_equal(amount, minor / 100)
    assert (minor >= 0).all()
    assert (frame[CURRENCY] == "EUR").all()


def test_fraud_flag_matches_scenario(frame: pd.DataFrame) -> None:
    assert set(frame[TX_FRAUD_SCENARIO].unique()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(frame[TX_FRAUD], (frame[TX_FRAUD_SCENARIO] > 0).astype(np.int8))


def test_scenario_1_is_the_amount_threshold(frame: pd.DataFrame) -> None:
    scenario_1 = frame[frame[TX_FRAUD_SCENARIO] == 1]
    assert (scenario_1[TX_AMOUNT] > 220).all()
    # Scenario 3 multiplies amounts after scenario 1 ran, so only its rows may exceed 220 unflagged.
    large = frame[(frame[TX_AMOUNT] > 220) & (frame[TX_FRAUD_SCENARIO] != 3)]
    assert (large[TX_FRAUD] == 1).all()


def test_scenario_2_mask_covers_exactly_28_days() -> None:
    compromised = np.array([[5, 6], [7, 8]], dtype=np.int64)  # day 0: 5 and 6, day 1: 7 and 8
    terminal = np.array([5, 5, 5, 6, 7, 7, 7, 9], dtype=np.int64)
    day = np.array([0, 27, 28, 10, 0, 1, 28, 3], dtype=np.int64)
    mask = scenario_2_mask(terminal, day, compromised, days=40)
    assert mask.tolist() == [True, True, False, True, False, True, True, False]


def test_scenario_2_frauds_are_the_compromised_terminal_windows(frame: pd.DataFrame) -> None:
    schedule = compromise_schedule(SMALL)
    assert schedule.terminals.shape == (SMALL.days, 2)
    in_window = np.zeros(len(frame), dtype=bool)
    for d, terminals in enumerate(schedule.terminals):
        in_window |= (
            frame[TERMINAL_ID].isin(terminals).to_numpy()
            & frame[TX_TIME_DAYS].between(d, d + 27).to_numpy()
        )
    scenario = frame[TX_FRAUD_SCENARIO].to_numpy()
    assert (scenario == 2).any()
    assert in_window[scenario == 2].all()
    assert np.isin(scenario[in_window], [2, 3]).all()  # scenario 3 overwrites, as in the book
    assert frame.loc[scenario == 2, TERMINAL_ID].nunique() <= 2 * SMALL.days


def test_scenario_3_frauds_are_a_third_of_compromised_customer_windows(
    frame: pd.DataFrame,
) -> None:
    schedule = compromise_schedule(SMALL)
    assert schedule.customers.shape == (SMALL.days, 3)
    in_window = np.zeros(len(frame), dtype=bool)
    for d, customers in enumerate(schedule.customers):
        in_window |= (
            frame[CUSTOMER_ID].isin(customers).to_numpy()
            & frame[TX_TIME_DAYS].between(d, d + 13).to_numpy()
        )
    scenario_3 = (frame[TX_FRAUD_SCENARIO] == 3).to_numpy()
    assert scenario_3.sum() > 100
    assert in_window[scenario_3].all()
    assert 0.25 < scenario_3.sum() / in_window.sum() < 0.5
    assert (frame.loc[scenario_3, AMOUNT_MINOR] % 5 == 0).all()


def test_scenario_3_entry_modes_look_counterfeit(frame: pd.DataFrame) -> None:
    allowed = {mode.name.lower() for mode in EntryMode}
    assert set(frame[ENTRY_MODE].unique()) <= allowed
    assert set(GENUINE_ENTRY_MODE_PROBABILITIES) == allowed
    assert set(COUNTERFEIT_ENTRY_MODE_PROBABILITIES) == allowed
    risky = frame[ENTRY_MODE].isin(RISKY_MODES)
    scenario_3 = frame[TX_FRAUD_SCENARIO] == 3
    assert risky[scenario_3].mean() > 0.55
    assert risky[~scenario_3].mean() < 0.12
    genuine = frame.loc[frame[TX_FRAUD] == 0, ENTRY_MODE].value_counts(normalize=True)
    assert genuine["contactless"] == pytest.approx(0.55, abs=0.03)
    assert genuine["chip"] == pytest.approx(0.38, abs=0.03)


def test_customers_only_use_terminals_within_radius(frame: pd.DataFrame) -> None:
    profiles = simulate_profiles(SMALL)
    customers = profiles.customers.set_index(CUSTOMER_ID)
    terminals = profiles.terminals.set_index(TERMINAL_ID)
    cx = customers.loc[frame[CUSTOMER_ID], "x_customer_id"].to_numpy()
    cy = customers.loc[frame[CUSTOMER_ID], "y_customer_id"].to_numpy()
    tx = terminals.loc[frame[TERMINAL_ID], "x_terminal_id"].to_numpy()
    ty = terminals.loc[frame[TERMINAL_ID], "y_terminal_id"].to_numpy()
    assert (np.hypot(cx - tx, cy - ty) < SMALL.radius).all()
    isolated = customers.index[customers["nb_terminals"] == 0]
    assert len(isolated) > 0  # with 400 terminals a few customers have none in reach
    assert not frame[CUSTOMER_ID].isin(isolated).any()


def test_profiles_follow_the_handbook_ranges() -> None:
    profiles = simulate_profiles(SMALL)
    c = profiles.customers
    assert len(c) == SMALL.customers
    assert c["mean_amount"].between(5, 100).all()
    np.testing.assert_allclose(c["std_amount"], c["mean_amount"] / 2)
    assert c["mean_nb_tx_per_day"].between(0, 4).all()
    for axis in ("x_customer_id", "y_customer_id"):
        assert c[axis].between(0, 100).all()
    t = profiles.terminals
    assert len(t) == SMALL.terminals
    assert t[MCC].isin(list(MCC_WEIGHTS)).all()


def test_mcc_is_the_terminals_category(frame: pd.DataFrame) -> None:
    terminals = simulate_profiles(SMALL).terminals.set_index(TERMINAL_ID)
    expected = terminals.loc[frame[TERMINAL_ID], MCC].to_numpy()
    np.testing.assert_array_equal(frame[MCC].to_numpy(), expected)
    assert (frame.groupby(TERMINAL_ID)[MCC].nunique() == 1).all()


def test_progress_goes_to_stderr_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    tiny = SimulationConfig(customers=20, terminals=40, days=3)
    simulate(tiny, progress=False)
    quiet = capsys.readouterr()
    assert quiet.out == ""
    assert quiet.err == ""
    simulate(tiny, progress=True)
    loud = capsys.readouterr()
    assert loud.out == ""
    assert "transactions" in loud.err


def _read_csv(path: Path) -> pd.DataFrame:
    text = {CARD_PAN: str, ENTRY_MODE: str, CURRENCY: str}
    read = pd.read_csv(path, parse_dates=[TX_DATETIME], dtype=text)
    return read.astype(EXPECTED_DTYPES)


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz", "OUT.CSV"])
def test_csv_round_trip(frame: pd.DataFrame, tmp_path: Path, name: str) -> None:
    path = tmp_path / "nested" / "dir" / name
    write_transactions(frame, path)
    pd.testing.assert_frame_equal(_read_csv(path), frame)
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temp file left behind


def test_gzip_csv_is_compressed(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "out.csv.gz"
    write_transactions(frame, path)
    assert path.read_bytes()[:2] == b"\x1f\x8b"


def test_parquet_round_trip(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.parquet"
    write_transactions(frame, path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)
    assert [p.name for p in path.parent.iterdir()] == ["out.parquet"]


def test_write_replaces_existing_file(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    path.write_text("old")
    write_transactions(frame.head(10), path)
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame.head(10))


@pytest.mark.parametrize("name", ["out.json", "out.gz", "out", "out.csv.bz2"])
def test_bad_suffix_raises(frame: pd.DataFrame, tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"\.csv, .*\.parquet|\.parquet"):
        write_transactions(frame, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_default_size_matches_the_handbook() -> None:
    full = simulate(SimulationConfig(), progress=False)
    assert 1_600_000 <= len(full) <= 1_900_000
    assert 0.006 <= full[TX_FRAUD].mean() <= 0.011


@given(st.text(alphabet="0123456789", min_size=1, max_size=25))
def test_luhn_matches_the_textbook_loop(digits: str) -> None:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    assert luhn_valid(digits) is (total % 10 == 0)


def test_luhn_reads_other_scripts_decimal_digits() -> None:
    arabic_indic = "".join(chr(0x0660 + int(c)) for c in "4111111111111111")
    assert luhn_valid(arabic_indic)
    assert not luhn_valid(arabic_indic[:-1] + chr(0x0662))
