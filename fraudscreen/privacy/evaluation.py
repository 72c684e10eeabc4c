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

This module trains and scores the rows and runs the DP releases; evaluation_config holds
what to simulate, evaluation_batches the gateway's path from history to exact tables (and
the test week), evaluation_report the Markdown, plot and JSON.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import lightgbm
import numpy as np
import pandas as pd
from tqdm import tqdm

from fraudscreen import history
from fraudscreen.binschema import BinSchema
from fraudscreen.model.evaluate import Metrics, compute_metrics
from fraudscreen.model.train import TrainingConfig, fit_prequential
from fraudscreen.model.train_aggregates import (
    CountTable,
    exact_as_released,
    sum_tables,
    train_from_table,
)
from fraudscreen.privacy.evaluation_batches import (
    Batch,
    ExactTable,
    FloatArray,
    TestSet,
    assign_sites,
    feature_matrix,
    make_batches,
    make_test_set,
)
from fraudscreen.privacy.evaluation_config import MECHANISM_LABELS, PrivacyEvaluationConfig
from fraudscreen.privacy.evaluation_report import format_report
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

HANDBOOK_TRAIN_DAYS = 7


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
