"""The Fraud Detection Handbook's evaluation protocol and metrics.

Train on a week, wait out a 7-day label delay, test on the following week, and drop from
each test day the cards already known to be compromised by then (their fraud would be
blocked anyway). Metrics: AUC ROC, Average Precision, and Card Precision@100 (per day,
the 100 cards with the highest score; the share that were really defrauded; averaged over
days), so our numbers sit beside the handbook's published ones.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudscreen import history

CARD_PRECISION_K = 100


@dataclass(frozen=True)
class Metrics:
    auc_roc: float
    average_precision: float
    card_precision_at_100: float
    transactions: int
    frauds: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class PublishedResult:
    name: str
    auc_roc: float
    average_precision: float
    card_precision_at_100: float


PUBLISHED_BASELINES: tuple[PublishedResult, ...] = (
    PublishedResult("handbook: logistic regression", 0.871, 0.606, 0.291),
    PublishedResult("handbook: random forest", 0.867, 0.658, 0.287),
    PublishedResult("handbook: XGBoost", 0.862, 0.639, 0.273),
    PublishedResult("handbook: best tuned (ch. 5)", 0.879, 0.694, 0.305),
)


@dataclass(frozen=True)
class ProtocolPeriods:
    """Half-open day ranges of the protocol, all derived from the training end."""

    train_start: dt.date
    train_end: dt.date
    test_start: dt.date
    test_end: dt.date

    @property
    def fold_end(self) -> dt.date:
        """End of the model-selection fold: the training start less the label delay."""
        return self.train_start - (self.test_start - self.train_end)

    @classmethod
    def after_training(
        cls, train_end: dt.date, *, train_days: int = 7, delay_days: int = 7, test_days: int = 7
    ) -> ProtocolPeriods:
        test_start = train_end + dt.timedelta(days=delay_days)
        return cls(
            train_start=train_end - dt.timedelta(days=train_days),
            train_end=train_end,
            test_start=test_start,
            test_end=test_start + dt.timedelta(days=test_days),
        )


def day_mask(frame: pd.DataFrame, start: dt.date, end: dt.date) -> npt.NDArray[np.bool_]:
    days = frame[history.TX_DATETIME].dt.normalize()
    return np.asarray((days >= pd.Timestamp(start)) & (days < pd.Timestamp(end)))


def evaluation_mask(frame: pd.DataFrame, periods: ProtocolPeriods) -> npt.NDArray[np.bool_]:
    """Test rows, without cards known to be compromised on each test day (the handbook's
    rule: frauds up to the day before, delayed, are known)."""
    days = frame[history.TX_DATETIME].dt.normalize()
    fraud = frame[history.TX_FRAUD].to_numpy() == 1
    cards = frame[history.CUSTOMER_ID]
    in_train = day_mask(frame, periods.train_start, periods.train_end)
    known = set(cards[in_train & fraud])
    mask = np.zeros(len(frame), dtype=bool)
    test_days = (periods.test_end - periods.test_start).days
    delay_days = (periods.test_start - periods.train_end).days
    for offset in range(test_days):
        day = pd.Timestamp(periods.test_start + dt.timedelta(days=offset))
        newly_known_day = day - pd.Timedelta(days=delay_days + 1)
        if offset > 0:
            known |= set(cards[(days == newly_known_day).to_numpy() & fraud])
        mask |= ((days == day) & ~cards.isin(known)).to_numpy()
    return mask


def card_precision_at_k(
    frame: pd.DataFrame, scores: npt.NDArray[np.float64], k: int = CARD_PRECISION_K
) -> float:
    """Mean over days of the fraud share among the k highest-scored cards of that day."""
    table = pd.DataFrame(
        {
            "day": frame[history.TX_DATETIME].dt.normalize().to_numpy(),
            "card": frame[history.CUSTOMER_ID].to_numpy(),
            "score": scores,
            "fraud": frame[history.TX_FRAUD].to_numpy(),
        }
    )
    per_card = table.groupby(["day", "card"], sort=False).max()
    precisions = [
        day_cards.nlargest(k, "score")["fraud"].sum() / k
        for _, day_cards in per_card.groupby(level="day")
    ]
    return float(np.mean(precisions)) if precisions else float("nan")


def card_precision_at_k_detected_removed(
    frame: pd.DataFrame, scores: npt.NDArray[np.float64], k: int = CARD_PRECISION_K
) -> float:
    """Card Precision@k with the handbook's rule (`card_precision_top_k`): each test day,
    cards already detected (a fraud among the top k) on an earlier test day are removed
    before ranking, so a card caught once is not counted again."""
    table = pd.DataFrame(
        {
            "day": frame[history.TX_DATETIME].dt.normalize().to_numpy(),
            "card": frame[history.CUSTOMER_ID].to_numpy(),
            "score": scores,
            "fraud": frame[history.TX_FRAUD].to_numpy(),
        }
    )
    detected: set[object] = set()
    precisions = []
    for _, day in table.groupby("day", sort=True):
        cards = day[~day["card"].isin(detected)].groupby("card", sort=False)[["score", "fraud"]]
        top = cards.max().nlargest(k, "score")
        hits = top.index[top["fraud"] == 1]
        detected.update(hits)
        precisions.append(len(hits) / k)
    return float(np.mean(precisions)) if precisions else float("nan")


def compute_metrics(frame: pd.DataFrame, scores: npt.NDArray[np.float64]) -> Metrics:
    labels = frame[history.TX_FRAUD].to_numpy()
    if labels.min() == labels.max():
        raise ValueError("the test period has only one class; it cannot be evaluated")
    return Metrics(
        auc_roc=float(roc_auc_score(labels, scores)),
        average_precision=float(average_precision_score(labels, scores)),
        card_precision_at_100=card_precision_at_k(frame, scores),
        transactions=len(labels),
        frauds=int(labels.sum()),
    )


def format_comparison(ours: list[tuple[str, Metrics]]) -> str:
    """Our rows beside the handbook's published rows, as a Markdown table."""
    lines = [
        "| model | AUC ROC | Average Precision | Card Precision@100 |",
        "|---|---:|---:|---:|",
    ]
    for name, m in ours:
        lines.append(
            f"| **{name}** | **{m.auc_roc:.3f}** | **{m.average_precision:.3f}** | "
            f"**{m.card_precision_at_100:.3f}** |"
        )
    for p in PUBLISHED_BASELINES:
        lines.append(
            f"| {p.name} | {p.auc_roc:.3f} | {p.average_precision:.3f} | "
            f"{p.card_precision_at_100:.3f} |"
        )
    return "\n".join(lines)
