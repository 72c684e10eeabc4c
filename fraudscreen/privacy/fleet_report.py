"""`fraudscreen evaluate --privacy --sites 20,100,500 [--drift]`: the fleet measurement.

For each fleet size: one simulated fleet, the comparison of `fleet_evaluation` (shipped
model, raw rows, today's feature-bin table and the score-band table, no noise and at each
epsilon with the spread over noise draws), the goal rows marked met or missed, and with
--drift a second fleet where card testing (scenario 4) starts the day the aggregate
window opens: shipped model vs. retrained on raw rows vs. retrained from aggregates on the
test week after it, and the share of the raw retraining's recovery that the aggregates get.
Writes OUT/fleet_privacy.md, .json and .png (AP vs. epsilon per fleet size).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fraudscreen.fleet_simulate import SCENARIO_4, FleetConfig, simulate_fleet_rows
from fraudscreen.privacy.fleet_evaluation import (
    FEATURE_BINS,
    SCHEMA_NAMES,
    FleetEvaluationConfig,
    Row,
    Windows,
    evaluate_fleet,
    fleet_history,
    format_rows,
    train_shipped,
)

FLEET_PLOT_FILE = "fleet_privacy.png"
CHOSEN = "score bands"
BASELINE = FEATURE_BINS
RAW_LABEL_PREFIX = "raw rows"
SHIPPED_LABEL_PREFIX = "shipped"
GOAL_EPSILON = 1.0
GOAL_SITES = (100, 500)
GOAL_AP, GOAL_AUC, GOAL_CP = 0.03, 0.005, 0.02
GOAL_RECOVERY = 0.8
FLEET_START = dt.date(2018, 4, 1)
# 30 days of feature warm-up, the shipped model's week, 14 days of aggregates, the 7-day
# label delay and the test week.
HISTORY_DAYS = 65
SHIPPED_TRAIN_END = FLEET_START + dt.timedelta(days=37)


@dataclass(frozen=True)
class FleetRunConfig:
    sites: tuple[int, ...] = (20, 100, 500)
    epsilons: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    draws: int = 3
    drift: bool = False
    seed: int = 0
    days: int = HISTORY_DAYS
    schemas: tuple[str, ...] = (BASELINE, CHOSEN)

    def __post_init__(self) -> None:
        unknown = [name for name in self.schemas if name not in SCHEMA_NAMES]
        if unknown or not self.schemas:
            raise ValueError(
                f"schemas {', '.join(map(repr, unknown or self.schemas))} unknown: give one or "
                f"more of {', '.join(map(repr, SCHEMA_NAMES))}, comma-separated"
            )

    @property
    def drift_schemas(self) -> tuple[str, ...]:
        """The corrections measured under drift: every score-band schema asked for."""
        return tuple(name for name in self.schemas if name != BASELINE) or (CHOSEN,)

    def evaluation(self, epsilons: tuple[float, ...] | None = None) -> FleetEvaluationConfig:
        return FleetEvaluationConfig(
            Windows(SHIPPED_TRAIN_END),
            epsilons=self.epsilons if epsilons is None else epsilons,
            draws=self.draws,
            schemas=self.schemas,
            noise_seed=self.seed,
        )


@dataclass(frozen=True)
class FleetResult:
    sites: int
    rows: tuple[Row, ...]
    info: dict[str, Any]
    drift_rows: tuple[Row, ...] = ()
    drift_info: dict[str, Any] | None = None


def _find(rows: Sequence[Row], schema: str, label_start: str) -> Row | None:
    for row in rows:
        if row.schema == schema and row.label.startswith(label_start):
            return row
    return None


def goal_lines(result: FleetResult) -> list[str]:
    """Met / missed for the no-drift goal (eps = 1 vs raw rows) and the drift goal."""
    lines = []
    raw = _find(result.rows, "-", RAW_LABEL_PREFIX)
    dp = _find(result.rows, CHOSEN, f"ε = {GOAL_EPSILON:g}")
    if raw is not None and dp is not None:
        for metric, name, bound in (
            ("average_precision", "AP", GOAL_AP),
            ("auc_roc", "AUC", GOAL_AUC),
            ("card_precision_at_100", "CP@100", GOAL_CP),
        ):
            gap = raw.mean(metric) - dp.mean(metric)
            verdict = "met" if gap <= bound else "missed"
            lines.append(
                f"- {name} at ε = 1 ({CHOSEN}): {dp.mean(metric):.3f} vs raw rows "
                f"{raw.mean(metric):.3f}, gap {gap:+.3f} (goal ≤ {bound}): **{verdict}**"
            )
    if result.drift_rows and _find(result.drift_rows, CHOSEN, "ε") is not None:
        lines.append(f"- drift: {recovery_line(result.drift_rows)}")
    return lines


def recovery(rows: Sequence[Row], schema: str = CHOSEN) -> float | None:
    shipped = _find(rows, "-", SHIPPED_LABEL_PREFIX)
    raw = _find(rows, "-", RAW_LABEL_PREFIX)
    dp = _find(rows, schema, f"ε = {GOAL_EPSILON:g}")
    if shipped is None or raw is None or dp is None:
        return None
    gained = raw.mean("average_precision") - shipped.mean("average_precision")
    if gained <= 0:
        return None
    return (dp.mean("average_precision") - shipped.mean("average_precision")) / gained


def recovery_line(rows: Sequence[Row], schema: str = CHOSEN) -> str:
    share = recovery(rows, schema)
    if _find(rows, schema, f"ε = {GOAL_EPSILON:g}") is None:
        return f"{schema}: not measured at ε = {GOAL_EPSILON:g}: no ratio"
    if share is None:
        return f"{schema}: raw retraining recovered nothing over the shipped model: no ratio"
    verdict = "met" if share >= GOAL_RECOVERY else "missed"
    return (
        f"{schema}: aggregates (ε = 1) recover {share:.0%} of the AP that raw retraining "
        f"recovers over the shipped model (goal ≥ {GOAL_RECOVERY:.0%}): **{verdict}**"
    )


def run_fleet_privacy(config: FleetRunConfig, *, progress: bool = True) -> list[FleetResult]:
    """Each fleet simulated once: with --drift, the no-drift fleet is the drifted one
    without its scenario-4 rows (the simulator only adds them), so the two share
    everything but the drift."""
    results = []
    window_start = (SHIPPED_TRAIN_END - FLEET_START).days
    evaluation = config.evaluation()
    keep_from = window_start - evaluation.windows.shipped_days  # before: warm-up
    for sites in config.sites:
        if progress:
            print(f"simulating {sites} sites, {config.days} days", file=sys.stderr, flush=True)
        simulated = simulate_fleet_rows(
            FleetConfig(
                sites=sites,
                days=config.days,
                drift_start=window_start if config.drift else None,
                seed=config.seed,
            ),
            progress=progress,
        )
        fleet = fleet_history(
            simulated, keep_from=keep_from, without_scenario=SCENARIO_4, progress=progress
        )
        shipped = train_shipped(fleet, evaluation)
        rows, info = evaluate_fleet(fleet, evaluation, shipped=shipped, progress=progress)
        info |= {"rows": len(fleet.frame), "frauds": int(fleet.frame["TX_FRAUD"].sum())}
        del fleet
        drift_rows: tuple[Row, ...] = ()
        drift_info = None
        if config.drift:
            drifted = fleet_history(simulated, keep_from=keep_from, progress=progress)
            drift_config = replace(
                config.evaluation((GOAL_EPSILON,)), schemas=config.drift_schemas, drifted=True
            )
            d_rows, drift_info = evaluate_fleet(
                drifted, drift_config, shipped=shipped, progress=progress
            )
            drift_rows = tuple(d_rows)
            del drifted
        del simulated
        results.append(FleetResult(sites, tuple(rows), info, drift_rows, drift_info))
    return results


def format_fleet_report(
    results: Sequence[FleetResult], config: FleetRunConfig, seconds: float
) -> str:
    evaluation = config.evaluation()
    w = evaluation.windows
    test = w.test
    lines = [
        "# Fleet learning from DP aggregates vs. raw rows",
        "",
        f"- fleets: {', '.join(str(r.sites) for r in results)} simulated sites "
        "(`fraudscreen simulate --sites N`), features from each site's own journal",
        f"- shipped model: raw rows {w.shipped_train_end - dt.timedelta(days=7)} .. "
        f"{w.shipped_train_end} (exclusive); its score bands from its own training rows",
        f"- aggregate window: {w.aggregate_start} .. {w.aggregate_end} (exclusive): one table "
        f"per site and {evaluation.period_days}-day period (`privacy.period_days`), "
        f"≤ {evaluation.max_contributions} transactions per card, site and day, known-domain "
        "release noised for one card's day, ε per card per site per day: OpenDP's "
        "discrete Laplace scale, the noise drawn from the same distribution with a seeded "
        f"generator (`seeded_noise`, seed {config.seed}) so this table reproduces",
        f"- test week: {test.test_start} .. {test.test_end} (exclusive), cards known "
        "compromised removed (handbook); Card Precision@100 with the handbook's rule (cards "
        "detected on an earlier test day removed before ranking)",
        f"- {config.draws} noise draws per ε (mean ± sd); run time {seconds:.0f} s",
        "",
    ]
    for result in results:
        info = result.info
        lines += [
            f"## {result.sites} sites ({info.get('rows', 0):,} transactions, "
            f"{info.get('frauds', 0):,} frauds; test {info['test_rows']:,} / "
            f"{info['test_frauds']:,} frauds)",
            "",
            format_rows(result.rows),
            "",
            *goal_lines(result),
            "",
        ]
        if result.drift_rows:
            lines += [
                f"### Drift, {result.sites} sites: card testing from {w.aggregate_start}",
                "",
                format_rows(result.drift_rows),
                "",
                *(f"- {recovery_line(result.drift_rows, s)}" for s in config.drift_schemas),
                "",
            ]
    return "\n".join(lines)


def plot_fleet(results: Sequence[FleetResult], config: FleetRunConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.5), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        styles = ("o-", "s--", "^:", "v-.", "d:")
        for schema, style in zip(config.schemas, itertools.cycle(styles), strict=False):
            rows = [r for r in result.rows if r.schema == schema and r.epsilon is not None]
            dp = sorted((r for r in rows if not math.isinf(r.epsilon or 0.0)), key=_eps)
            ax.errorbar(
                [_eps(r) for r in dp],
                [r.mean("average_precision") for r in dp],
                yerr=[r.spread("average_precision") for r in dp],
                fmt=style,
                capsize=3,
                label=f"{schema} (DP)",
            )
        for i, label in enumerate((RAW_LABEL_PREFIX, SHIPPED_LABEL_PREFIX)):
            row = _find(result.rows, "-", label)
            if row is not None:
                ax.axhline(
                    row.mean("average_precision"), color=("k", "0.55")[i], lw=1, label=row.label
                )
        ax.set_xscale("log")
        ax.set_xticks(list(config.epsilons), [f"{e:g}" for e in config.epsilons])
        ax.minorticks_off()
        ax.set_xlabel("ε per card, site and day")
        ax.set_ylabel("Average Precision")
        ax.set_title(f"{result.sites} sites")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _eps(row: Row) -> float:
    return float(row.epsilon or 0.0)


def _row_json(row: Row) -> dict[str, Any]:
    eps = row.epsilon
    return {
        "schema": row.schema,
        "label": row.label,
        "epsilon": None if eps is None else ("inf" if math.isinf(eps) else eps),
        "runs": [asdict(r) for r in row.runs],
    }


def write_fleet_report(
    results: Sequence[FleetResult], config: FleetRunConfig, seconds: float, out: Path
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    markdown = out / "fleet_privacy.md"
    markdown.write_text(format_fleet_report(results, config, seconds) + "\n")
    plot = out / FLEET_PLOT_FILE
    plot_fleet(results, config, plot)
    data = out / "fleet_privacy.json"
    document = {
        "config": asdict(config),
        "seconds": seconds,
        "fleets": [
            {
                "sites": r.sites,
                "info": {k: v for k, v in r.info.items()},
                "rows": [_row_json(x) for x in r.rows],
                "drift_rows": [_row_json(x) for x in r.drift_rows],
                "recovery": recovery(r.drift_rows) if r.drift_rows else None,
                "recovery_by_schema": {
                    s: recovery(r.drift_rows, s) for s in config.drift_schemas if r.drift_rows
                },
            }
            for r in results
        ],
    }
    data.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return [markdown, plot, data]


def timed_run(config: FleetRunConfig, out: Path, *, progress: bool = True) -> tuple[str, float]:
    started = time.perf_counter()
    results = run_fleet_privacy(config, progress=progress)
    seconds = time.perf_counter() - started
    write_fleet_report(results, config, seconds, out)
    return format_fleet_report(results, config, seconds), seconds
