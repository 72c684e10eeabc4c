"""What `fraudscreen evaluate --privacy HISTORY` simulates at the sites and the hub.

Below both the runner (privacy.evaluation) and its report (privacy.evaluation_report), which
read it; validated on construction so a bad flag fails before minutes of work.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from fraudscreen.model.train_aggregates import AggregateTrainingConfig
from fraudscreen.privacy.release import MECHANISMS, Mechanism, ReleaseParameters

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
