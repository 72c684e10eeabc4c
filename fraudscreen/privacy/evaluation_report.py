"""The privacy evaluation's output: Markdown tables, the plot and the JSON.

`write_report` writes OUT/privacy_cost.md, .png and .json from a `PrivacyReport` that
privacy.evaluation computed; nothing here trains or releases.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fraudscreen.model.evaluate import ProtocolPeriods
from fraudscreen.privacy.evaluation_config import MECHANISM_LABELS

if TYPE_CHECKING:  # the runner imports this module for PrivacyReport.markdown()
    from fraudscreen.privacy.evaluation import PrivacyReport, ResultRow

METRICS: tuple[tuple[str, str], ...] = (
    ("auc_roc", "AUC ROC"),
    ("average_precision", "Average Precision"),
    ("card_precision_at_100", "Card Precision@100"),
)
MARKDOWN_FILE = "privacy_cost.md"
PLOT_FILE = "privacy_cost.png"
JSON_FILE = "privacy_cost.json"


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


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
