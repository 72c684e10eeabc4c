"""Synthetic card transactions for training, testing and driving the service end to end.

Follows the transaction data simulator of the Fraud Detection Handbook (Le Borgne et al.,
"Reproducible Machine Learning for Credit Card Fraud Detection"): customers and terminals on
a 100x100 grid, daily Poisson activity, and the book's three fraud scenarios, so results can be
compared with the published ones. It is vectorized with numpy (per day, never per customer or
per transaction) so the default ~1.75M transactions take seconds. On top of the book's six
columns it adds the point-of-sale fields a real terminal sends (PAN, MCC, entry mode, currency,
minor-unit amount; drawn by simulate_pos), so the whole service can be exercised with
realistic requests.
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

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
from fraudscreen.simulate_pos import (
    CURRENCY_CODE,
    ENTRY_MODE_NAMES,
    MAX_CUSTOMERS,
    MCC_WEIGHTS,
    card_pans,
    entry_modes,
)

TX_TIME_SECONDS: Final = "TX_TIME_SECONDS"
TX_TIME_DAYS: Final = "TX_TIME_DAYS"

COLUMNS: Final[tuple[str, ...]] = (
    TRANSACTION_ID,
    TX_DATETIME,
    CUSTOMER_ID,
    TERMINAL_ID,
    TX_AMOUNT,
    TX_TIME_SECONDS,
    TX_TIME_DAYS,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
    CARD_PAN,
    MCC,
    ENTRY_MODE,
    CURRENCY,
    AMOUNT_MINOR,
)

# --- The handbook's parameters -------------------------------------------------------------
GRID_SIZE: Final = 100.0
MIN_MEAN_AMOUNT: Final = 5.0
MAX_MEAN_AMOUNT: Final = 100.0
MAX_MEAN_TX_PER_DAY: Final = 4.0
SECONDS_PER_DAY: Final = 86_400
TIME_OF_DAY_MEAN: Final = 43_200.0
TIME_OF_DAY_STD: Final = 20_000.0
SCENARIO_1_THRESHOLD_MINOR: Final = 22_000  # TX_AMOUNT > 220
SCENARIO_2_TERMINALS_PER_DAY: Final = 2
SCENARIO_2_WINDOW_DAYS: Final = 28
SCENARIO_3_CUSTOMERS_PER_DAY: Final = 3
SCENARIO_3_WINDOW_DAYS: Final = 14
SCENARIO_3_AMOUNT_FACTOR: Final = 5


_DISTANCE_BLOCK_CELLS: Final = 4_000_000  # customer x terminal distances computed per block

# Independent random streams, so changing one stage does not shift the draws of another.
_STREAM_CUSTOMERS, _STREAM_TERMINALS, _STREAM_TRANSACTIONS = 0, 1, 2
_STREAM_SCHEDULE, _STREAM_SCENARIO_3, _STREAM_ENTRY_MODE = 3, 4, 5
_N_STREAMS: Final = 6

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
TextArray = pd.api.extensions.ExtensionArray


@dataclass(frozen=True)
class SimulationConfig:
    """Size and seed of a simulated data set; defaults reproduce the handbook's data set."""

    customers: int = 5000
    terminals: int = 10000
    days: int = 183
    start: datetime.date = datetime.date(2018, 4, 1)
    radius: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        """Reject configurations that would silently produce an empty or broken data set."""
        for name in ("customers", "terminals", "days", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        for name in ("customers", "terminals", "days"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        # Scenarios 2 and 3 compromise this many distinct terminals / customers every day.
        if self.terminals < SCENARIO_2_TERMINALS_PER_DAY:
            raise ValueError(
                f"terminals must be at least {SCENARIO_2_TERMINALS_PER_DAY} (scenario 2 "
                f"compromises that many a day), got {self.terminals}"
            )
        if self.customers < SCENARIO_3_CUSTOMERS_PER_DAY:
            raise ValueError(
                f"customers must be at least {SCENARIO_3_CUSTOMERS_PER_DAY} (scenario 3 "
                f"compromises that many a day), got {self.customers}"
            )
        if self.customers > MAX_CUSTOMERS:
            raise ValueError(f"customers must be at most {MAX_CUSTOMERS}, got {self.customers}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if isinstance(self.start, datetime.datetime) or not isinstance(self.start, datetime.date):
            raise TypeError(f"start must be a datetime.date (no time of day), got {self.start!r}")
        if not isinstance(self.radius, int | float) or isinstance(self.radius, bool):
            raise TypeError(f"radius must be a number, got {self.radius!r}")
        if not np.isfinite(self.radius) or self.radius <= 0:
            raise ValueError(f"radius must be positive and finite, got {self.radius}")


@dataclass(frozen=True)
class Profiles:
    """The customer and terminal tables the transactions are drawn from (handbook names)."""

    customers: pd.DataFrame
    terminals: pd.DataFrame


@dataclass(frozen=True)
class CompromiseSchedule:
    """Which terminals (scenario 2) and customers (scenario 3) are compromised on each day.

    Row d of each array holds the ids drawn on day d; their windows start that day.
    """

    terminals: IntArray  # shape (days, SCENARIO_2_TERMINALS_PER_DAY)
    customers: IntArray  # shape (days, SCENARIO_3_CUSTOMERS_PER_DAY)


@dataclass(frozen=True)
class CustomerArrays:
    """Customer profiles as arrays indexed by customer id (the handbook's columns + PAN)."""

    x: FloatArray
    y: FloatArray
    mean_amount: FloatArray
    std_amount: FloatArray
    mean_nb_tx_per_day: FloatArray
    pan: npt.NDArray[np.str_]


@dataclass(frozen=True)
class TerminalArrays:
    """Terminal (or, in a fleet, site) locations and merchant category by id."""

    x: FloatArray
    y: FloatArray
    mcc: IntArray


@dataclass(frozen=True)
class Reach:
    """Available terminals (or sites) of every customer, flattened CSR-style for vectorized
    draws."""

    offsets: IntArray  # customer c's terminals are flat[offsets[c] : offsets[c] + counts[c]]
    counts: IntArray
    flat: IntArray


@dataclass(frozen=True)
class RawTransactions:
    """Transactions before sorting and fraud labels (amounts before scenario 3's x5)."""

    customer: IntArray
    terminal: IntArray
    day: IntArray
    second_of_day: IntArray
    amount_minor: IntArray


def _streams(seed: int) -> list[np.random.Generator]:
    """One generator per stage, all derived from the single seed."""
    return np.random.default_rng(seed).spawn(_N_STREAMS)


def draw_customers(rng: np.random.Generator, n: int) -> CustomerArrays:
    """Customer profiles as in the handbook, plus the card number the customer pays with."""
    x = rng.uniform(0, GRID_SIZE, n)
    y = rng.uniform(0, GRID_SIZE, n)
    mean_amount = rng.uniform(MIN_MEAN_AMOUNT, MAX_MEAN_AMOUNT, n)
    mean_nb_tx = rng.uniform(0, MAX_MEAN_TX_PER_DAY, n)
    pan = card_pans(rng, n)
    return CustomerArrays(x, y, mean_amount, mean_amount / 2, mean_nb_tx, pan)


def _draw_terminals(rng: np.random.Generator, n: int) -> TerminalArrays:
    """Terminal locations as in the handbook, plus the merchant category each one reports."""
    x = rng.uniform(0, GRID_SIZE, n)
    y = rng.uniform(0, GRID_SIZE, n)
    codes = np.fromiter(MCC_WEIGHTS.keys(), dtype=np.int64)
    weights = np.fromiter(MCC_WEIGHTS.values(), dtype=np.float64)
    mcc = rng.choice(codes, size=n, p=weights / weights.sum())
    return TerminalArrays(x, y, mcc)


def reach_within(customers: CustomerArrays, terminals: TerminalArrays, radius: float) -> Reach:
    """Terminals strictly closer than `radius` to each customer, in blocks to bound memory."""
    n = customers.x.size
    block = max(1, _DISTANCE_BLOCK_CELLS // terminals.x.size)
    counts: list[IntArray] = []
    flats: list[IntArray] = []
    for lo in range(0, n, block):
        dx = customers.x[lo : lo + block, None] - terminals.x[None, :]
        dy = customers.y[lo : lo + block, None] - terminals.y[None, :]
        near = np.sqrt(dx * dx + dy * dy) < radius
        counts.append(near.sum(axis=1).astype(np.int64))
        flats.append(np.nonzero(near)[1].astype(np.int64))
    count = np.concatenate(counts)
    offsets = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    return Reach(offsets, count, np.concatenate(flats))


def card_activity(
    rng: np.random.Generator, customers: CustomerArrays, active: IntArray
) -> tuple[IntArray, IntArray, IntArray]:
    """One day of the handbook's card behaviour: (customer, second of day, amount in cents).

    Daily Poisson counts, time of day ~ N(12 h, 20000 s) (others dropped), amount
    ~ N(mean, mean / 2) redrawn uniformly in [0, 2 mean] when negative. Where the card pays
    is the caller's choice (a terminal in reach here, a site of the fleet in fleet_simulate).
    """
    customer = np.repeat(active, rng.poisson(customers.mean_nb_tx_per_day[active]))
    second = np.rint(rng.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD, customer.size))
    keep = (second > 0) & (second < SECONDS_PER_DAY)  # the handbook drops the others
    customer, second = customer[keep], second[keep].astype(np.int64)
    mean = customers.mean_amount[customer]
    amount = rng.normal(mean, customers.std_amount[customer])
    negative = amount < 0
    amount[negative] = rng.uniform(0, 2 * mean[negative])
    minor = np.rint(amount * 100).astype(np.int64)
    return customer.astype(np.int64), second, minor


def _day_of_transactions(
    rng: np.random.Generator, customers: CustomerArrays, reach: Reach, active: IntArray, day: int
) -> RawTransactions:
    """One day of genuine activity for all customers at once (handbook rules)."""
    customer, second, minor = card_activity(rng, customers, active)
    pick = rng.integers(0, reach.counts[customer])
    terminal = reach.flat[reach.offsets[customer] + pick]
    day_array = np.full(customer.size, day, dtype=np.int64)
    return RawTransactions(customer, terminal, day_array, second, minor)


def _genuine_transactions(
    rng: np.random.Generator,
    customers: CustomerArrays,
    reach: Reach,
    days: int,
    progress: bool,
) -> RawTransactions:
    """All days of genuine activity; customers without a terminal in reach never transact."""
    active = np.flatnonzero(reach.counts > 0).astype(np.int64)
    chunks: list[RawTransactions] = []
    with tqdm(
        total=days, desc="transactions", unit="day", file=sys.stderr, disable=not progress
    ) as bar:
        for day in range(days):
            chunks.append(_day_of_transactions(rng, customers, reach, active, day))
            bar.update()
    return RawTransactions(
        *(
            np.concatenate([getattr(c, f) for c in chunks])
            for f in RawTransactions.__dataclass_fields__
        )
    )


def _sorted_by_time(raw: RawTransactions) -> RawTransactions:
    """Stable time order, which defines TRANSACTION_ID as in the handbook."""
    seconds = raw.day * SECONDS_PER_DAY + raw.second_of_day
    order = np.argsort(seconds, kind="stable")
    return RawTransactions(*(getattr(raw, f)[order] for f in RawTransactions.__dataclass_fields__))


def _draw_schedule(rng: np.random.Generator, config: SimulationConfig) -> CompromiseSchedule:
    """Draw, day by day, the distinct terminals and customers compromised that day."""
    terminals = np.stack(
        [
            rng.choice(config.terminals, SCENARIO_2_TERMINALS_PER_DAY, replace=False)
            for _ in range(config.days)
        ]
    ).astype(np.int64)
    customers = np.stack(
        [
            rng.choice(config.customers, SCENARIO_3_CUSTOMERS_PER_DAY, replace=False)
            for _ in range(config.days)
        ]
    ).astype(np.int64)
    return CompromiseSchedule(terminals, customers)


def compromise_schedule(config: SimulationConfig) -> CompromiseSchedule:
    """The scenario 2 and 3 compromises `simulate(config)` uses, to audit labels against."""
    return _draw_schedule(_streams(config.seed)[_STREAM_SCHEDULE], config)


def scenario_2_mask(
    terminal: IntArray, day: IntArray, compromised_terminals: IntArray, days: int
) -> BoolArray:
    """Transactions at a terminal on or within 27 days after a day it was compromised.

    `compromised_terminals[d]` are the terminals compromised on day d.
    """
    start_day = np.repeat(np.arange(compromised_terminals.shape[0]), compromised_terminals.shape[1])
    return compromised_window_mask(
        terminal, day, compromised_terminals.reshape(-1), start_day, SCENARIO_2_WINDOW_DAYS, days
    )


def compromised_window_mask(
    ids: IntArray,
    day: IntArray,
    compromised: IntArray,
    start_day: IntArray,
    window_days: int,
    days: int,
) -> BoolArray:
    """Rows at an id on a day of one of its compromise windows: id `compromised[i]` is
    compromised on days `start_day[i]` .. `start_day[i] + window_days - 1`."""
    offsets = np.arange(window_days)
    span = days + window_days
    keys = compromised[:, None] * span + start_day[:, None] + offsets[None, :]
    return np.isin(ids * span + day, np.unique(keys))


def scenario_3_hits(
    rng: np.random.Generator,
    customer: IntArray,
    day: IntArray,
    compromised_customers: Iterable[IntArray],
    days: int,
    progress: bool,
) -> IntArray:
    """How many times each transaction was picked by scenario 3 (the handbook's per-day loop).

    `compromised_customers[d]` are the customers compromised on day d (any number a day).

    A transaction can be picked by two overlapping windows; its amount is then x5 twice, as in
    the handbook.
    """
    schedule = [np.asarray(victims, dtype=np.int64) for victims in compromised_customers]
    victims_ever = np.concatenate(schedule)
    # Only the victims' rows can be picked: sort those, not the whole table.
    rows = np.flatnonzero(np.isin(customer, victims_ever))
    key = customer[rows] * days + day[rows]
    order = rows[np.argsort(key, kind="stable")]
    sorted_key = customer[order] * days + day[order]
    hits = np.zeros(customer.size, dtype=np.int64)
    last = days - 1
    with tqdm(total=days, desc="frauds", unit="day", file=sys.stderr, disable=not progress) as bar:
        for d, victims in enumerate(schedule):
            if victims.size == 0:  # a small fleet's schedule has days without a compromise
                bar.update()
                continue
            hi_day = min(d + SCENARIO_3_WINDOW_DAYS - 1, last)
            lo = np.searchsorted(sorted_key, victims * days + d, side="left")
            hi = np.searchsorted(sorted_key, victims * days + hi_day, side="right")
            candidates = np.sort(np.concatenate([order[a:b] for a, b in zip(lo, hi, strict=True)]))
            picked = rng.choice(candidates, size=candidates.size // 3, replace=False)
            hits[picked] += 1
            bar.update()
    return hits


def text_column(values: Sequence[str] | npt.NDArray[np.str_], index: IntArray) -> TextArray:
    """`values[index]` as a pandas string column, built in Arrow (no string per row in numpy)."""
    taken = pa.array(np.asarray(values), pa.large_string()).take(pa.array(index))
    column: TextArray = pd.array(taken, dtype="str")
    return column


def _profiles(config: SimulationConfig) -> tuple[CustomerArrays, TerminalArrays, Reach]:
    """Customer and terminal profiles with each customer's reachable terminals."""
    streams = _streams(config.seed)
    customers = draw_customers(streams[_STREAM_CUSTOMERS], config.customers)
    terminals = _draw_terminals(streams[_STREAM_TERMINALS], config.terminals)
    return customers, terminals, reach_within(customers, terminals, config.radius)


def simulate_profiles(config: SimulationConfig) -> Profiles:
    """The profile tables behind `simulate(config)`, for audits such as the radius rule."""
    customers, terminals, reach = _profiles(config)
    customer_frame = pd.DataFrame(
        {
            CUSTOMER_ID: np.arange(config.customers, dtype=np.int64),
            "x_customer_id": customers.x,
            "y_customer_id": customers.y,
            "mean_amount": customers.mean_amount,
            "std_amount": customers.std_amount,
            "mean_nb_tx_per_day": customers.mean_nb_tx_per_day,
            "nb_terminals": reach.counts,
            CARD_PAN: customers.pan,
        }
    )
    terminal_frame = pd.DataFrame(
        {
            TERMINAL_ID: np.arange(config.terminals, dtype=np.int64),
            "x_terminal_id": terminals.x,
            "y_terminal_id": terminals.y,
            MCC: terminals.mcc,
        }
    )
    return Profiles(customer_frame, terminal_frame)


def simulate(config: SimulationConfig, *, progress: bool = True) -> pd.DataFrame:
    """Simulate the handbook's transaction table with fraud labels and point-of-sale fields.

    The same config always gives an identical frame; progress goes to stderr.
    """
    streams = _streams(config.seed)
    customers, terminals, reach = _profiles(config)
    raw = _sorted_by_time(
        _genuine_transactions(
            streams[_STREAM_TRANSACTIONS], customers, reach, config.days, progress
        )
    )
    schedule = _draw_schedule(streams[_STREAM_SCHEDULE], config)

    scenario = np.zeros(raw.customer.size, dtype=np.int8)
    scenario[raw.amount_minor > SCENARIO_1_THRESHOLD_MINOR] = 1
    scenario[scenario_2_mask(raw.terminal, raw.day, schedule.terminals, config.days)] = 2
    hits = scenario_3_hits(
        streams[_STREAM_SCENARIO_3],
        raw.customer,
        raw.day,
        schedule.customers,
        config.days,
        progress,
    )
    scenario[hits > 0] = 3
    amount_minor = raw.amount_minor * SCENARIO_3_AMOUNT_FACTOR**hits

    entry_mode = entry_modes(streams[_STREAM_ENTRY_MODE], scenario == 3)
    return transaction_frame(
        raw, scenario, amount_minor, entry_mode, customers.pan, terminals.mcc, config.start
    )


def transaction_frame(
    raw: RawTransactions,
    scenario: npt.NDArray[np.int8],
    amount_minor: IntArray,
    entry_mode: IntArray,
    pans: npt.NDArray[np.str_],
    mcc: IntArray,
    start: datetime.date,
) -> pd.DataFrame:
    """The COLUMNS table from time-sorted rows; row order defines TRANSACTION_ID.

    `entry_mode` holds codes into ENTRY_MODE_NAMES, `pans` one PAN per customer, `mcc` one
    merchant category per terminal.
    """
    seconds = raw.day * SECONDS_PER_DAY + raw.second_of_day
    first = np.datetime64(start, "ns")
    n = raw.customer.size
    return pd.DataFrame(
        {
            TRANSACTION_ID: np.arange(n, dtype=np.int64),
            TX_DATETIME: first + seconds.astype("timedelta64[s]"),
            CUSTOMER_ID: raw.customer,
            TERMINAL_ID: raw.terminal,
            TX_AMOUNT: amount_minor / 100,
            TX_TIME_SECONDS: seconds,
            TX_TIME_DAYS: raw.day,
            TX_FRAUD: (scenario > 0).astype(np.int8),
            TX_FRAUD_SCENARIO: scenario,
            CARD_PAN: text_column(pans, raw.customer),
            MCC: mcc[raw.terminal],
            ENTRY_MODE: text_column(ENTRY_MODE_NAMES, entry_mode),
            CURRENCY: text_column([CURRENCY_CODE], np.zeros(n, dtype=np.int64)),
            AMOUNT_MINOR: amount_minor,
        },
        columns=list(COLUMNS),
        copy=False,  # the arrays are ours: no copy into 2-D blocks (seconds at fleet size)
    )


_WRITERS: Final = (".csv.gz", ".csv", ".parquet")


def _format_of(path: Path) -> str:
    """The output format named by the path's suffix; other suffixes are a caller error."""
    name = path.name.lower()
    for suffix in _WRITERS:
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"unsupported file suffix for {path}; use one of {', '.join(_WRITERS)}")


def write_transactions(frame: pd.DataFrame, path: Path) -> None:
    """Write the frame as CSV or Parquet, chosen by suffix (.csv, .csv.gz, .parquet).

    Any other suffix is a ValueError naming the allowed ones. Parent dirs are created, and the
    data goes to a temp file that os.replace() moves into place, so a reader never sees a
    half-written file.
    """
    path = Path(path)
    kind = _format_of(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if kind == ".parquet":
            frame.to_parquet(tmp, index=False, engine="pyarrow")
        elif kind == ".csv.gz":
            frame.to_csv(tmp, index=False, compression="gzip")
        else:
            frame.to_csv(tmp, index=False)
        tmp.chmod(0o644)  # mkstemp makes it owner-only; a data set is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
