"""A self-contained HTML evaluation report (plots embedded as PNG), for analysts.

Each `ScoredSet` is one model scored on one labelled data set (rows may carry weights:
an aggregate table's cells weigh their counts). The report draws ROC and precision-recall
curves of every set on shared axes, and each set's score distribution by label.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


@dataclass(frozen=True)
class ScoredSet:
    name: str
    labels: npt.NDArray[np.int8]
    scores: npt.NDArray[np.float64]
    weights: npt.NDArray[np.float64] | None = None

    def auc(self) -> float:
        return float(roc_auc_score(self.labels, self.scores, sample_weight=self.weights))

    def average_precision(self) -> float:
        return float(average_precision_score(self.labels, self.scores, sample_weight=self.weights))


def _png(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _curves(sets: Sequence[ScoredSet]) -> str:
    figure, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
    for s in sets:
        fpr, tpr, _ = roc_curve(s.labels, s.scores, sample_weight=s.weights)
        roc_ax.plot(fpr, tpr, label=f"{s.name} (AUC {s.auc():.3f})")
        precision, recall, _ = precision_recall_curve(s.labels, s.scores, sample_weight=s.weights)
        pr_ax.plot(recall, precision, label=f"{s.name} (AP {s.average_precision():.3f})")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    for ax in (roc_ax, pr_ax):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _png(figure)


def _distributions(sets: Sequence[ScoredSet]) -> str:
    figure, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 3.8), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, s in zip(axes[0], sets, strict=True):
        weights = s.weights if s.weights is not None else np.ones(len(s.scores))
        for label, name in ((0, "genuine"), (1, "fraud")):
            mask = s.labels == label
            ax.hist(
                s.scores[mask],
                bins=bins,
                weights=weights[mask],
                density=True,
                alpha=0.55,
                label=name,
            )
        ax.set(title=s.name, xlabel="score", ylabel="density (log)", yscale="log")
        ax.legend(fontsize=8)
    return _png(figure)


def write_report(
    path: Path,
    title: str,
    sections: Sequence[tuple[str, Sequence[ScoredSet]]],
    notes: Sequence[str] = (),
) -> Path:
    """Write the report; each section is a heading with the sets compared under it."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1150px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px}"
        "img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f"<p>{html.escape(note)}</p>" for note in notes]
    for heading, sets in sections:
        parts.append(
            f"<h2>{html.escape(heading)}</h2><table><tr><th>model</th>"
            "<th>AUC ROC</th><th>Average precision</th><th>frauds</th></tr>"
        )
        for s in sets:
            frauds = float(
                (s.weights if s.weights is not None else np.ones(len(s.labels)))[
                    s.labels == 1
                ].sum()
            )
            parts.append(
                f"<tr><td>{html.escape(s.name)}</td><td>{s.auc():.3f}</td>"
                f"<td>{s.average_precision():.3f}</td><td>{frauds:,.0f}</td></tr>"
            )
        parts.append("</table>")
        parts.append(f"<img alt='ROC and PR curves' src='data:image/png;base64,{_curves(sets)}'>")
        parts.append(
            f"<img alt='score distributions' src='data:image/png;base64,{_distributions(sets)}'>"
        )
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path
