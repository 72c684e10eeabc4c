"""A simulated fleet of shops, each with its own gateway, for measuring fleet learning.

`simulate.py` reproduces the Fraud Detection Handbook's single population (5,000 cards,
10,000 terminals of ~1 transaction a day). A fleet is different: N shops (sites) of 20-50
terminals and 1,000-3,000 transactions a day, whose customers mostly pay at their local shop
and sometimes at a nearby one. Cutting the handbook's population into N pieces makes each
piece smaller as N grows; here the population grows with the fleet, which is what the
privacy evaluation needs (more sites = more data, the same noise per site).

The handbook's rules are kept where they still apply, through simulate.py's own functions:
card profiles, daily Poisson activity, time of day ~ N(12 h, 20000 s), amount ~ N(mean,
mean / 2) with the redraw, reach by radius on a grid, and its three fraud scenarios with
their rates scaled to the fleet (per 10,000 terminals and per 5,000 cards a day, the
handbook's denominators) so the fraud share and mix stay the handbook's (~0.8 %).

Scenario 4 is new and off by default: card testing, a drift the shipped model has never
seen (see `SCENARIO_4_*`). Its rows are added on top of the genuine traffic, so a run with
drift equals the same run without it on every day before the drift starts.
"""

from __future__ import annotations

import datetime
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from fraudscreen.history import SITE_ID, TRANSACTION_ID
from fraudscreen.simulate import (
    COLUMNS,
    MAX_MEAN_TX_PER_DAY,
    SCENARIO_1_THRESHOLD_MINOR,
    SCENARIO_2_TERMINALS_PER_DAY,
    SCENARIO_2_WINDOW_DAYS,
    SCENARIO_3_AMOUNT_FACTOR,
    SCENARIO_3_CUSTOMERS_PER_DAY,
    SECONDS_PER_DAY,
    TIME_OF_DAY_MEAN,
    TIME_OF_DAY_STD,
    CustomerArrays,
    FloatArray,
    IntArray,
    RawTransactions,
    Reach,
    SimulationConfig,
    TerminalArrays,
    card_activity,
    compromised_window_mask,
    draw_customers,
    reach_within,
    scenario_3_hits,
    transaction_frame,
)
from fraudscreen.simulate_pos import MAX_CUSTOMERS, MCC_WEIGHTS, entry_mode_codes, entry_modes
from fraudscreen.transaction import EntryMode

FLEET_COLUMNS: Final[tuple[str, ...]] = (*COLUMNS, SITE_ID)

# --- Shops and geography ------------------------------------------------------------------
DEFAULT_SITE_TERMINALS: Final = (20, 50)
DEFAULT_SITE_DAILY_TRANSACTIONS: Final = (1_000, 3_000)
DEFAULT_FLEET_DAYS: Final = 79
"""30 days of feature warm-up + 28 training + 7 label delay + 14 test days."""
MAX_SITES: Final = 5_000
SITE_AREA: Final = 20.0
"""Grid area per site: 500 sites fill the handbook's 100 x 100 grid; fewer, a smaller square."""
HOME_RADIUS: Final = 2.5
"""Cards live uniformly within this distance of their home shop."""
ROAM_RADIUS: Final = 5.0
"""The handbook's reach radius: the shops a card can roam to (its home shop included)."""
MAX_ROAMING_SHARE: Final = 0.3
"""Each card pays away from home with its own probability ~ U(0, 0.3), at a shop in reach."""

_HANDBOOK: Final = SimulationConfig()
_KEPT_SHARE: Final = math.erf(TIME_OF_DAY_MEAN / (TIME_OF_DAY_STD * math.sqrt(2)))
EXPECTED_TX_PER_CARD_DAY: Final = MAX_MEAN_TX_PER_DAY / 2 * _KEPT_SHARE
"""Handbook cards average 2 transactions a day, of which 97 % fall inside the day."""

# --- The handbook's fraud, scaled to the fleet ---------------------------------------------
SCENARIO_2_PER_TERMINAL_DAY: Final = SCENARIO_2_TERMINALS_PER_DAY / _HANDBOOK.terminals
"""2 compromised terminals a day per 10,000 terminals: every transaction at a compromised
terminal is fraud for 28 days, so the share of terminals compromised at a time, hence the
share of fraud (~0.56 %), is the handbook's whatever a terminal's volume."""
SCENARIO_3_PER_CARD_DAY: Final = SCENARIO_3_CUSTOMERS_PER_DAY / _HANDBOOK.customers
"""3 compromised cards a day per 5,000 cards: a third of their next 14 days is fraud (x5)."""

# --- Scenario 4, the drift: card testing ---------------------------------------------------
SCENARIO_4: Final = 4
SCENARIO_4_PER_CARD_DAY: Final = 3 / 5_000
"""Cards tested a day per card of the fleet; ~0.2 % of transactions once it runs."""
SCENARIO_4_TESTS: Final = (3, 9)
"""Small test payments per burst (inclusive), then one larger payment (the cash-out)."""
SCENARIO_4_TEST_MINOR: Final = (100, 1_000)
SCENARIO_4_CASH_OUT_MINOR: Final = (5_000, 20_000)
"""50-200 EUR: below scenario 1's 220, so the amount alone does not give it away."""
SCENARIO_4_GAP_MEAN_SECONDS: Final = 240.0
SCENARIO_4_CASH_OUT_GAP_MEAN_SECONDS: Final = 600.0
SCENARIO_4_FIRST_SECOND: Final = (8 * 3600, 20 * 3600)
SCENARIO_4_MCCS: Final = (5541, 5814, 5999)
"""Fuel, fast food, miscellaneous retail: unattended or quick tills where testing is easy."""
SCENARIO_4_ENTRY_MODE_PROBABILITIES: Final[Mapping[str, float]] = {
    EntryMode.MANUAL.name.lower(): 0.45,
    EntryMode.CONTACTLESS.name.lower(): 0.35,
    EntryMode.MAGSTRIPE.name.lower(): 0.10,
    EntryMode.FALLBACK.name.lower(): 0.05,
    EntryMode.CHIP.name.lower(): 0.05,
}
"""A keyed-in or cloned card number, rarely a chip (our assumption, not measured)."""

# Independent random streams, so changing one stage does not shift the draws of another.
(
    _STREAM_SITES,
    _STREAM_CUSTOMERS,
    _STREAM_TRANSACTIONS,
    _STREAM_SCHEDULE,
    _STREAM_SCENARIO_3,
    _STREAM_ENTRY_MODE,
    _STREAM_SCENARIO_4,
) = range(7)
_N_STREAMS: Final = 7


def _pair(value: object, name: str) -> tuple[int, int]:
    """A (low, high) range of whole numbers with 1 <= low <= high, or a clear error."""
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value)
    ):
        raise TypeError(f"{name} must be a pair of integers (low, high), got {value!r}")
    low, high = int(value[0]), int(value[1])
    if not 1 <= low <= high:
        raise ValueError(f"{name} must satisfy 1 <= low <= high, got {low},{high}")
    return low, high


@dataclass(frozen=True)
class FleetConfig:
    """Size, window, seed and drift of a simulated fleet."""

    sites: int = 20
    days: int = DEFAULT_FLEET_DAYS
    start: datetime.date = datetime.date(2018, 4, 1)
    seed: int = 0
    drift_start: int | None = None
    """Day index (0 = `start`) from which scenario 4 runs; None: never."""
    site_terminals: tuple[int, int] = DEFAULT_SITE_TERMINALS
    site_daily_transactions: tuple[int, int] = DEFAULT_SITE_DAILY_TRANSACTIONS

    def __post_init__(self) -> None:
        """Reject configurations that would silently produce an empty or broken fleet."""
        for name in ("sites", "days", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if not 1 <= self.sites <= MAX_SITES:
            raise ValueError(f"sites must be between 1 and {MAX_SITES}, got {self.sites}")
        if self.days <= 0:
            raise ValueError(f"days must be positive, got {self.days}")
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, got {self.seed}")
        if isinstance(self.start, datetime.datetime) or not isinstance(self.start, datetime.date):
            raise TypeError(f"start must be a datetime.date (no time of day), got {self.start!r}")
        _pair(self.site_terminals, "site_terminals")
        _, high = _pair(self.site_daily_transactions, "site_daily_transactions")
        if high * self.sites / EXPECTED_TX_PER_CARD_DAY > MAX_CUSTOMERS:
            raise ValueError(
                f"site_daily_transactions up to {high} at {self.sites} sites needs more than "
                f"{MAX_CUSTOMERS:,} cards"
            )
        if self.drift_start is not None:
            if not isinstance(self.drift_start, int | np.integer) or isinstance(
                self.drift_start, bool
            ):
                raise TypeError(f"drift_start must be a day index, got {self.drift_start!r}")
            if not 0 <= self.drift_start < self.days:
                last = self.start + datetime.timedelta(days=self.days - 1)
                raise ValueError(
                    f"drift_start must be a day of the simulated window, 0..{self.days - 1} "
                    f"({self.start}..{last}), got {self.drift_start}"
                )

    def day_index(self, day: datetime.date) -> int:
        """The day index of a calendar date (for `drift_start` given as a date)."""
        return (day - self.start).days


@dataclass(frozen=True)
class FleetProfiles:
    """The tables a fleet's transactions are drawn from, for audits and tests."""

    sites: pd.DataFrame  # SITE_ID, x, y, MCC, terminals, target daily transactions, cards
    terminals: pd.DataFrame  # TERMINAL_ID, SITE_ID, MCC
    customers: pd.DataFrame  # CUSTOMER_ID, home SITE_ID, x, y, roaming share, reach, profile


@dataclass(frozen=True)
class _Fleet:
    """Everything a day of traffic is drawn from, as arrays indexed by id."""

    site_x: FloatArray
    site_y: FloatArray
    site_mcc: IntArray
    site_terminals: IntArray
    site_target: IntArray  # intended transactions a day
    first_terminal: IntArray  # site s owns terminals first_terminal[s] .. + site_terminals[s]
    terminal_site: IntArray
    customers: CustomerArrays
    home: IntArray
    roaming_share: FloatArray
    reach: Reach  # sites within ROAM_RADIUS of each card, its home included


def _streams(seed: int) -> list[np.random.Generator]:
    return np.random.default_rng(seed).spawn(_N_STREAMS)


def _uniform_pairs(rng: np.random.Generator, pair: tuple[int, int], n: int) -> IntArray:
    """n integers uniform in [low, high]."""
    drawn: IntArray = rng.integers(pair[0], pair[1] + 1, n).astype(np.int64)
    return drawn


def _build_fleet(config: FleetConfig) -> _Fleet:
    """Shops on a grid that grows with the fleet, and the cards that live around them."""
    streams = _streams(config.seed)
    rng = streams[_STREAM_SITES]
    n = config.sites
    side = math.sqrt(n * SITE_AREA)
    site_x = rng.uniform(0, side, n)
    site_y = rng.uniform(0, side, n)
    codes = np.fromiter(MCC_WEIGHTS.keys(), dtype=np.int64)
    weights = np.fromiter(MCC_WEIGHTS.values(), dtype=np.float64)
    site_mcc = rng.choice(codes, size=n, p=weights / weights.sum()).astype(np.int64)
    terminals = _uniform_pairs(rng, config.site_terminals, n)
    target = _uniform_pairs(rng, config.site_daily_transactions, n)
    first_terminal = np.concatenate([[0], np.cumsum(terminals)[:-1]]).astype(np.int64)
    terminal_site = np.repeat(np.arange(n, dtype=np.int64), terminals)

    # Each shop's own cards, as many as its intended volume needs on average (roaming in and
    # out balances on average; a shop surrounded by others gets a little more).
    rng = streams[_STREAM_CUSTOMERS]
    cards = np.maximum(1, np.rint(target / EXPECTED_TX_PER_CARD_DAY)).astype(np.int64)
    home = np.repeat(np.arange(n, dtype=np.int64), cards)
    profiles = draw_customers(rng, home.size)
    distance = HOME_RADIUS * np.sqrt(rng.random(home.size))
    angle = rng.uniform(0, 2 * np.pi, home.size)
    customers = replace(
        profiles,
        x=site_x[home] + distance * np.cos(angle),
        y=site_y[home] + distance * np.sin(angle),
    )
    roaming_share = rng.uniform(0, MAX_ROAMING_SHARE, home.size)
    reach = reach_within(customers, TerminalArrays(site_x, site_y, site_mcc), ROAM_RADIUS)
    return _Fleet(
        site_x,
        site_y,
        site_mcc,
        terminals,
        target,
        first_terminal,
        terminal_site,
        customers,
        home,
        roaming_share,
        reach,
    )


def _terminal_at(rng: np.random.Generator, fleet: _Fleet, site: IntArray) -> IntArray:
    """A terminal of each given site, uniformly among its terminals."""
    return fleet.first_terminal[site] + rng.integers(0, fleet.site_terminals[site])


def _day_of_transactions(rng: np.random.Generator, fleet: _Fleet, day: int) -> RawTransactions:
    """One day of genuine activity of every card, in time order: handbook behaviour, fleet
    geography."""
    everyone = np.arange(fleet.home.size, dtype=np.int64)
    customer, second, minor = card_activity(rng, fleet.customers, everyone)
    site = fleet.home[customer]
    roams = np.flatnonzero(rng.random(customer.size) < fleet.roaming_share[customer])
    roamer = customer[roams]
    pick = rng.integers(0, fleet.reach.counts[roamer])
    site[roams] = fleet.reach.flat[fleet.reach.offsets[roamer] + pick]
    terminal = _terminal_at(rng, fleet, site)
    day_array = np.full(customer.size, day, dtype=np.int64)
    # Sorted within the day here, so the days concatenate into a time-sorted table (the same
    # order a stable sort of the whole table gives, for a fraction of the cost).
    order = np.argsort(second, kind="stable")
    return RawTransactions(customer[order], terminal[order], day_array, second[order], minor[order])


def _genuine_transactions(
    rng: np.random.Generator, fleet: _Fleet, days: int, progress: bool
) -> RawTransactions:
    chunks: list[RawTransactions] = []
    with tqdm(
        total=days, desc="transactions", unit="day", file=sys.stderr, disable=not progress
    ) as bar:
        for day in range(days):
            chunks.append(_day_of_transactions(rng, fleet, day))
            bar.update()
    return _concatenate(chunks)


def _concatenate(chunks: list[RawTransactions]) -> RawTransactions:
    return RawTransactions(
        *(
            np.concatenate([getattr(c, f) for c in chunks])
            for f in RawTransactions.__dataclass_fields__
        )
    )


def _daily_counts(rng: np.random.Generator, per_day: float, days: int) -> IntArray:
    """How many compromises each day for a mean of `per_day`, spread evenly over the days.

    Systematic rather than Poisson: a small fleet (20 sites have 700 terminals, 0.14
    scenario-2 compromises a day) keeps the handbook's fraud share instead of a lottery.
    """
    cumulative = np.floor(per_day * np.arange(days + 1) + rng.random())
    counts: IntArray = np.diff(cumulative).astype(np.int64)
    return counts


def _daily_draws(
    rng: np.random.Generator, population: int, per_day: float, days: int
) -> list[IntArray]:
    """Distinct ids compromised on each day."""
    return [
        rng.choice(population, min(int(k), population), replace=False).astype(np.int64)
        for k in _daily_counts(rng, per_day, days)
    ]


@dataclass(frozen=True)
class _Scenario4:
    raw: RawTransactions
    entry_mode: IntArray


def _card_testing(
    rng: np.random.Generator, fleet: _Fleet, config: FleetConfig, first_day: int
) -> _Scenario4:
    """Scenario 4 from `first_day` on: each tested card gets a burst of small payments at
    one testing shop, minutes apart, then one larger payment there."""
    cards = fleet.home.size
    days = config.days - first_day
    victims = _daily_draws(rng, cards, SCENARIO_4_PER_CARD_DAY * cards, days)
    victim_day = np.repeat(
        np.arange(first_day, config.days, dtype=np.int64), [v.size for v in victims]
    )
    victim = np.concatenate(victims) if victims else np.empty(0, dtype=np.int64)
    testing_sites = np.flatnonzero(np.isin(fleet.site_mcc, SCENARIO_4_MCCS))
    if testing_sites.size == 0:  # a tiny fleet may have no such shop: any shop will do
        testing_sites = np.arange(fleet.site_mcc.size)
    site = testing_sites[rng.integers(0, testing_sites.size, victim.size)]
    tests = _uniform_pairs(rng, SCENARIO_4_TESTS, victim.size)
    start = _uniform_pairs(rng, SCENARIO_4_FIRST_SECOND, victim.size)
    test_terminal = _terminal_at(rng, fleet, site)
    cash_out_terminal = _terminal_at(rng, fleet, site)

    sizes = tests + 1
    owner = np.repeat(np.arange(victim.size), sizes)
    group_start = np.cumsum(sizes) - sizes
    position = np.arange(owner.size) - group_start[owner]
    cash_out = position == tests[owner]
    gap = rng.exponential(SCENARIO_4_GAP_MEAN_SECONDS, owner.size)
    gap[cash_out] = rng.exponential(SCENARIO_4_CASH_OUT_GAP_MEAN_SECONDS, int(cash_out.sum()))
    gap[position == 0] = 0.0
    elapsed = np.cumsum(gap)
    elapsed -= elapsed[group_start][owner]
    second = np.minimum(start[owner] + np.rint(elapsed).astype(np.int64), SECONDS_PER_DAY - 1)
    amount = np.where(
        cash_out,
        _uniform_pairs(rng, SCENARIO_4_CASH_OUT_MINOR, owner.size),
        _uniform_pairs(rng, SCENARIO_4_TEST_MINOR, owner.size),
    )
    terminal = np.where(cash_out, cash_out_terminal[owner], test_terminal[owner])
    entry_mode = entry_mode_codes(rng.random(owner.size), SCENARIO_4_ENTRY_MODE_PROBABILITIES)
    raw = RawTransactions(victim[owner], terminal, victim_day[owner], second, amount)
    return _Scenario4(raw, entry_mode)


def fleet_profiles(config: FleetConfig) -> FleetProfiles:
    """The site, terminal and card tables behind `simulate_fleet(config)`."""
    fleet = _build_fleet(config)
    sites = pd.DataFrame(
        {
            SITE_ID: np.arange(config.sites, dtype=np.int64),
            "x_site": fleet.site_x,
            "y_site": fleet.site_y,
            "MCC": fleet.site_mcc,
            "nb_terminals": fleet.site_terminals,
            "target_tx_per_day": fleet.site_target,
            "nb_home_customers": np.bincount(fleet.home, minlength=config.sites),
        }
    )
    terminals = pd.DataFrame(
        {
            "TERMINAL_ID": np.arange(fleet.terminal_site.size, dtype=np.int64),
            SITE_ID: fleet.terminal_site,
            "MCC": fleet.site_mcc[fleet.terminal_site],
        }
    )
    c = fleet.customers
    customers = pd.DataFrame(
        {
            "CUSTOMER_ID": np.arange(fleet.home.size, dtype=np.int64),
            "HOME_SITE_ID": fleet.home,
            "x_customer_id": c.x,
            "y_customer_id": c.y,
            "roaming_share": fleet.roaming_share,
            "nb_sites_in_reach": fleet.reach.counts,
            "mean_amount": c.mean_amount,
            "std_amount": c.std_amount,
            "mean_nb_tx_per_day": c.mean_nb_tx_per_day,
        }
    )
    return FleetProfiles(sites, terminals, customers)


@dataclass(frozen=True)
class FleetRows:
    """A simulated fleet as arrays, before its table: what a caller that needs only part
    of it (one site, rows from a day on) slices, instead of building the whole frame."""

    raw: RawTransactions  # time-sorted
    scenario: npt.NDArray[np.int8]
    amount_minor: IntArray
    entry_mode: IntArray
    pans: npt.NDArray[np.str_]  # one per card
    terminal_mcc: IntArray
    terminal_site: IntArray
    start: datetime.date

    @property
    def sites(self) -> int:
        return int(self.terminal_site.max()) + 1  # every site has a terminal

    @property
    def site(self) -> IntArray:
        """SITE_ID of each row."""
        site: IntArray = self.terminal_site[self.raw.terminal]
        return site

    def frame(self, rows: IntArray | None = None, ids: IntArray | None = None) -> pd.DataFrame:
        """The FLEET_COLUMNS table of `rows` (all by default; time-sorted indices), with
        TRANSACTION_ID `ids` (default: the row numbers of the whole table)."""
        raw = self.raw
        scenario, amount, entry = self.scenario, self.amount_minor, self.entry_mode
        if rows is not None:
            raw = RawTransactions(
                *(getattr(raw, f)[rows] for f in RawTransactions.__dataclass_fields__)
            )
            scenario, amount, entry = scenario[rows], amount[rows], entry[rows]
        frame = transaction_frame(
            raw, scenario, amount, entry, self.pans, self.terminal_mcc, self.start
        )
        if rows is not None or ids is not None:
            frame[TRANSACTION_ID] = rows if ids is None else ids
        frame[SITE_ID] = self.terminal_site[raw.terminal]
        return frame


def simulate_fleet(config: FleetConfig, *, progress: bool = True) -> pd.DataFrame:
    """The FLEET_COLUMNS table: simulate.COLUMNS for the whole fleet, plus SITE_ID.

    Time-sorted, TRANSACTION_ID = row number, TERMINAL_ID unique across the fleet. The same
    config always gives an identical frame; progress goes to stderr.
    """
    return simulate_fleet_rows(config, progress=progress).frame()


def simulate_fleet_rows(config: FleetConfig, *, progress: bool = True) -> FleetRows:
    """`simulate_fleet` as arrays. Scenario 4 (drift) only adds rows, from its own random
    stream: without its rows, a drifted fleet is the same config's fleet without drift."""
    streams = _streams(config.seed)
    fleet = _build_fleet(config)
    cards = fleet.home.size
    raw = _genuine_transactions(streams[_STREAM_TRANSACTIONS], fleet, config.days, progress)
    schedule = streams[_STREAM_SCHEDULE]
    terminals = _daily_draws(
        schedule,
        fleet.terminal_site.size,
        SCENARIO_2_PER_TERMINAL_DAY * fleet.terminal_site.size,
        config.days,
    )
    victims = _daily_draws(schedule, cards, SCENARIO_3_PER_CARD_DAY * cards, config.days)

    scenario = np.zeros(raw.customer.size, dtype=np.int8)
    scenario[raw.amount_minor > SCENARIO_1_THRESHOLD_MINOR] = 1
    compromised = np.concatenate(terminals)
    start_day = np.repeat(np.arange(config.days, dtype=np.int64), [t.size for t in terminals])
    scenario[
        compromised_window_mask(
            raw.terminal, raw.day, compromised, start_day, SCENARIO_2_WINDOW_DAYS, config.days
        )
    ] = 2
    hits = scenario_3_hits(
        streams[_STREAM_SCENARIO_3], raw.customer, raw.day, victims, config.days, progress
    )
    scenario[hits > 0] = 3
    amount_minor = raw.amount_minor * SCENARIO_3_AMOUNT_FACTOR**hits
    entry_mode = entry_modes(streams[_STREAM_ENTRY_MODE], scenario == 3)

    if config.drift_start is not None:
        drift = _card_testing(streams[_STREAM_SCENARIO_4], fleet, config, config.drift_start)
        merge = _Merge.of(raw, drift.raw)
        scenario = merge(scenario, np.full(drift.raw.day.size, SCENARIO_4, dtype=np.int8))
        amount_minor = merge(amount_minor, drift.raw.amount_minor)
        entry_mode = merge(entry_mode, drift.entry_mode)
        raw = merge.rows(raw, drift.raw)

    return FleetRows(
        raw,
        scenario,
        amount_minor,
        entry_mode,
        fleet.customers.pan,
        fleet.site_mcc[fleet.terminal_site],
        fleet.terminal_site,
        config.start,
    )


@dataclass(frozen=True)
class _Merge:
    """Where rows of a small table go into a large time-sorted one: a stable merge by time
    (inserted rows after existing rows of equal time) that never sorts the large table."""

    slots: IntArray  # insertion points in the large table, in the small table's time order
    order: IntArray  # the small table's rows in time order

    @classmethod
    def of(cls, large: RawTransactions, small: RawTransactions) -> _Merge:
        large_seconds = large.day * SECONDS_PER_DAY + large.second_of_day
        small_seconds = small.day * SECONDS_PER_DAY + small.second_of_day
        order = np.argsort(small_seconds, kind="stable")
        slots = np.searchsorted(large_seconds, small_seconds[order], side="right")
        return cls(slots, order)

    def __call__(self, large: npt.NDArray[Any], small: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """One column of the merged table."""
        merged: npt.NDArray[Any] = np.insert(large, self.slots, small[self.order])
        return merged

    def rows(self, large: RawTransactions, small: RawTransactions) -> RawTransactions:
        return RawTransactions(
            *(
                self(getattr(large, f), getattr(small, f))
                for f in RawTransactions.__dataclass_fields__
            )
        )


# --- Command-line values, parsed here so a bad one is one line naming its flag -------------

_WHOLE_NUMBER: Final = re.compile(r"-?[0-9]+")  # ASCII only: int() also takes other scripts


def parse_count(text: str, flag: str) -> int:
    """A whole number given on the command line."""
    if not _WHOLE_NUMBER.fullmatch(text.strip()):
        raise ValueError(f"{flag}: {text!r} is not a whole number")
    return int(text.strip())


def parse_range(text: str, flag: str) -> tuple[int, int]:
    """`LOW,HIGH` given on the command line."""
    parts = text.split(",")
    if len(parts) != 2:
        raise ValueError(f"{flag}: {text!r} is not LOW,HIGH (e.g. 20,50)")
    low, high = (parse_count(part, flag) for part in parts)
    if not 1 <= low <= high:
        raise ValueError(f"{flag}: {text!r} needs 1 <= LOW <= HIGH")
    return low, high


def parse_day(text: str, start: datetime.date, flag: str) -> int:
    """A day given as YYYY-MM-DD or as a day index (0 = `start`), as a day index."""
    stripped = text.strip()
    if _WHOLE_NUMBER.fullmatch(stripped):
        return int(stripped)
    try:
        return (datetime.date.fromisoformat(stripped) - start).days
    except ValueError:
        raise ValueError(
            f"{flag}: {text!r} is neither a date (YYYY-MM-DD) nor a day index"
        ) from None
