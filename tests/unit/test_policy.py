"""The policy without a server: thresholds and their site overrides, hard rules, which
reasons a verdict names, the stand-in policy, reason codes from contributions, the blocklist.

One rule per test, so a red test names the rule (tests/integration/test_policy_service.py
checks the same rules through a real gateway)."""

from __future__ import annotations

import pytest

from fraudscreen.features.definitions import FEATURES
from fraudscreen.model.bundle import Thresholds
from fraudscreen.policy import (
    AMOUNT_OVER_LIMIT,
    AMOUNT_OVER_REVIEW_LIMIT,
    CARD_BLOCKED,
    MAX_MODEL_REASONS,
    STAND_IN,
    Decision,
    Policy,
    PolicyRules,
    Reason,
    load_blocked_tokens,
    top_reasons,
)
from fraudscreen.transaction import Transaction

BUNDLE = Thresholds(review=0.5, decline=0.9)
BLOCKED = "b" * 64
MODEL_REASON = Reason("CARD_VELOCITY", "CUSTOMER_ID_NB_TX_1DAY_WINDOW", 1.5)


def tx(amount_minor: int = 1_000, card_token: str = "a" * 64) -> Transaction:
    return Transaction("T1", "t-1", card_token, amount_minor, "EUR", 1_700_000_000, 2, 14)


def explain() -> list[Reason]:
    return [MODEL_REASON]


def never_explain() -> list[Reason]:
    raise AssertionError("an approval must not pay for reason codes")


# -- thresholds -----------------------------------------------------------------------------


def test_without_site_overrides_the_bundle_thresholds_apply() -> None:
    assert Policy(PolicyRules()).thresholds(BUNDLE) == BUNDLE


def test_a_site_review_threshold_replaces_only_the_review_cut() -> None:
    rules = PolicyRules(review_threshold=0.3)
    assert Policy(rules).thresholds(BUNDLE) == Thresholds(review=0.3, decline=0.9)


def test_a_site_decline_threshold_replaces_only_the_decline_cut() -> None:
    rules = PolicyRules(decline_threshold=0.95)
    assert Policy(rules).thresholds(BUNDLE) == Thresholds(review=0.5, decline=0.95)


# -- the model's decision -----------------------------------------------------------------


def test_a_score_below_the_review_cut_approves_without_asking_for_reasons() -> None:
    verdict = Policy(PolicyRules()).decide(tx(), 0.49, BUNDLE, never_explain)
    assert verdict.decision is Decision.APPROVE and verdict.reasons == ()


def test_a_score_at_the_review_cut_reviews_with_the_models_reasons() -> None:
    verdict = Policy(PolicyRules()).decide(tx(), 0.5, BUNDLE, explain)
    assert verdict.decision is Decision.REVIEW
    assert verdict.reasons == (MODEL_REASON,)


def test_a_score_at_the_decline_cut_declines() -> None:
    verdict = Policy(PolicyRules()).decide(tx(), 0.9, BUNDLE, explain)
    assert verdict.decision is Decision.DECLINE
    assert verdict.reasons == (MODEL_REASON,)


# -- hard rules -----------------------------------------------------------------------------


def test_a_blocked_card_is_declined_whatever_the_score() -> None:
    policy = Policy(PolicyRules(blocked_card_tokens=frozenset({BLOCKED})))
    verdict = policy.decide(tx(card_token=BLOCKED), 0.0, BUNDLE, never_explain)
    assert verdict.decision is Decision.DECLINE and verdict.reasons == (CARD_BLOCKED,)


def test_an_amount_above_the_decline_limit_is_declined_and_at_the_limit_is_not() -> None:
    policy = Policy(PolicyRules(decline_above_minor=50_000))
    over = policy.decide(tx(50_001), 0.0, BUNDLE, never_explain)
    at = policy.decide(tx(50_000), 0.0, BUNDLE, never_explain)
    assert over.decision is Decision.DECLINE and over.reasons == (AMOUNT_OVER_LIMIT,)
    assert at.decision is Decision.APPROVE and at.reasons == ()


def test_an_amount_above_the_review_limit_is_reviewed_and_at_the_limit_is_not() -> None:
    policy = Policy(PolicyRules(review_above_minor=50_000))
    over = policy.decide(tx(50_001), 0.0, BUNDLE, never_explain)
    at = policy.decide(tx(50_000), 0.0, BUNDLE, never_explain)
    assert over.decision is Decision.REVIEW and over.reasons == (AMOUNT_OVER_REVIEW_LIMIT,)
    assert at.decision is Decision.APPROVE and at.reasons == ()


def test_above_both_limits_only_the_decline_limit_is_named() -> None:
    policy = Policy(PolicyRules(decline_above_minor=80_000, review_above_minor=50_000))
    verdict = policy.decide(tx(90_000), 0.0, BUNDLE, never_explain)
    assert verdict.decision is Decision.DECLINE and verdict.reasons == (AMOUNT_OVER_LIMIT,)


def test_a_blocked_card_above_the_review_limit_stays_declined_naming_both() -> None:
    rules = PolicyRules(blocked_card_tokens=frozenset({BLOCKED}), review_above_minor=50_000)
    verdict = Policy(rules).decide(tx(60_000, card_token=BLOCKED), 0.0, BUNDLE, never_explain)
    assert verdict.decision is Decision.DECLINE
    assert verdict.reasons == (CARD_BLOCKED, AMOUNT_OVER_REVIEW_LIMIT)


def test_the_stronger_of_rule_and_model_decides_and_both_are_named_rules_first() -> None:
    policy = Policy(PolicyRules(review_above_minor=50_000))
    verdict = policy.decide(tx(60_000), 0.95, BUNDLE, explain)
    assert verdict.decision is Decision.DECLINE
    assert verdict.reasons == (AMOUNT_OVER_REVIEW_LIMIT, MODEL_REASON)


def test_a_model_review_does_not_weaken_a_rules_decline() -> None:
    policy = Policy(PolicyRules(blocked_card_tokens=frozenset({BLOCKED})))
    verdict = policy.decide(tx(card_token=BLOCKED), 0.6, BUNDLE, explain)
    assert verdict.decision is Decision.DECLINE
    assert verdict.reasons == (CARD_BLOCKED, MODEL_REASON)


# -- stand-in -------------------------------------------------------------------------------


def test_stand_in_approves_up_to_its_limit_without_reasons() -> None:
    verdict = Policy(PolicyRules(stand_in_review_above_minor=20_000)).stand_in(tx(20_000))
    assert verdict.decision is Decision.APPROVE and verdict.reasons == ()


def test_stand_in_reviews_above_its_limit_saying_stand_in() -> None:
    verdict = Policy(PolicyRules(stand_in_review_above_minor=20_000)).stand_in(tx(20_001))
    assert verdict.decision is Decision.REVIEW and verdict.reasons == (STAND_IN,)


def test_stand_in_keeps_the_hard_rules_and_names_stand_in_first() -> None:
    policy = Policy(PolicyRules(blocked_card_tokens=frozenset({BLOCKED})))
    verdict = policy.stand_in(tx(100, card_token=BLOCKED))
    assert verdict.decision is Decision.DECLINE
    assert verdict.reasons == (STAND_IN, CARD_BLOCKED)


# -- reason codes from contributions ------------------------------------------------------


def test_reasons_are_the_largest_positive_contributions_in_order() -> None:
    contributions = [0.0] * len(FEATURES)
    contributions[0], contributions[10], contributions[15] = 0.2, 0.9, 0.5
    reasons = top_reasons(contributions, FEATURES)
    assert [r.code for r in reasons] == ["TERMINAL_RISK", "ENTRY_MODE", "AMOUNT"]
    assert reasons[0] == Reason("TERMINAL_RISK", "TERMINAL_ID_RISK_1DAY_WINDOW", 0.9)


def test_each_reason_code_is_named_once_by_its_strongest_feature() -> None:
    contributions = [0.0] * len(FEATURES)
    contributions[3], contributions[5], contributions[7] = 0.3, 0.8, 0.1  # CARD_VELOCITY x3
    reasons = top_reasons(contributions, FEATURES)
    assert reasons == [Reason("CARD_VELOCITY", "CUSTOMER_ID_NB_TX_7DAY_WINDOW", 0.8)]


def test_features_that_lowered_the_score_are_never_reasons() -> None:
    contributions = [-1.0] * len(FEATURES)
    contributions[0] = 0.0
    assert top_reasons(contributions, FEATURES) == []


def test_at_most_three_reasons_are_given() -> None:
    contributions = [float(i + 1) for i in range(len(FEATURES))]
    reasons = top_reasons(contributions, FEATURES)
    assert len(reasons) == MAX_MODEL_REASONS == 3
    assert len({r.code for r in reasons}) == 3


# -- the blocklist file -------------------------------------------------------------------


def test_blocklist_lines_are_tokens_with_comments_and_blank_lines_allowed() -> None:
    lines = ["# stolen cards", "", f"{BLOCKED}  # reported 2018-04-02", "c" * 64]
    assert load_blocked_tokens(lines) == frozenset({BLOCKED, "c" * 64})


@pytest.mark.parametrize("bad", ["4111111111111111", "B" * 64, "b" * 63])
def test_a_blocklist_line_that_is_not_a_token_is_named_by_its_number(bad: str) -> None:
    with pytest.raises(ValueError, match="blocked cards line 2: not a card token"):
        load_blocked_tokens([BLOCKED, bad])
