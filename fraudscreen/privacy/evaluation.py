"""The cost of privacy, measured: models trained from DP tables vs. from raw rows.

One run, one test set. The simulated history is split into sites by terminal
(terminal_id % S: a site's journal holds its terminals' transactions). For every site and
every period of the training window, the gateway's path is replayed with the real
components: features (batch path, same definitions as serving) -> LabelledRow (card =
CUSTOMER_ID) -> `exact_table` (contribution bounding) -> a DP release at each epsilon, with
each mechanism of `privacy.release` side by side:

  known domain   `release_known_domain`: every cell of the schema's domain, discrete
                 Laplace on (genuine, fraud), no selection (the gateway's default)
  threshold      `release_table`: OpenDP's thresholded selection of cells on noisy
                 totals, then discrete Laplace on the fraud counts of the selected cells

The hub's path follows: sum across sites and periods -> `train_from_table` -> score the
handbook test week through `BinSchema.transform_matrix`.

A known-domain release noises 2 x |domain| counts per batch (4,860 for the default schema:
680,400 per draw of the default run); OpenDP's exact sampler runs without the GIL, so the
batches of a draw are released on a few threads.

Rows of the comparison, cheapest explanation first:
  raw rows, handbook week      the shipped default model's protocol (1-week training)
  raw rows, same window        raw rows over the DP runs' training window
  binned, all rows             the binned table of every row: the cost of binning alone
  binned, bounded, eps = inf   + contribution bounding, no noise, no threshold
  eps = ..., per mechanism     + DP noise (and selection) (mean ± sd over noise draws)

Every row is scored on the same test rows: the handbook test week after `train_end`, with
the cards known compromised by the handbook's 1-week rule removed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from fraudscreen import history
from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.features.batch import compute_features
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.model.evaluate import (
    Metrics,
    ProtocolPeriods,
    compute_metrics,
    evaluation_mask,
)
from fraudscreen.model.train import TrainingConfig, fit_prequential
from fraudscreen.model.train_aggregates import (
    AggregateTrainingConfig,
    CountTable,
    exact_as_released,
    sum_tables,
    train_from_table,
)
from fraudscreen.privacy.aggregate import LabelledRow, exact_table
from fraudscreen.privacy.release import (
    MECHANISMS,
    Mechanism,
    NoiseSampler,
    NoisyTable,
    ReleaseParameters,
    release_known_domain,
    release_table,
)
from fraudscreen.privacy.seeded_noise import SeededDiscreteLaplace

FloatArray = npt.NDArray[np.float64]
ExactTable = dict[Cell, tuple[int, int]]

METRICS: tuple[tuple[str, str], ...] = (
    ("auc_roc", "AUC ROC"),
    ("average_precision", "Average Precision"),
    ("card_precision_at_100", "Card Precision@100"),
)
MARKDOWN_FILE = "privacy_cost.md"
PLOT_FILE = "privacy_cost.png"
JSON_FILE = "privacy_cost.json"
UNBOUNDED = 2**62  # "no contribution bound" for exact_table
HANDBOOK_TRAIN_DAYS = 7
MECHANISM_LABELS: dict[str, str] = {"known_domain": "known domain", "threshold": "threshold"}


@dataclass(frozen=True)
class PrivacyEvaluationConfig:
    """What to simulate at the sites and the hub; defaults match the gateway's."""

    sites: int = 5
    epsilons: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    train_end: dt.date = dt.date(2018, 8, 1)
    train_days: int = 28
    period_days: int = 1
    max_contributions: int = 2
    delta: float = 1e-7
    repetitions: int = 3
    site_features: bool = False
    raw_max_trees: int = 300
    aggregate: AggregateTrainingConfig = field(default_factory=AggregateTrainingConfig)
    timezone: str = "UTC"
    mechanisms: tuple[Mechanism, ...] = MECHANISMS  # known_domain, threshold
    seed: int | None = None  # None: OpenDP's sampler (fresh every run); else reproducible

    def __post_init__(self) -> None:
        if self.sites < 1 or self.repetitions < 1:
            raise ValueError("sites and repetitions must be at least 1")
        if not self.mechanisms:
            raise ValueError(f"give at least one mechanism ({', '.join(MECHANISMS)})")
        for mechanism in self.mechanisms:
            if mechanism not in MECHANISMS:
                raise ValueError(
                    f"unknown mechanism {mechanism!r}; choose from {', '.join(MECHANISMS)}"
                )
        if len(set(self.mechanisms)) != len(self.mechanisms):
            raise ValueError("a mechanism is listed twice")
        if self.period_days < 1 or self.train_days < self.period_days:
            raise ValueError("need 1 <= period_days <= train_days")
        if self.train_days % self.period_days:
            raise ValueError(
                f"train_days ({self.train_days}) must be a whole number of periods "
                f"({self.period_days} days each)"
            )
        if not self.epsilons:
            raise ValueError("give at least one epsilon")
        for eps in self.epsilons:
            self.params(eps)  # ReleaseParameters validates epsilon, delta and m

    def params(self, epsilon: float) -> ReleaseParameters:
        return ReleaseParameters(epsilon, self.delta, self.max_contributions)

    @property
    def train_start(self) -> dt.date:
        return self.train_end - dt.timedelta(days=self.train_days)

    @property
    def periods(self) -> int:
        return self.train_days // self.period_days


@dataclass(frozen=True)
class ResultRow:
    """One line of the comparison: metrics of one or more runs (noise draws)."""

    label: str
    epsilon: float | None  # None: raw rows; inf: binned without noise
    runs: tuple[Metrics, ...]
    failed_runs: int = 0  # runs where nothing could be learned (constant score)
    mechanism: Mechanism | None = None  # the DP release of the row; None: no release

    def mean(self, metric: str) -> float:
        return statistics.fmean(float(getattr(m, metric)) for m in self.runs)

    def spread(self, metric: str) -> float:
        values = [float(getattr(m, metric)) for m in self.runs]
        return statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass(frozen=True)
class SelectionStats:
    """What the DP selection let through at one epsilon (means over noise draws)."""

    epsilon: float
    epsilon_spent: float  # per card, per site, per period (OpenDP's map)
    delta_spent: float
    threshold: int
    total_scale: float
    fraud_scale: float
    cells_share: float
    transactions_share: float
    frauds_share: float
    selection_only: ResultRow  # released cells with their exact counts: selection, no noise


@dataclass(frozen=True)
class KnownDomainStats:
    """What the known-domain release adds at one epsilon: noise on every cell, nothing cut."""

    epsilon: float
    epsilon_spent: float  # per card, per site, per period (OpenDP's map)
    delta_spent: float  # 0: pure epsilon-DP
    scale: float  # discrete Laplace scale of each genuine and each fraud count
    cells: int  # cells per batch (the schema's domain)
    count_sd: float  # noise sd of one count of one batch
    summed_sd: float  # noise sd of one fraud count summed over every batch


@dataclass(frozen=True)
class DataSummary:
    history_rows: int
    window_rows: int
    window_frauds: int
    bounded_rows: int
    bounded_frauds: int
    batches: int
    test_rows: int
    test_frauds: int


@dataclass(frozen=True)
class PrivacyReport:
    config: PrivacyEvaluationConfig
    data: DataSummary
    rows: tuple[ResultRow, ...]
    selection: tuple[SelectionStats, ...]  # threshold mechanism
    seconds: float
    known_domain: tuple[KnownDomainStats, ...] = ()

    def markdown(self) -> str:
        return format_report(self)


@dataclass(frozen=True)
class Batch:
    """One (site, period) of the training window, as the gateway would table it."""

    site: int
    period: int
    bounded: ExactTable  # (genuine, fraud) after contribution bounding
    unbounded: ExactTable  # every row: only used to price binning alone


class _Progress:
    """Timestamped progress lines on stderr (the run takes minutes)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(f"[{self.elapsed:6.1f} s] {message}", file=sys.stderr, flush=True)


# -- sites, features, batches -------------------------------------------------------------


def assign_sites(frame: pd.DataFrame, sites: int) -> npt.NDArray[np.int64]:
    """Site of each row: terminal_id % sites (a stable hash for non-integer ids)."""
    terminals = frame[history.TERMINAL_ID]
    if pd.api.types.is_integer_dtype(terminals):
        return np.asarray(terminals.to_numpy(dtype=np.int64) % sites, dtype=np.int64)
    codes = [
        int.from_bytes(hashlib.blake2b(str(t).encode(), digest_size=8).digest(), "big") % sites
        for t in terminals
    ]
    return np.asarray(codes, dtype=np.int64)


def feature_matrix(
    frame: pd.DataFrame, site_of: npt.NDArray[np.int64], *, site_features: bool, timezone: str
) -> FloatArray:
    """Features over the whole history, or (site_features) each site from its own journal.

    Site-local features are what a gateway really computes (a card's velocity counts only
    its transactions at this site); every row of the comparison then uses them.
    """
    if not site_features:
        return compute_features(frame, timezone=timezone)
    out = np.empty((len(frame), len(FEATURE_NAMES)), dtype=np.float64)
    for site in np.unique(site_of):
        rows = np.flatnonzero(site_of == site)
        out[rows] = compute_features(frame.iloc[rows].reset_index(drop=True), timezone=timezone)
    return out


def labelled_rows(
    frame: pd.DataFrame, features: FloatArray, rows: npt.NDArray[np.intp]
) -> list[LabelledRow]:
    """The gateway's journal rows for one batch: card, transaction key, features, label."""
    cards = frame[history.CUSTOMER_ID].to_numpy()[rows]
    keys = frame[history.TRANSACTION_ID].to_numpy()[rows]
    frauds = frame[history.TX_FRAUD].to_numpy()[rows]
    return [
        LabelledRow(str(card), str(key), tuple(values), bool(fraud))
        for card, key, values, fraud in zip(
            cards, keys, features[rows].tolist(), frauds, strict=True
        )
    ]


def period_index(frame: pd.DataFrame, config: PrivacyEvaluationConfig) -> npt.NDArray[np.int64]:
    """Period number of each row within the training window; -1 outside it."""
    days = (
        frame[history.TX_DATETIME].dt.normalize() - pd.Timestamp(config.train_start)
    ).dt.days.to_numpy(dtype=np.int64)
    inside = (days >= 0) & (days < config.train_days)
    return np.where(inside, days // config.period_days, -1)


def make_batches(
    frame: pd.DataFrame,
    features: FloatArray,
    site_of: npt.NDArray[np.int64],
    schema: BinSchema,
    config: PrivacyEvaluationConfig,
) -> list[Batch]:
    """Exact tables of every (site, period), with and without contribution bounding."""
    period_of = period_index(frame, config)
    batches = []
    for site in range(config.sites):
        for period in range(config.periods):
            rows = np.flatnonzero((site_of == site) & (period_of == period))
            journal = labelled_rows(frame, features, rows)
            batches.append(
                Batch(
                    site=site,
                    period=period,
                    bounded=exact_table(journal, schema, config.max_contributions),
                    unbounded=exact_table(journal, schema, UNBOUNDED),
                )
            )
    return batches


# -- training and scoring -----------------------------------------------------------------


def train_raw(
    frame: pd.DataFrame,
    features: FloatArray,
    train_days: int,
    config: PrivacyEvaluationConfig,
    *,
    progress: bool,
) -> lightgbm.Booster:
    """`model.train`'s protocol on raw rows (so row (a) reproduces the default model)."""
    training = TrainingConfig(
        train_end=config.train_end, train_days=train_days, max_trees=config.raw_max_trees
    )
    return fit_prequential(frame, features, training, progress=progress).final


@dataclass(frozen=True)
class TestSet:
    """The handbook test week, as raw features and as bin codes."""

    frame: pd.DataFrame
    features: FloatArray
    codes: FloatArray


def score_table(
    table: CountTable, schema: BinSchema, test: TestSet, config: PrivacyEvaluationConfig
) -> tuple[Metrics, bool]:
    """Train from a summed table and score the test week; (metrics, learned anything).

    A table that teaches nothing (no cell survived) gets a constant score: that is what
    the hub would have, and it scores as a random model.
    """
    try:
        booster = train_from_table(table, schema, config.aggregate)
    except ValueError:
        return compute_metrics(test.frame, np.zeros(len(test.frame))), False
    return compute_metrics(test.frame, booster.predict(test.codes)), True


# -- the DP runs ----------------------------------------------------------------------------


def selection_shares(
    batches: Sequence[Batch], released: Sequence[NoisyTable]
) -> tuple[float, float, float]:
    """Shares of (cells, transactions, frauds) of the bounded tables that were released."""
    cells = kept_cells = rows = kept_rows = frauds = kept_frauds = 0
    for batch, table in zip(batches, released, strict=True):
        cells += len(batch.bounded)
        kept_cells += len(table.cells)
        for cell, (genuine, fraud) in batch.bounded.items():
            rows += genuine + fraud
            frauds += fraud
            if cell in table.cells:
                kept_rows += genuine + fraud
                kept_frauds += fraud
    return _share(kept_cells, cells), _share(kept_rows, rows), _share(kept_frauds, frauds)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def noise_sampler(
    config: PrivacyEvaluationConfig, mechanism: Mechanism, epsilon: float, draw: int
) -> NoiseSampler | None:
    """With `config.seed`: a seeded sampler per (mechanism, epsilon, draw), so each row of
    the table is reproducible on its own; without: None (OpenDP, fresh noise)."""
    if config.seed is None:
        return None
    return SeededDiscreteLaplace(
        config.seed, MECHANISMS.index(mechanism), round(epsilon * 1_000_000), draw
    )


def release_batches(
    batches: Sequence[Batch],
    params: ReleaseParameters,
    *,
    progress: bool,
    desc: str,
    noise: NoiseSampler | None = None,
) -> list[NoisyTable]:
    """One DP release of every batch, as the gateways would send them (fresh noise)."""
    bar = tqdm(batches, desc=desc, unit="batch", disable=not progress, leave=False)
    return [release_table(batch.bounded, params, noise=noise) for batch in bar]


def selected_exact(batches: Sequence[Batch], released: Sequence[NoisyTable]) -> ExactTable:
    """Exact counts of the released cells only: the DP selection's cost without the noise."""
    return sum_tables(
        exact_as_released({cell: batch.bounded[cell] for cell in table.cells})
        for batch, table in zip(batches, released, strict=True)
    )


def row_label(mechanism: Mechanism, epsilon: float) -> str:
    return f"DP {MECHANISM_LABELS[mechanism]}, ε = {epsilon:g}"


def run_threshold(
    epsilon: float,
    batches: Sequence[Batch],
    schema: BinSchema,
    test: TestSet,
    config: PrivacyEvaluationConfig,
    *,
    progress: bool,
) -> tuple[ResultRow, SelectionStats]:
    """Threshold mechanism: release every batch `repetitions` times at `epsilon`; train
    and score each draw."""
    params = config.params(epsilon)
    runs: list[Metrics] = []
    selection_only: list[Metrics] = []
    shares: list[tuple[float, float, float]] = []
    spent: list[tuple[float, float]] = []
    failed = 0
    for rep in range(config.repetitions):
        desc = f"  threshold ε={epsilon:g} draw {rep + 1}/{config.repetitions}"
        noise = noise_sampler(config, "threshold", epsilon, rep)
        released = release_batches(batches, params, progress=progress, desc=desc, noise=noise)
        shares.append(selection_shares(batches, released))
        spent.extend((table.epsilon, table.delta) for table in released)
        metrics, learned = score_table(sum_tables(released), schema, test, config)
        runs.append(metrics)
        failed += not learned
        selection_only.append(
            score_table(selected_exact(batches, released), schema, test, config)[0]
        )
    first = released[0]
    assert first.threshold is not None  # a thresholded release
    mean_shares = [statistics.fmean(s[i] for s in shares) for i in range(3)]
    stats = SelectionStats(
        epsilon=epsilon,
        epsilon_spent=max(eps for eps, _ in spent),
        delta_spent=max(delta for _, delta in spent),
        threshold=first.threshold,
        total_scale=first.total_scale,
        fraud_scale=first.fraud_scale,
        cells_share=mean_shares[0],
        transactions_share=mean_shares[1],
        frauds_share=mean_shares[2],
        selection_only=ResultRow(
            f"ε = {epsilon:g}, released cells, exact counts", epsilon, tuple(selection_only)
        ),
    )
    row = ResultRow(row_label("threshold", epsilon), epsilon, tuple(runs), failed, "threshold")
    return row, stats


# -- known domain -----------------------------------------------------------------------------

# OpenDP's sampler runs in Rust without the GIL: a few threads release batches in parallel.
RELEASE_THREADS = max(1, min(4, os.cpu_count() or 1))


def discrete_laplace_sd(scale: float) -> float:
    """Standard deviation of discrete Laplace noise, P(z) proportional to exp(-|z| / scale)."""
    a = math.exp(-1.0 / scale)
    return math.sqrt(2.0 * a) / (1.0 - a)


def release_known_domain_batches(
    batches: Sequence[Batch],
    schema: BinSchema,
    params: ReleaseParameters,
    *,
    progress: bool,
    desc: str,
    noise: NoiseSampler | None = None,
) -> list[NoisyTable]:
    """One known-domain release of every batch, as the gateways would send them (a seeded
    sampler draws in batch order, on one thread)."""
    with ThreadPoolExecutor(RELEASE_THREADS if noise is None else 1) as pool:
        tables = pool.map(
            lambda batch: release_known_domain(batch.bounded, schema, params, noise=noise),
            batches,
        )
        bar = tqdm(
            tables, total=len(batches), desc=desc, unit="batch", disable=not progress, leave=False
        )
        return list(bar)


def run_known_domain(
    epsilon: float,
    batches: Sequence[Batch],
    schema: BinSchema,
    test: TestSet,
    config: PrivacyEvaluationConfig,
    *,
    progress: bool,
) -> tuple[ResultRow, KnownDomainStats]:
    """Known-domain mechanism: release every batch `repetitions` times at `epsilon` (every
    cell of the domain, OpenDP's discrete Laplace); train and score each draw."""
    params = config.params(epsilon)
    runs: list[Metrics] = []
    spent: list[tuple[float, float]] = []
    failed = 0
    for rep in range(config.repetitions):
        desc = f"  known domain ε={epsilon:g} draw {rep + 1}/{config.repetitions}"
        released = release_known_domain_batches(
            batches,
            schema,
            params,
            progress=progress,
            desc=desc,
            noise=noise_sampler(config, "known_domain", epsilon, rep),
        )
        spent.extend((table.epsilon, table.delta) for table in released)
        metrics, learned = score_table(sum_tables(released), schema, test, config)
        runs.append(metrics)
        failed += not learned
    scale = released[0].fraud_scale
    sd = discrete_laplace_sd(scale)
    stats = KnownDomainStats(
        epsilon=epsilon,
        epsilon_spent=max(eps for eps, _ in spent),
        delta_spent=max(delta for _, delta in spent),
        scale=scale,
        cells=len(released[0].cells),
        count_sd=sd,
        summed_sd=sd * math.sqrt(len(batches)),
    )
    label = row_label("known_domain", epsilon)
    return ResultRow(label, epsilon, tuple(runs), failed, "known_domain"), stats


# -- the whole evaluation ---------------------------------------------------------------------


def make_test_set(
    frame: pd.DataFrame, features: FloatArray, schema: BinSchema, train_end: dt.date
) -> TestSet:
    """The handbook test week after `train_end` (1-week rule for known cards)."""
    mask = evaluation_mask(frame, ProtocolPeriods.after_training(train_end))
    labels = frame[history.TX_FRAUD].to_numpy()[mask]
    if len(np.unique(labels)) < 2:
        raise ValueError(
            f"the history has no usable test week after {train_end} (needs rows and both "
            "classes in the week starting 7 days later); use a longer history or --train-end"
        )
    return TestSet(frame[mask], features[mask], schema.transform_matrix(features[mask]))


def run_privacy_evaluation(
    frame: pd.DataFrame,
    config: PrivacyEvaluationConfig | None = None,
    *,
    schema: BinSchema | None = None,
    progress: bool = True,
) -> PrivacyReport:
    """Every row of the comparison on one history (validated, time-sorted)."""
    config = config or PrivacyEvaluationConfig()
    schema = schema or BinSchema.default()
    say = _Progress(progress)
    site_of = assign_sites(frame, config.sites)
    scope = "each site's own journal" if config.site_features else "the whole history"
    say(f"features of {len(frame):,} transactions over {scope}")
    features = feature_matrix(
        frame, site_of, site_features=config.site_features, timezone=config.timezone
    )
    test = make_test_set(frame, features, schema, config.train_end)

    rows = _raw_rows(frame, features, test, config, say)

    say(f"exact tables of {config.sites} sites x {config.periods} periods")
    batches = make_batches(frame, features, site_of, schema, config)
    rows += _no_noise_rows(batches, schema, test, config)

    selection: list[SelectionStats] = []
    known: list[KnownDomainStats] = []
    for epsilon in sorted(config.epsilons):
        for mechanism in config.mechanisms:
            say(
                f"DP release, {MECHANISM_LABELS[mechanism]}, ε = {epsilon:g}: "
                f"{config.repetitions} draws of {len(batches)} batches"
            )
            if mechanism == "known_domain":
                row, kd_stats = run_known_domain(
                    epsilon, batches, schema, test, config, progress=progress
                )
                known.append(kd_stats)
            else:
                row, stats = run_threshold(
                    epsilon, batches, schema, test, config, progress=progress
                )
                selection.append(stats)
            rows.append(row)
    say("done")
    return PrivacyReport(
        config=config,
        data=_summary(frame, batches, test, config),
        rows=tuple(rows),
        selection=tuple(selection),
        seconds=say.elapsed,
        known_domain=tuple(known),
    )


def _raw_rows(
    frame: pd.DataFrame,
    features: FloatArray,
    test: TestSet,
    config: PrivacyEvaluationConfig,
    say: _Progress,
) -> list[ResultRow]:
    """Raw-row models: the handbook week, and the DP runs' window if that differs."""
    handbook = "raw rows, 1-week window (handbook" + (
        "" if config.site_features else "; default model"
    )
    windows = [(HANDBOOK_TRAIN_DAYS, handbook + ")")]
    if config.train_days != HANDBOOK_TRAIN_DAYS:
        windows.append((config.train_days, f"raw rows, {config.train_days}-day window"))
    rows = []
    for days, label in windows:
        say(f"training on raw rows, {days}-day window (fold model + final model)")
        booster = train_raw(frame, features, days, config, progress=say.enabled)
        metrics = compute_metrics(test.frame, booster.predict(test.features))
        rows.append(ResultRow(label, None, (metrics,)))
    return rows


def _no_noise_rows(
    batches: Sequence[Batch], schema: BinSchema, test: TestSet, config: PrivacyEvaluationConfig
) -> list[ResultRow]:
    """Binned tables without noise: every row, then with contribution bounding (eps = inf)."""
    out = []
    m = config.max_contributions
    for label, tables in (
        ("binned table, all rows (no bound, no noise)", [b.unbounded for b in batches]),
        (f"binned table, ≤ {m}/card/period, no noise (ε = ∞)", [b.bounded for b in batches]),
    ):
        summed = sum_tables(exact_as_released(t) for t in tables)
        metrics, learned = score_table(summed, schema, test, config)
        out.append(ResultRow(label, math.inf, (metrics,), 0 if learned else 1))
    return out


def _summary(
    frame: pd.DataFrame, batches: Sequence[Batch], test: TestSet, config: PrivacyEvaluationConfig
) -> DataSummary:
    def count(tables: list[ExactTable], label: int | None) -> int:
        return sum((g + f) if label is None else f for t in tables for g, f in t.values())

    unbounded = [b.unbounded for b in batches]
    bounded = [b.bounded for b in batches]
    return DataSummary(
        history_rows=len(frame),
        window_rows=count(unbounded, None),
        window_frauds=count(unbounded, 1),
        bounded_rows=count(bounded, None),
        bounded_frauds=count(bounded, 1),
        batches=len(batches),
        test_rows=len(test.frame),
        test_frauds=int(test.frame[history.TX_FRAUD].sum()),
    )


# -- report -----------------------------------------------------------------------------------


def _cell(row: ResultRow, metric: str) -> str:
    if len(row.runs) == 1:
        return f"{row.mean(metric):.3f}"
    return f"{row.mean(metric):.3f} ± {row.spread(metric):.3f}"


def format_results(rows: Sequence[ResultRow]) -> str:
    """The comparison as a Markdown table (mean ± sd over noise draws)."""
    lines = [
        "| training data | " + " | ".join(name for _, name in METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for row in rows:
        note = (
            f" ({row.failed_runs}/{len(row.runs)} draws learned nothing)" if row.failed_runs else ""
        )
        cells = " | ".join(_cell(row, metric) for metric, _ in METRICS)
        lines.append(f"| {row.label}{note} | {cells} |")
    return "\n".join(lines)


def format_selection(report: PrivacyReport) -> str:
    """Per epsilon: what the DP selection costs (why low epsilon hurts).

    The last column trains on the released cells with their exact counts: if it is as poor
    as the noisy row, the loss comes from the cells the threshold suppressed, not from noise.
    """
    periods = report.config.periods
    lines = [
        "| ε per period | released iff noisy total > | total scale | fraud scale | "
        "cells released | transactions in released cells | frauds in released cells | "
        f"ε per card per site over {periods} periods | "
        "AUC / AP, released cells with exact counts |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report.selection:
        exact = (
            f"{_cell(s.selection_only, 'auc_roc')} / {_cell(s.selection_only, 'average_precision')}"
        )
        lines.append(
            f"| {s.epsilon:g} | {s.threshold} | {s.total_scale:.2f} | {s.fraud_scale:.2f} | "
            f"{s.cells_share:.1%} | {s.transactions_share:.1%} | {s.frauds_share:.1%} | "
            f"{s.epsilon_spent * periods:g} | {exact} |"
        )
    return "\n".join(lines)


def format_comparison(report: PrivacyReport) -> str:
    """Per epsilon, the mechanisms side by side: AUC / AP / CP@100 (mean over draws)."""
    mechanisms = report.config.mechanisms
    by_key = {(r.mechanism, r.epsilon): r for r in report.rows if r.mechanism is not None}
    lines = [
        "| ε per period | "
        + " | ".join(f"{MECHANISM_LABELS[m]}: AUC / AP / CP@100" for m in mechanisms)
        + " |",
        "|---:|" + "---:|" * len(mechanisms),
    ]
    for epsilon in sorted(report.config.epsilons):
        cells = []
        for mechanism in mechanisms:
            row = by_key.get((mechanism, epsilon))
            cells.append(
                "" if row is None else " / ".join(f"{row.mean(m):.3f}" for m, _ in METRICS)
            )
        lines.append(f"| {epsilon:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_known_domain(report: PrivacyReport) -> str:
    """Per epsilon: the noise the known-domain release puts on every cell."""
    c = report.config
    lines = [
        "| ε per period | scale | cells per batch | noise sd of a count | noise sd of a cell's "
        f"fraud count summed over {report.data.batches} batches | δ | "
        f"ε per card per site over {c.periods} periods |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report.known_domain:
        lines.append(
            f"| {s.epsilon:g} | {s.scale:.2f} | {s.cells:,} | {s.count_sd:.2f} | "
            f"{s.summed_sd:.1f} | {s.delta_spent:g} | {s.epsilon_spent * c.periods:g} |"
        )
    return "\n".join(lines)


def format_report(report: PrivacyReport) -> str:
    c, d = report.config, report.data
    test = ProtocolPeriods.after_training(c.train_end)
    scope = "each site's own journal" if c.site_features else "the whole history"
    mechanisms = ", ".join(MECHANISM_LABELS[m] for m in c.mechanisms)
    sampler = (
        "OpenDP discrete Laplace"
        if c.seed is None
        else f"discrete Laplace drawn by NumPy with seed {c.seed} (reproducible; scales and "
        "thresholds from OpenDP's privacy maps; gateways use OpenDP's own sampler)"
    )
    lines = [
        "# Cost of privacy: models trained from DP count tables vs. raw rows",
        "",
        f"- history: {d.history_rows:,} transactions; {c.sites} sites (terminal_id % "
        f"{c.sites}); features computed over {scope}",
        f"- DP training window: {c.train_start} .. {c.train_end} (exclusive), "
        f"{c.periods} periods of {c.period_days} day(s): {d.batches} (site, period) batches",
        f"- contribution bound m = {c.max_contributions} transactions per card per site "
        f"per period: keeps {_share(d.bounded_rows, d.window_rows):.1%} of "
        f"{d.window_rows:,} transactions and {_share(d.bounded_frauds, d.window_frauds):.1%} "
        f"of {d.window_frauds:,} frauds",
        f"- DP mechanisms: {mechanisms}; {sampler}; known domain: pure ε "
        f"(δ = 0), threshold: δ = {c.delta:g} per release; ε is per card, per site, per "
        f"period (basic composition over the window); {c.repetitions} noise draws per ε "
        "and mechanism (mean ± sd)",
        f"- test: {test.test_start} .. {test.test_end} (exclusive), {d.test_rows:,} "
        f"transactions, {d.test_frauds:,} frauds, cards known compromised removed "
        "(handbook 1-week rule); the same rows for every model",
        f"- table model: LightGBM on weighted rows, {c.aggregate.num_trees} trees, "
        f"{c.aggregate.num_leaves} leaves; run time {report.seconds:.0f} s",
        "",
        format_results(report.rows),
        "",
    ]
    if len(c.mechanisms) > 1:
        lines += [
            "## The mechanisms side by side",
            "",
            format_comparison(report),
            "",
        ]
    if report.known_domain:
        lines += [
            "## Known domain: noise on every cell, nothing selected",
            "",
            format_known_domain(report),
            "",
            "Every cell of the bin schema's domain is released for every (site, period), "
            "empty or not, with discrete Laplace noise on its genuine and fraud counts "
            "(OpenDP; the total is their sum). Sparse fraud cells are never cut away: their "
            "noise averages out in the hub's sum.",
            "",
        ]
    if report.selection:
        lines += [
            "## Threshold: what the DP selection lets through",
            "",
            format_selection(report),
            "",
            "A cell is released for a (site, period) only if its noisy total passes the "
            "threshold; fraud counts are noised in released cells only. The last column trains "
            "on the released cells with their exact counts: where it is as poor as the DP row, "
            "the loss comes from the suppressed cells, not from the noise on the counts.",
            "",
        ]
    return "\n".join(lines)


_CURVE_STYLE: dict[str, dict[str, Any]] = {
    "known_domain": {"marker": "o", "linestyle": "-", "color": "black"},
    "threshold": {"marker": "s", "linestyle": "--", "color": "tab:purple"},
}


def plot_report(report: PrivacyReport, path: Path) -> None:
    """Metrics vs. epsilon (log axis), one curve per mechanism, with raw and no-noise
    baselines as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baselines = [r for r in report.rows if r.epsilon is None or math.isinf(r.epsilon)]
    styles = ["-", "--", ":", "-."]
    epsilons = sorted(report.config.epsilons)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4.8), sharex=True)
    for ax, (metric, name) in zip(axes, METRICS, strict=True):
        for mechanism in report.config.mechanisms:
            dp_rows = sorted(
                (r for r in report.rows if r.mechanism == mechanism),
                key=lambda r: float(r.epsilon or 0.0),
            )
            ax.errorbar(
                [r.epsilon for r in dp_rows],
                [r.mean(metric) for r in dp_rows],
                yerr=[r.spread(metric) for r in dp_rows],
                capsize=3,
                label=f"DP {MECHANISM_LABELS[mechanism]} (mean ± sd)",
                **_CURVE_STYLE[mechanism],
            )
        for i, row in enumerate(baselines):
            ax.axhline(
                row.mean(metric),
                linestyle=styles[i % len(styles)],
                color=f"C{i}",
                linewidth=1,
                label=row.label,
            )
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(epsilons, [f"{e:g}" for e in epsilons])
        ax.set_xlabel("ε per card, site and period")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(
        f"Cost of privacy: {report.config.sites} sites, {report.config.train_days}-day window, "
        f"{report.config.period_days}-day periods, m = {report.config.max_contributions}"
    )
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _json(report: PrivacyReport) -> dict[str, Any]:
    rows = [
        {
            "label": r.label,
            "epsilon": None
            if r.epsilon is None
            else ("inf" if math.isinf(r.epsilon) else r.epsilon),
            "mechanism": r.mechanism,
            "failed_runs": r.failed_runs,
            "runs": [m.as_dict() for m in r.runs],
            **{f"{m}_mean": r.mean(m) for m, _ in METRICS},
            **{f"{m}_sd": r.spread(m) for m, _ in METRICS},
        }
        for r in report.rows
    ]
    config = asdict(report.config) | {
        "train_end": report.config.train_end.isoformat(),
        "mechanisms": list(report.config.mechanisms),
    }
    return {
        "config": config,
        "data": asdict(report.data),
        "rows": rows,
        "selection": [asdict(s) for s in report.selection],
        "known_domain": [asdict(s) for s in report.known_domain],
        "seconds": report.seconds,
    }


def write_report(report: PrivacyReport, out_dir: Path) -> list[Path]:
    """OUT/privacy_cost.md, .png and .json; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = out_dir / MARKDOWN_FILE
    markdown.write_text(report.markdown())
    plot = out_dir / PLOT_FILE
    plot_report(report, plot)
    data = out_dir / JSON_FILE
    data.write_text(json.dumps(_json(report), indent=2) + "\n")
    return [markdown, plot, data]
