"""The feature vector: names, order, windows and meaning, defined once.

Training (`features.batch`) and serving (`features.online`) both build exactly this
vector; a parity test replays a stream through the online path and requires equality with
the batch path. Changing anything here changes the model's input: bump
`FEATURE_SCHEMA_VERSION` and retrain.

Window semantics, shared by both paths (times in integer epoch seconds):
- card windows of W days cover the card's transactions with time in (t - W, t],
  the current one included (the handbook's rolling windows);
- terminal windows of W days are delayed by `TERMINAL_DELAY_DAYS` = D, because fraud labels
  take that long to arrive: they cover (t - D - W, t - D]. A transaction counts as fraud
  there if its fraud label is known (in serving: reported through ReportOutcome).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

FEATURE_SCHEMA_VERSION = 1

SECONDS_PER_DAY = 86_400
TERMINAL_DELAY_DAYS = 7
NIGHT_LAST_HOUR = 6  # handbook: a transaction is at night when its local hour is <= 6
WEEKEND_FIRST_WEEKDAY = 5  # Saturday, with Monday = 0


class FeatureKind(enum.Enum):
    """How a feature is computed; batch and online each implement every kind."""

    AMOUNT = "amount"
    WEEKEND = "weekend"
    NIGHT = "night"
    CARD_COUNT = "card_count"
    CARD_MEAN_AMOUNT = "card_mean_amount"
    CARD_AMOUNT_RATIO = "card_amount_ratio"
    TERMINAL_COUNT = "terminal_count"
    TERMINAL_RISK = "terminal_risk"
    ENTRY_MODE = "entry_mode"


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One model input. `reason_code` is what a terminal operator sees when it drives a
    REVIEW or DECLINE."""

    name: str
    kind: FeatureKind
    reason_code: str
    description: str
    window_days: int = 0


def _card_windows() -> list[FeatureSpec]:
    specs = []
    for days in (1, 7, 30):
        specs.append(
            FeatureSpec(
                f"CUSTOMER_ID_NB_TX_{days}DAY_WINDOW",
                FeatureKind.CARD_COUNT,
                "CARD_VELOCITY",
                f"transactions on this card in the last {days} day(s), this one included",
                days,
            )
        )
        specs.append(
            FeatureSpec(
                f"CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW",
                FeatureKind.CARD_MEAN_AMOUNT,
                "CARD_SPEND_PATTERN",
                f"mean amount on this card in the last {days} day(s), this one included",
                days,
            )
        )
    return specs


def _terminal_windows() -> list[FeatureSpec]:
    specs = []
    for days in (1, 7, 30):
        specs.append(
            FeatureSpec(
                f"TERMINAL_ID_NB_TX_{days}DAY_WINDOW",
                FeatureKind.TERMINAL_COUNT,
                "TERMINAL_ACTIVITY",
                f"transactions at this terminal in a {days}-day window ending "
                f"{TERMINAL_DELAY_DAYS} days ago",
                days,
            )
        )
        specs.append(
            FeatureSpec(
                f"TERMINAL_ID_RISK_{days}DAY_WINDOW",
                FeatureKind.TERMINAL_RISK,
                "TERMINAL_RISK",
                f"share of known fraud at this terminal in a {days}-day window ending "
                f"{TERMINAL_DELAY_DAYS} days ago",
                days,
            )
        )
    return specs


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("TX_AMOUNT", FeatureKind.AMOUNT, "AMOUNT", "amount in major currency units"),
    FeatureSpec(
        "TX_DURING_WEEKEND", FeatureKind.WEEKEND, "TIME_OF_WEEK", "1 on a local Saturday/Sunday"
    ),
    FeatureSpec(
        "TX_DURING_NIGHT", FeatureKind.NIGHT, "TIME_OF_DAY", "1 when the local hour is 0..6"
    ),
    *_card_windows(),
    *_terminal_windows(),
    FeatureSpec(
        "ENTRY_MODE",
        FeatureKind.ENTRY_MODE,
        "ENTRY_MODE",
        "how the card was read (EntryMode code); missing when not sent",
    ),
    *(
        FeatureSpec(
            f"CUSTOMER_ID_AMOUNT_RATIO_{days}DAY_WINDOW",
            FeatureKind.CARD_AMOUNT_RATIO,
            "AMOUNT_UNUSUAL_FOR_CARD",
            f"this amount over the card's mean amount in the last {days} days",
            days,
        )
        for days in (7, 30)
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FEATURES)

# The first 15 are the Fraud Detection Handbook's features. The POS extensions after them
# stay because they measurably help on simulated data (README, "Features"); MCC and time
# since the previous transaction were tried and did not, so they are validated and
# journaled only.

CARD_HORIZON_SECONDS = (
    max((s.window_days for s in FEATURES if s.kind.name.startswith("CARD_")), default=0)
    * SECONDS_PER_DAY
)
TERMINAL_HORIZON_SECONDS = (
    TERMINAL_DELAY_DAYS
    + max((s.window_days for s in FEATURES if s.kind.name.startswith("TERMINAL_")), default=0)
) * SECONDS_PER_DAY
STATE_HORIZON_SECONDS = max(CARD_HORIZON_SECONDS, TERMINAL_HORIZON_SECONDS)
"""How far back serving state must reach: older transactions cannot affect any feature."""


def mean_amount(sum_minor: int, count: int, minor_per_major: int) -> float:
    """Mean in major units, computed the same way (one IEEE division) on both paths."""
    return sum_minor / (count * minor_per_major)


def amount_ratio(amount_minor: int, sum_minor: int, count: int) -> float:
    """Amount over the window mean (one IEEE division); 1 when every amount is zero."""
    return amount_minor * count / sum_minor if sum_minor else 1.0


def risk(fraud_count: int, count: int) -> float:
    """Known-fraud share in a window; 0 for an empty window, as in the handbook."""
    return fraud_count / count if count else 0.0
