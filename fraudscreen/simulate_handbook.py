"""The Fraud Detection Handbook's published data set, regenerated draw for draw.

`fraudscreen.simulate` is our fast vectorized take on the handbook's simulator; its numbers
can not be compared row by row with the handbook's published tables. This module follows the
handbook's own description of its seeding instead, so the same 1,754,155 transactions and
14,681 frauds come out and our metrics sit beside the published ones on identical data:

- customer profiles: one numpy `RandomState(0)`, per customer x, y, mean amount, mean
  transactions per day (uniform draws, in that order); terminal locations: `RandomState(1)`;
- a customer's transactions: numpy `RandomState(customer_id)` for the Poisson day counts,
  normal times of day and amounts (uniform redraw of negative amounts) and Python
  `random.Random(customer_id)` for the terminal among those within the radius;
- transactions sorted by time (numpy quicksort, as pandas' `sort_values` does), then
  numbered;
- scenario 2 and 3 picks on day d: the first 2 (3) of `RandomState(d).permutation` of the
  terminals (customers), which is what pandas' `Series.sample(n, random_state=d)` draws;
  scenario 3's frauds on day d: `random.Random(d).sample` of a third of the compromised
  customer's transactions of the next 14 days, in table order.

It is a plain per-transaction loop (tens of seconds), the price of identical draws. Only the
handbook's six columns, the labels and the scenario come out: no point-of-sale fields.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from fraudscreen.history import (
    CUSTOMER_ID,
    TERMINAL_ID,
    TRANSACTION_ID,
    TX_AMOUNT,
    TX_DATETIME,
    TX_FRAUD,
    TX_FRAUD_SCENARIO,
)
from fraudscreen.simulate import (
    MAX_MEAN_AMOUNT,
    MAX_MEAN_TX_PER_DAY,
    MIN_MEAN_AMOUNT,
    SCENARIO_2_TERMINALS_PER_DAY,
    SCENARIO_2_WINDOW_DAYS,
    SCENARIO_3_AMOUNT_FACTOR,
    SCENARIO_3_CUSTOMERS_PER_DAY,
    SCENARIO_3_WINDOW_DAYS,
    SECONDS_PER_DAY,
    TIME_OF_DAY_MEAN,
    TIME_OF_DAY_STD,
    TX_TIME_DAYS,
    TX_TIME_SECONDS,
)

GRID: Final = 100.0
SCENARIO_1_THRESHOLD: Final = 220.0
CUSTOMER_SEED: Final = 0
TERMINAL_SEED: Final = 1

PUBLISHED_TRANSACTIONS: Final = 1_754_155
PUBLISHED_FRAUDS: Final = 14_681


@dataclass(frozen=True)
class HandbookConfig:
    """The handbook's `generate_dataset` arguments; defaults are its published data set."""

    customers: int = 5000
    terminals: int = 10000
    days: int = 183
    start: datetime.date = datetime.date(2018, 4, 1)
    radius: float = 5.0

    def __post_init__(self) -> None:
        for name in ("customers", "terminals", "days"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.terminals < SCENARIO_2_TERMINALS_PER_DAY:
            raise ValueError(f"terminals must be at least {SCENARIO_2_TERMINALS_PER_DAY}")
        if self.customers < SCENARIO_3_CUSTOMERS_PER_DAY:
            raise ValueError(f"customers must be at least {SCENARIO_3_CUSTOMERS_PER_DAY}")


@dataclass(frozen=True)
class _Customer:
    x: float
    y: float
    mean_amount: float
    std_amount: float
    mean_nb_tx_per_day: float


def _customer_profiles(n: int) -> list[_Customer]:
    rs = np.random.RandomState(CUSTOMER_SEED)
    out = []
    for _ in range(n):
        x = rs.uniform(0, GRID)
        y = rs.uniform(0, GRID)
        mean_amount = rs.uniform(MIN_MEAN_AMOUNT, MAX_MEAN_AMOUNT)
        mean_nb_tx = rs.uniform(0, MAX_MEAN_TX_PER_DAY)
        out.append(_Customer(x, y, mean_amount, mean_amount / 2, mean_nb_tx))
    return out


def _terminal_locations(n: int) -> npt.NDArray[np.float64]:
    rs = np.random.RandomState(TERMINAL_SEED)
    xy = np.empty((n, 2))
    for i in range(n):
        xy[i, 0] = rs.uniform(0, GRID)
        xy[i, 1] = rs.uniform(0, GRID)
    return xy


def _terminals_within(
    customer: _Customer, terminals: npt.NDArray[np.float64], radius: float
) -> list[int]:
    """Same arithmetic as the handbook (square, sum over x and y, square root) so that
    terminals on the boundary fall on the same side."""
    here = np.array([customer.x, customer.y], dtype=float)
    distance = np.sqrt(np.sum(np.square(here - terminals), axis=1))
    return [int(t) for t in np.where(distance < radius)[0]]


def _customer_transactions(
    customer_id: int, customer: _Customer, reachable: list[int], days: int
) -> list[tuple[int, int, int, float]]:
    """(seconds since start, customer, terminal, amount) in the handbook's draw order."""
    rs = np.random.RandomState(customer_id)
    pick = random.Random(customer_id)
    rows = []
    for day in range(days):
        for _ in range(rs.poisson(customer.mean_nb_tx_per_day)):
            time_of_day = int(rs.normal(TIME_OF_DAY_MEAN, TIME_OF_DAY_STD))
            if not 0 < time_of_day < SECONDS_PER_DAY:
                continue
            amount = rs.normal(customer.mean_amount, customer.std_amount)
            if amount < 0:
                amount = rs.uniform(0, customer.mean_amount * 2)
            amount = float(np.round(amount, decimals=2))
            if reachable:
                terminal = pick.choice(reachable)
                rows.append((time_of_day + day * SECONDS_PER_DAY, customer_id, terminal, amount))
    return rows


def _sample_ids(population: int, n: int, seed: int) -> npt.NDArray[np.int64]:
    """pandas' `Series.sample(n, random_state=seed)` positions on a 0..population-1 index."""
    return np.random.RandomState(seed).permutation(population)[:n].astype(np.int64)


def simulate_handbook(
    config: HandbookConfig | None = None, *, progress: bool = True
) -> pd.DataFrame:
    """The handbook's transaction table, labels and scenarios, identical draw for draw."""
    config = config or HandbookConfig()
    customers = _customer_profiles(config.customers)
    terminals = _terminal_locations(config.terminals)
    rows: list[tuple[int, int, int, float]] = []
    for cid, customer in enumerate(
        tqdm(customers, desc="simulating (handbook-exact)", unit="customer", disable=not progress)
    ):
        reachable = _terminals_within(customer, terminals, config.radius)
        rows.extend(_customer_transactions(cid, customer, reachable, config.days))

    raw = np.array(rows, dtype=np.float64).reshape(-1, 4)
    seconds_unsorted = raw[:, 0].astype(np.int64)
    start = np.datetime64(config.start, "ns")
    # pandas sort_values: an unstable quicksort of the datetime64 column
    order = np.argsort(start + seconds_unsorted.astype("timedelta64[s]"), kind="quicksort")
    seconds = seconds_unsorted[order]
    customer = raw[order, 1].astype(np.int64)
    terminal = raw[order, 2].astype(np.int64)
    amount = raw[order, 3].copy()
    day = seconds // SECONDS_PER_DAY

    fraud = np.zeros(len(order), dtype=np.int8)
    scenario = np.zeros(len(order), dtype=np.int8)
    fraud[amount > SCENARIO_1_THRESHOLD] = 1
    scenario[amount > SCENARIO_1_THRESHOLD] = 1
    last_day = int(day.max()) if len(day) else 0
    # rows are sorted by time, so the rows of days [a, b) are one slice
    day_starts = np.searchsorted(day, np.arange(last_day + SCENARIO_2_WINDOW_DAYS + 2))
    for d in range(last_day):
        lo, hi = day_starts[d], day_starts[min(d + SCENARIO_2_WINDOW_DAYS, last_day + 1)]
        picked = _sample_ids(config.terminals, SCENARIO_2_TERMINALS_PER_DAY, d)
        hit = lo + np.flatnonzero(np.isin(terminal[lo:hi], picked))
        fraud[hit] = 1
        scenario[hit] = 2
    for d in range(last_day):
        lo, hi = day_starts[d], day_starts[min(d + SCENARIO_3_WINDOW_DAYS, last_day + 1)]
        picked = _sample_ids(config.customers, SCENARIO_3_CUSTOMERS_PER_DAY, d)
        compromised = [int(i) for i in lo + np.flatnonzero(np.isin(customer[lo:hi], picked))]
        chosen = random.Random(d).sample(compromised, k=int(len(compromised) / 3))
        amount[chosen] = amount[chosen] * SCENARIO_3_AMOUNT_FACTOR
        fraud[chosen] = 1
        scenario[chosen] = 3

    return pd.DataFrame(
        {
            TRANSACTION_ID: np.arange(len(order), dtype=np.int64),
            TX_DATETIME: start + seconds.astype("timedelta64[s]"),
            CUSTOMER_ID: customer,
            TERMINAL_ID: terminal,
            TX_AMOUNT: amount,
            TX_TIME_SECONDS: seconds,
            TX_TIME_DAYS: day,
            TX_FRAUD: fraud,
            TX_FRAUD_SCENARIO: scenario,
        }
    )
