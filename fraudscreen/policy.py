"""From a score to APPROVE / REVIEW / DECLINE: thresholds, hard rules, reason codes, and
the stand-in policy that answers when no model can be loaded.

Stand-in policy (documented in the README): hard rules still apply (blocked card, amount
limits); any other transaction above `stand_in_review_above_minor` is sent to REVIEW;
the rest is approved. Every stand-in answer says so (`stand_in`), and non-approvals carry
the STAND_IN reason.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fraudscreen.features.definitions import FeatureSpec
from fraudscreen.model.bundle import Thresholds
from fraudscreen.transaction import Transaction

MAX_MODEL_REASONS = 3


class Decision(enum.IntEnum):
    """Ordered by severity; values match the API enum."""

    APPROVE = 1
    REVIEW = 2
    DECLINE = 3


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    feature: str = ""
    contribution: float = 0.0


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class PolicyRules:
    blocked_card_tokens: frozenset[str] = frozenset()
    decline_above_minor: int | None = None
    review_above_minor: int | None = None
    stand_in_review_above_minor: int = 20_000
    review_threshold: float | None = None  # site overrides of the bundle's thresholds
    decline_threshold: float | None = None


CARD_BLOCKED = Reason("CARD_BLOCKED")
AMOUNT_OVER_LIMIT = Reason("AMOUNT_OVER_LIMIT")
AMOUNT_OVER_REVIEW_LIMIT = Reason("AMOUNT_OVER_REVIEW_LIMIT")
STAND_IN = Reason("STAND_IN")


_APPROVED = Verdict(Decision.APPROVE, ())  # immutable: shared by every plain approval


class Policy:
    def __init__(self, rules: PolicyRules) -> None:
        self.rules = rules
        # no hard rule configured: a model approval is the whole verdict (the common case,
        # decided without building a reason list per transaction)
        self._no_rules = (
            not rules.blocked_card_tokens
            and rules.decline_above_minor is None
            and rules.review_above_minor is None
        )

    def thresholds(self, bundle: Thresholds) -> Thresholds:
        """The bundle's thresholds with this site's overrides applied."""
        return Thresholds(
            review=bundle.review
            if self.rules.review_threshold is None
            else self.rules.review_threshold,
            decline=bundle.decline
            if self.rules.decline_threshold is None
            else self.rules.decline_threshold,
        )

    def decide(
        self,
        tx: Transaction,
        score: float,
        thresholds: Thresholds,
        explain: Callable[[], Sequence[Reason]],
    ) -> Verdict:
        """Model decision combined with hard rules; `explain` runs only for non-approvals."""
        if score >= thresholds.decline:
            model_decision = Decision.DECLINE
        elif score >= thresholds.review:
            model_decision = Decision.REVIEW
        elif self._no_rules:
            return _APPROVED
        else:
            model_decision = Decision.APPROVE
        decision, reasons = self._rules(tx)
        if model_decision is not Decision.APPROVE:
            reasons.extend(explain())
        return Verdict(max(decision, model_decision), tuple(reasons))

    def stand_in(self, tx: Transaction) -> Verdict:
        decision, reasons = self._rules(tx)
        if tx.amount_minor > self.rules.stand_in_review_above_minor:
            decision = max(decision, Decision.REVIEW)
        if decision is not Decision.APPROVE:
            reasons.insert(0, STAND_IN)
        return Verdict(decision, tuple(reasons))

    def _rules(self, tx: Transaction) -> tuple[Decision, list[Reason]]:
        rules = self.rules
        decision = Decision.APPROVE
        reasons: list[Reason] = []
        if tx.card_token in rules.blocked_card_tokens:
            decision = Decision.DECLINE
            reasons.append(CARD_BLOCKED)
        if rules.decline_above_minor is not None and tx.amount_minor > rules.decline_above_minor:
            decision = Decision.DECLINE
            reasons.append(AMOUNT_OVER_LIMIT)
        elif rules.review_above_minor is not None and tx.amount_minor > rules.review_above_minor:
            decision = max(decision, Decision.REVIEW)
            reasons.append(AMOUNT_OVER_REVIEW_LIMIT)
        return decision, reasons


def top_reasons(
    contributions: Sequence[float], features: Sequence[FeatureSpec], limit: int = MAX_MODEL_REASONS
) -> list[Reason]:
    """The features that pushed the score up most, one per reason code."""
    ranked = sorted(zip(contributions, features, strict=True), key=lambda p: -p[0])
    reasons: list[Reason] = []
    seen: set[str] = set()
    for contribution, spec in ranked:
        if contribution <= 0 or len(reasons) == limit:
            break
        if spec.reason_code not in seen:
            seen.add(spec.reason_code)
            reasons.append(Reason(spec.reason_code, spec.name, float(contribution)))
    return reasons


def load_blocked_tokens(lines: Sequence[str]) -> frozenset[str]:
    """Blocklist file content: one card token per line, '#' comments allowed."""
    tokens = set()
    for number, line in enumerate(lines, start=1):
        token = line.split("#", 1)[0].strip()
        if not token:
            continue
        if len(token) != 64 or any(c not in "0123456789abcdef" for c in token):
            raise ValueError(
                f"blocked cards line {number}: not a card token (64 lower-case hex characters); "
                "use `fraudscreen tokenize` to turn a card number into its token"
            )
        tokens.add(token)
    return frozenset(tokens)
