"""Fleet learning measured: models retrained at the hub from DP tables vs. from raw rows.

One fleet history (a SITE_ID per row), one protocol, every row of the comparison scored
on the same held-out test week:

  shipped     a model trained on raw rows of the week before the aggregate window (what
              the fleet runs while its gateways release tables; its score bands come from
              its own training rows)
  raw rows    a model trained on the fleet's raw rows over the aggregate window
  no noise    the hub's model from the exact (bounded) tables: what the schema itself costs
  eps = ...   the hub's model from DP tables (known domain, OpenDP), mean ± sd over draws

Each (site, day) of the window is one batch, made by the gateway's own code path
(`cell_counts` bounding and counting, `release.release_known_domain` noise, the hub's
`sum_tables`), so what is measured is what gateways release. Schemas are compared side by
side: today's feature bins (a replacement model over bins) and the score-band schema (a
correction of the shipped model, `model.stacked`).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import lightgbm
import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from fraudscreen import history
from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.fleet_simulate import FleetConfig, FleetRows, simulate_fleet_rows
from fraudscreen.model.evaluate import (
    ProtocolPeriods,
    card_precision_at_k_detected_removed,
    evaluation_mask,
)
from fraudscreen.model.stacked import stacked_scores, train_correction
from fraudscreen.model.train import TrainingConfig
from fraudscreen.model.train_aggregates import (
    AggregateTrainingConfig,
    exact_as_released,
    sum_tables,
    train_from_table,
)
from fraudscreen.privacy.cell_counts import (
    bounded_mask,
    cell_codes,
    count_cells,
    key_digests,
    unique_rows,
)
from fraudscreen.privacy.release import NoiseSampler, ReleaseParameters, release_known_domain
from fraudscreen.privacy.seeded_noise import SeededDiscreteLaplace
from fraudscreen.score_bands import (
    BAND_FEATURE_EDGES,
    BAND_QUANTILES,
    BAND_QUANTILES_16,
    CARD_BURST_EDGES,
    band_edges,
    score_band_schema,
    with_scores,
)

SITE_ID = history.SITE_ID
FloatArray = npt.NDArray[np.float64]
ExactTable = dict[Cell, tuple[int, int]]
RELEASE_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class FleetMetrics:
    auc_roc: float
    average_precision: float
    card_precision_at_100: float


def fleet_metrics(frame: pd.DataFrame, scores: FloatArray) -> FleetMetrics:
    """AUC, AP and CP@100 with the handbook's rule (detected cards removed)."""
    labels = frame[history.TX_FRAUD].to_numpy()
    return FleetMetrics(
        auc_roc=float(roc_auc_score(labels, scores)),
        average_precision=float(average_precision_score(labels, scores)),
        card_precision_at_100=card_precision_at_k_detected_removed(frame, scores),
    )


@dataclass(frozen=True)
class Windows:
    """The protocol's days: shipped model's week, aggregate window, delay, test week."""

    shipped_train_end: dt.date
    aggregate_days: int = 14
    delay_days: int = 7
    test_days: int = 7
    shipped_days: int = 7

    @property
    def aggregate_start(self) -> dt.date:
        return self.shipped_train_end

    @property
    def aggregate_end(self) -> dt.date:
        return self.shipped_train_end + dt.timedelta(days=self.aggregate_days)

    @property
    def test(self) -> ProtocolPeriods:
        return ProtocolPeriods.after_training(
            self.aggregate_end, delay_days=self.delay_days, test_days=self.test_days
        )


@dataclass(frozen=True)
class FleetEvaluationConfig:
    windows: Windows
    epsilons: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    # today's feature bins are the baseline, measured at the goal's epsilon only (a
    # 2,430-cell release per batch costs 2x the noise draws of the 1,152-cell one)
    baseline_epsilons: tuple[float, ...] = (1.0,)
    draws: int = 3
    max_contributions: int = 2
    schemas: tuple[str, ...] = ("feature bins", "score bands")
    aggregate: AggregateTrainingConfig = field(default_factory=AggregateTrainingConfig)
    raw_trees: int = 150
    raw_max_genuine: int = 600_000
    period_days: int = 7  # the gateway's default `privacy.period_days`
    noise_seed: int | None = 0
    """None: OpenDP's sampler, as on a gateway (fresh every run, ~5x slower); a seed: the
    same discrete Laplace from `SeededDiscreteLaplace`, so the README table reproduces."""

    def params(self, epsilon: float) -> ReleaseParameters:
        return ReleaseParameters(epsilon, 1e-7, self.max_contributions)

    drifted: bool = False
    """The fleet has the drift scenario: its draws are its own, not the steady fleet's."""

    def noise(self, sites: int, schema: str, epsilon: float, draw: int) -> NoiseSampler | None:
        """The sampler of one noise draw, named by what it is for (not by its place in this
        run's lists), so a row of the table reproduces whatever else the run measured."""
        if self.noise_seed is None:
            return None
        key = (sites, SCHEMA_NAMES.index(schema), round(epsilon * 1000), draw, int(self.drifted))
        return SeededDiscreteLaplace(self.noise_seed, *key)


@dataclass(frozen=True)
class Row:
    schema: str
    label: str
    epsilon: float | None
    runs: tuple[FleetMetrics, ...]

    def mean(self, metric: str) -> float:
        return statistics.fmean(getattr(r, metric) for r in self.runs)

    def spread(self, metric: str) -> float:
        values = [getattr(r, metric) for r in self.runs]
        return statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class Fleet:
    """One fleet's history and everything derived from it once."""

    frame: pd.DataFrame
    features: FloatArray
    site_of: npt.NDArray[np.int64]
    sites: int


class _Say:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.started
            print(f"[{elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)


def _days_from(frame: pd.DataFrame, start: dt.date) -> npt.NDArray[np.int64]:
    days = (frame[history.TX_DATETIME].dt.normalize() - pd.Timestamp(start)).dt.days
    return np.asarray(days.to_numpy(), dtype=np.int64)


def train_raw_rows(
    frame: pd.DataFrame,
    features: FloatArray,
    train_end: dt.date,
    days: int,
    config: FleetEvaluationConfig,
) -> lightgbm.Booster:
    """LightGBM on raw rows of [train_end - days, train_end), the shipped model's settings
    (`TrainingConfig`) with a fixed tree count (the shipped default stopped at 143); at
    fleet scale genuine rows are sampled down to `raw_max_genuine` with weights that keep
    the class balance, frauds are all kept."""
    day = _days_from(frame, train_end - dt.timedelta(days=days))
    inside = (day >= 0) & (day < days)
    labels = frame[history.TX_FRAUD].to_numpy(dtype=np.int8)
    fraud = np.flatnonzero(inside & (labels == 1))
    genuine = np.flatnonzero(inside & (labels == 0))
    weight = 1.0
    if len(genuine) > config.raw_max_genuine:
        rng = np.random.default_rng(0)
        weight = len(genuine) / config.raw_max_genuine
        genuine = np.sort(rng.choice(genuine, config.raw_max_genuine, replace=False))
    rows = np.concatenate([genuine, fraud])
    weights = np.concatenate([np.full(len(genuine), weight), np.ones(len(fraud))])
    # one thread: on a shared machine OpenMP threads that lose their core stall each other
    params = TrainingConfig().lightgbm_params() | {"metric": [], "num_threads": 1}
    dataset = lightgbm.Dataset(features[rows], labels[rows], weight=weights)
    return lightgbm.train(params, dataset, num_boost_round=config.raw_trees)


@dataclass(frozen=True)
class WindowRows:
    """The aggregate window's rows as the gateways bound them, once per fleet (the bounding
    does not depend on the schema): `rows` index the fleet's rows that stay, `groups` their
    (site, period) batch."""

    rows: npt.NDArray[np.int64]
    groups: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int8]
    batches: int


def window_rows(
    fleet: Fleet, windows: Windows, max_contributions: int, period_days: int = 1
) -> WindowRows:
    """Each card keeps at most `max_contributions` rows per site and *day* (the privacy
    unit), by the gateway's own `bounded_mask`; one batch per site and `period_days`."""
    if windows.aggregate_days % period_days:
        raise ValueError("the aggregate window must hold whole periods")
    periods = windows.aggregate_days // period_days
    day = _days_from(fleet.frame, windows.aggregate_start)
    inside = np.flatnonzero((day >= 0) & (day < windows.aggregate_days))
    card_days = fleet.site_of[inside] * windows.aggregate_days + day[inside]
    groups = fleet.site_of[inside] * periods + day[inside] // period_days
    frame = fleet.frame.iloc[inside]
    keys = (
        frame[history.TERMINAL_ID].astype(str) + ":" + frame[history.TRANSACTION_ID].astype(str)
    ).tolist()
    keep = bounded_mask(
        frame[history.CUSTOMER_ID].to_numpy(), key_digests(keys), max_contributions, card_days
    )
    labels = frame[history.TX_FRAUD].to_numpy().astype(np.int8)[keep]
    return WindowRows(inside[keep], groups[keep], labels, fleet.sites * periods)


def schema_batches(
    window: WindowRows, window_scored_rows: FloatArray, schema: BinSchema
) -> list[ExactTable]:
    """Exact tables of every batch under `schema` (`cell_counts`, the gateway's path) from
    the scored rows of `window.rows`; empty batches included (a site still releases its
    domain)."""
    codes = cell_codes(schema, window_scored_rows)
    tables = count_cells(codes, window.labels, window.groups)
    return [tables.get(g, {}) for g in range(window.batches)]


def window_batches(
    fleet: Fleet,
    scored_rows: FloatArray,
    schema: BinSchema,
    windows: Windows,
    max_contributions: int,
    period_days: int = 1,
) -> list[ExactTable]:
    """Exact bounded tables of every (site, period) of the aggregate window."""
    window = window_rows(fleet, windows, max_contributions, period_days)
    return schema_batches(window, scored_rows[window.rows], schema)


def release_all(
    batches: Sequence[ExactTable],
    schema: BinSchema,
    params: ReleaseParameters,
    noise: NoiseSampler | None = None,
) -> dict[Cell, tuple[int, int]]:
    """Every batch released as a gateway would, summed as the hub does. `noise`: None is
    OpenDP's sampler (fresh, in parallel); a seeded sampler draws in batch order."""
    domain = list(schema.domain())
    if noise is not None:
        return sum_tables(release_known_domain(b, domain, params, noise=noise) for b in batches)
    with ThreadPoolExecutor(RELEASE_THREADS) as pool:
        released = list(pool.map(lambda b: release_known_domain(b, domain, params), batches))
    return sum_tables(released)


@dataclass(frozen=True)
class SchemaCase:
    """A schema, how the hub trains with it, and how the fleet's scores come from it."""

    name: str
    schema: BinSchema
    train: Callable[[dict[Cell, tuple[int, int]]], lightgbm.Booster]
    inputs: Callable[[FloatArray], FloatArray]
    """The model's input matrix for scored rows (features..., deployed score)."""
    served: Callable[[FloatArray, FloatArray], FloatArray]
    """(model output, scored rows) -> the score the gateway serves."""


class CellScorer:
    """A table-trained model's scores of many rows: its inputs are bin codes, so it
    predicts each distinct input row once (a few thousand) and spreads the result."""

    def __init__(self, case: SchemaCase, scored_rows: FloatArray) -> None:
        self.case = case
        self.rows = scored_rows
        self.unique, self.inverse, _ = unique_rows(case.inputs(scored_rows))

    def __call__(self, booster: lightgbm.Booster) -> FloatArray:
        predicted = np.asarray(booster.predict(self.unique), np.float64)[self.inverse]
        return self.case.served(predicted, self.rows)


Edges = dict[str, tuple[float, ...]]
AMOUNT_5: Edges = {"TX_AMOUNT": (25.0, 60.0, 120.0, 220.0)}
RISK_3: Edges = {"TERMINAL_ID_RISK_7DAY_WINDOW": (0.0, 0.2)}
ENTRY_3: Edges = {"ENTRY_MODE": (2.0,)}
CARD_BURST_3: Edges = {
    "TX_AMOUNT": (25.0, 220.0),
    "TERMINAL_ID_RISK_7DAY_WINDOW": (0.2,),
    **CARD_BURST_EDGES,
}

# The card burst in finer steps: the card's count today at this site 1/2/3/5/8 and its
# 30-day count 3/10 (8 x 3 x 2 x 3 x 2 x 3 x 6 = 5,184 cells with the bands): what the
# tables lack at 500 sites under drift (README, "The cost of privacy").
FINE_CARD_BURST: Edges = {
    **BAND_FEATURE_EDGES,
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW": (1.0, 2.0, 3.0, 5.0, 8.0),
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW": (3.0, 10.0),
}

# Score-band schemas tried (band quantiles, then the other dimensions); "score bands" is
# the one chosen and shipped (`score_bands`; why: README, "The cost of privacy").
BAND_VARIANTS: dict[str, tuple[tuple[float, ...], Edges]] = {
    "score bands": (BAND_QUANTILES, BAND_FEATURE_EDGES),
    # 16 bands x amount x terminal risk x entry mode (720 cells): the schema until 2026-12
    "16 score bands (720 cells)": (BAND_QUANTILES_16, {**AMOUNT_5, **RISK_3, **ENTRY_3}),
    "16 score bands x amount": (BAND_QUANTILES_16, AMOUNT_5),
    "16 score bands only": (BAND_QUANTILES_16, {}),
    "16 score bands x card burst": (BAND_QUANTILES_16, CARD_BURST_3),
    "16 score bands x card burst x entry": (BAND_QUANTILES_16, BAND_FEATURE_EDGES),
    "4 score bands x card burst": ((0.9, 0.98, 0.995), CARD_BURST_3),
    "6 score bands x card burst": ((0.8, 0.95, 0.98, 0.99, 0.995), CARD_BURST_3),
    "8 score bands x card burst": (BAND_QUANTILES, CARD_BURST_3),
    "score bands x fine card burst": (BAND_QUANTILES, FINE_CARD_BURST),
}
FEATURE_BINS = "feature bins"
# None holds a comma (--schemas splits on them). A schema's place here names its noise
# draws (`FleetEvaluationConfig.noise`): add new variants at the end, or the README's
# seeded table no longer reproduces.
SCHEMA_NAMES: tuple[str, ...] = (FEATURE_BINS, *BAND_VARIANTS)


def schema_cases(
    names: Sequence[str], training_scores: FloatArray, config: FleetEvaluationConfig
) -> list[SchemaCase]:
    bins = BinSchema.default()
    n_features = len(bins.features)
    out = []
    for name in names:
        if name == FEATURE_BINS:
            out.append(
                SchemaCase(
                    name,
                    bins,
                    lambda t: train_from_table(t, bins, config.aggregate),
                    lambda rows: bins.transform_matrix(rows[:, :n_features]),
                    lambda predicted, rows: predicted,
                )
            )
            continue
        quantiles, feature_edges = BAND_VARIANTS[name]
        schema = score_band_schema(band_edges(training_scores, quantiles), feature_edges)
        out.append(
            SchemaCase(
                name,
                schema,
                lambda t, s=schema: train_correction(t, s, config.aggregate),  # type: ignore[misc]
                schema.transform_matrix,
                lambda predicted, rows: stacked_scores(predicted, rows[:, -1]),
            )
        )
    return out


def train_shipped(fleet: Fleet, config: FleetEvaluationConfig) -> lightgbm.Booster:
    """The model the fleet runs while it releases tables: raw rows of the week before the
    aggregate window."""
    w = config.windows
    return train_raw_rows(fleet.frame, fleet.features, w.shipped_train_end, w.shipped_days, config)


def evaluate_fleet(
    fleet: Fleet,
    config: FleetEvaluationConfig,
    *,
    shipped: lightgbm.Booster | None = None,
    progress: bool = True,
) -> tuple[list[Row], dict[str, object]]:
    """Every row of the comparison for one fleet. `shipped`: the shipped model when it is
    already trained (a drifted fleet shares every row before the window with its no-drift
    twin, so their shipped models are the same)."""
    say = _Say(progress)
    w = config.windows
    frame, features = fleet.frame, fleet.features

    say(f"{fleet.sites} sites, {len(frame):,} rows: shipped model (week to {w.shipped_train_end})")
    if shipped is None:
        shipped = train_shipped(fleet, config)
    shipped_days = _days_from(frame, w.shipped_train_end - dt.timedelta(days=w.shipped_days))
    shipped_rows = (shipped_days >= 0) & (shipped_days < w.shipped_days)
    training_scores = np.asarray(shipped.predict(features[shipped_rows]), np.float64)
    edges = band_edges(training_scores)

    say("bounding the aggregate window's rows (each card ≤ m per site and day)")
    window = window_rows(fleet, w, config.max_contributions, config.period_days)
    test_mask = evaluation_mask(frame, w.test)
    needed = test_mask.copy()
    needed[window.rows] = True  # the deployed model scores only what is tabled or tested
    deployed = np.full(len(frame), np.nan)
    deployed[needed] = shipped.predict(features[needed])
    window_scored = with_scores(features[window.rows], deployed[window.rows])
    test_rows = with_scores(features[test_mask], deployed[test_mask])

    test_frame = frame[test_mask]
    rows: list[Row] = [
        Row(
            "-",
            "shipped model (raw, 1 week before the window)",
            None,
            (fleet_metrics(test_frame, deployed[test_mask]),),
        ),
    ]
    say(f"raw rows, {w.aggregate_days}-day window")
    raw = train_raw_rows(frame, features, w.aggregate_end, w.aggregate_days, config)
    rows.append(
        Row(
            "-",
            f"raw rows, {w.aggregate_days}-day window",
            None,
            (fleet_metrics(test_frame, raw.predict(features[test_mask])),),
        )
    )

    for case in schema_cases(config.schemas, training_scores, config):
        say(f"{case.name}: {case.schema.domain_size()} cells, exact tables")
        batches = schema_batches(window, window_scored, case.schema)
        score = CellScorer(case, test_rows)
        exact = sum_tables(exact_as_released(b) for b in batches)
        rows.append(
            Row(
                case.name,
                "no noise (ε = ∞)",
                math.inf,
                (fleet_metrics(test_frame, score(case.train(exact))),),
            )
        )
        epsilons = config.baseline_epsilons if case.name == FEATURE_BINS else config.epsilons
        for epsilon in epsilons:
            runs = []
            for draw in range(config.draws):
                say(f"{case.name}: ε = {epsilon:g}, draw {draw + 1}/{config.draws}")
                noise = config.noise(fleet.sites, case.name, epsilon, draw)
                table = release_all(batches, case.schema, config.params(epsilon), noise)
                runs.append(fleet_metrics(test_frame, score(case.train(table))))
            rows.append(Row(case.name, f"ε = {epsilon:g}", epsilon, tuple(runs)))
    info: dict[str, object] = {
        "band_edges": edges,
        "test_rows": int(test_mask.sum()),
        "test_frauds": int(test_frame[history.TX_FRAUD].sum()),
        "seconds": time.perf_counter() - say.started,
    }
    say("done")
    return rows, info


def format_rows(rows: Sequence[Row]) -> str:
    lines = [
        "| schema | training data | AUC ROC | Average Precision | Card Precision@100 |",
        "|---|---|---:|---:|---:|",
    ]
    for row in rows:
        cells = []
        for metric in ("auc_roc", "average_precision", "card_precision_at_100"):
            mean = row.mean(metric)
            cells.append(
                f"{mean:.3f}" if len(row.runs) == 1 else f"{mean:.3f} ± {row.spread(metric):.3f}"
            )
        lines.append(f"| {row.schema} | {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- a fleet from the simulator ----------------------------------------------------------------

KEEP_COLUMNS = (
    history.TRANSACTION_ID,
    history.TX_DATETIME,
    history.CUSTOMER_ID,
    history.TERMINAL_ID,
    history.TX_FRAUD,
    history.TX_FRAUD_SCENARIO,
    SITE_ID,
)


def simulate_fleet_history(
    sites: int,
    *,
    days: int,
    drift_start: int | None,
    seed: int = 0,
    keep_from: int = 0,
    progress: bool = False,
) -> Fleet:
    """`fraudscreen simulate --sites N` as a `Fleet` (see `fleet_history`)."""
    config = FleetConfig(sites=sites, days=days, drift_start=drift_start, seed=seed)
    return fleet_history(simulate_fleet_rows(config, progress=progress), keep_from=keep_from)


def fleet_history(
    rows: FleetRows,
    *,
    keep_from: int = 0,
    without_scenario: int | None = None,
    progress: bool = False,
) -> Fleet:
    """Each site's features from its own journal (a card's velocity counts only its
    transactions at this site, as its gateway sees it), one site at a time so a 500-site
    fleet fits in memory; rows before day `keep_from` only warm the features up and are
    dropped. `without_scenario`: the same fleet without that scenario's rows, numbered as
    its own table (scenario 4 only adds rows: this is the fleet simulated without drift)."""
    from fraudscreen.features.batch import compute_features

    site = rows.site
    sites = rows.sites
    present = np.ones(site.size, dtype=bool)
    if without_scenario is not None:
        present = rows.scenario != without_scenario
    ids = np.cumsum(present) - 1
    kept = present & (rows.raw.day >= keep_from)
    position = np.cumsum(kept) - 1
    total = int(kept.sum())
    features = np.empty((total, len(FEATURE_NAMES)), dtype=np.float64)
    columns: dict[str, npt.NDArray[Any]] = {}
    order = np.argsort(site, kind="stable")
    bounds = np.searchsorted(site[order], np.arange(sites + 1))
    for s in tqdm(
        range(sites), desc="site features", unit="site", file=sys.stderr, disable=not progress
    ):
        idx = order[bounds[s] : bounds[s + 1]]
        idx = idx[present[idx]]
        if not idx.size:
            continue
        frame = history.validate_history(rows.frame(idx, ids[idx]))
        if not np.array_equal(frame[history.TRANSACTION_ID].to_numpy(), ids[idx]):
            raise AssertionError("a site's journal must keep the fleet's time order")
        site_features = compute_features(frame)
        keep = kept[idx]
        at = position[idx[keep]]
        features[at] = site_features[keep]
        for column in KEEP_COLUMNS:
            values = frame[column].to_numpy()[keep]
            if column not in columns:
                columns[column] = np.empty(total, dtype=values.dtype)
            columns[column][at] = values
    table = pd.DataFrame(columns, columns=list(KEEP_COLUMNS), copy=False)
    return Fleet(table, features, table[SITE_ID].to_numpy().astype(np.int64), sites)
