"""The screening engine without a server: the small real model (compiled natively in the
session's compile cache) decides from its score, a real SQLite journal behind the engine's
`ScreeningJournal` Protocol keeps retries idempotent across a restart, and a shadow trial
scores beside the live model without deciding anything."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from fraudscreen.features.definitions import FEATURES
from fraudscreen.features.online import OnlineFeatureStore
from fraudscreen.model.bundle import Bundle
from fraudscreen.model.predictor import LightGBMPredictor
from fraudscreen.policy import Decision, Policy, PolicyRules
from fraudscreen.records import ScreeningJournal
from fraudscreen.screening import (
    STAND_IN_VERSION,
    ActiveModel,
    DuplicateTransactionError,
    ModelSlot,
    ScreeningEngine,
    ScreeningUnavailableError,
)
from fraudscreen.storage.journal import Journal, JournalSettings
from fraudscreen.transaction import EntryMode, Outcome, Transaction

T0 = 1_526_000_000  # 2018-05-11, inside the small history's range
REASON_CODES = {spec.reason_code for spec in FEATURES}


def tx(n: int = 1, *, amount_minor: int = 4_200, card: str = "a") -> Transaction:
    return Transaction(
        terminal_id="T1",
        transaction_id=f"tx-{n}",
        card_token=card * 64,
        amount_minor=amount_minor,
        currency="EUR",
        timestamp=T0 + n,
        local_weekday=4,
        local_hour=13,
        mcc=5411,
        entry_mode=EntryMode.CHIP,
    )


class Clock:
    """Wall-clock seconds the engine reads (its idempotency window), moved by the test."""

    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
def journal(journal_path: Path) -> Iterator[Journal]:
    journal = Journal(JournalSettings(journal_path))
    journal.start()
    yield journal
    journal.close()


def engine_for(
    journal: ScreeningJournal,
    model: ActiveModel | None,
    rules: PolicyRules | None = None,
    clock: Clock | None = None,
) -> ScreeningEngine:
    return ScreeningEngine(
        store=OnlineFeatureStore(),
        slot=ModelSlot(model),
        policy=Policy(rules or PolicyRules()),
        journal=journal,
        idempotency_window_seconds=3_600,
        clock=clock or Clock(),
    )


def model_with(bundle: Bundle, review: float, decline: float) -> ActiveModel:
    """The small model, natively compiled, with the site's thresholds set to review/decline."""
    rules = PolicyRules(review_threshold=review, decline_threshold=decline)
    return ActiveModel.from_bundle(bundle, Policy(rules), require_native=True)


# -- decision from the score ----------------------------------------------------------------


def test_the_score_is_the_models_on_the_online_features(
    small_bundle: Bundle, journal: Journal
) -> None:
    result = engine_for(journal, model_with(small_bundle, 1.0, 1.0)).screen(tx())
    row = OnlineFeatureStore().add(tx())
    expected = LightGBMPredictor(small_bundle.model_text, len(FEATURES)).predict_row(row)
    assert math.isclose(result.score, expected, rel_tol=1e-6, abs_tol=1e-9)
    assert result.model_version == small_bundle.model_version and not result.stand_in


def test_a_score_below_the_review_cut_approves_without_reasons(
    small_bundle: Bundle, journal: Journal
) -> None:
    result = engine_for(journal, model_with(small_bundle, 1.0, 1.0)).screen(tx())
    assert result.decision is Decision.APPROVE and result.reasons == ()


def test_a_score_at_the_review_cut_reviews_with_the_models_reason_codes(
    small_bundle: Bundle, journal: Journal
) -> None:
    result = engine_for(journal, model_with(small_bundle, 0.0, 1.0)).screen(tx())
    assert result.decision is Decision.REVIEW
    assert 1 <= len(result.reasons) <= 3
    assert {r.code for r in result.reasons} <= REASON_CODES
    assert all(r.contribution > 0 for r in result.reasons)


def test_a_score_at_the_decline_cut_declines(small_bundle: Bundle, journal: Journal) -> None:
    result = engine_for(journal, model_with(small_bundle, 0.0, 0.0)).screen(tx())
    assert result.decision is Decision.DECLINE and result.reasons


def test_a_hard_rule_decides_over_an_approving_model(
    small_bundle: Bundle, journal: Journal
) -> None:
    rules = PolicyRules(decline_above_minor=1_000)
    result = engine_for(journal, model_with(small_bundle, 1.0, 1.0), rules).screen(tx())
    assert result.decision is Decision.DECLINE
    assert [r.code for r in result.reasons] == ["AMOUNT_OVER_LIMIT"]


def test_without_a_model_the_stand_in_policy_answers_and_says_so(journal: Journal) -> None:
    rules = PolicyRules(stand_in_review_above_minor=1_000)
    result = engine_for(journal, None, rules).screen(tx(amount_minor=1_001))
    assert result.stand_in and result.model_version == STAND_IN_VERSION and result.score == 0.0
    assert result.decision is Decision.REVIEW
    assert [r.code for r in result.reasons] == ["STAND_IN"]


# -- idempotency, with the real journal ---------------------------------------------------


def test_a_retry_gets_the_first_answer_and_is_journaled_once(journal: Journal) -> None:
    engine = engine_for(journal, None)
    first = engine.screen(tx())
    again = engine.screen(tx())
    assert again == first._replace(replayed=True) and not first.replayed
    journal.flush()
    assert journal.committed == 1
    stored = journal.find_transaction("T1", "tx-1")
    assert stored is not None and stored.decision == first.decision.name


def test_the_same_ids_with_other_content_are_refused(journal: Journal) -> None:
    engine = engine_for(journal, None)
    engine.screen(tx())
    with pytest.raises(DuplicateTransactionError, match="already used at terminal 'T1'"):
        engine.screen(tx(amount_minor=9_999))


def test_after_a_restart_a_retry_is_answered_from_the_journal(
    small_bundle: Bundle, journal_path: Path
) -> None:
    model = model_with(small_bundle, 0.0, 1.0)
    first_journal = Journal(JournalSettings(journal_path))
    first_journal.start()
    first = engine_for(first_journal, model).screen(tx())
    first_journal.close()

    journal = Journal(JournalSettings(journal_path))
    journal.start()
    try:
        engine = engine_for(journal, model)
        summary = engine.restore()
        again = engine.screen(tx())
        with pytest.raises(DuplicateTransactionError):
            engine.screen(tx(amount_minor=1))
    finally:
        journal.close()
    assert summary.transactions == 1 and summary.idempotency_entries == 1
    assert again.replayed
    assert (again.decision, again.reasons, again.model_version) == (
        first.decision,
        first.reasons,
        first.model_version,
    )
    assert math.isclose(again.score, first.score, rel_tol=1e-9)


def test_retries_are_forgotten_after_the_idempotency_window(journal: Journal) -> None:
    clock = Clock()
    engine = engine_for(journal, None, clock=clock)
    engine.screen(tx())
    clock.now += 3_599
    engine.maintain()
    assert engine.screen(tx()).replayed
    clock.now += 2
    engine.maintain()
    assert not engine.screen(tx()).replayed  # screened anew, not a duplicate any more


def test_a_full_journal_backlog_refuses_before_deciding(tmp_path: Path) -> None:
    journal = Journal(JournalSettings(tmp_path / "journal.db", max_queue=1))  # writer not started
    try:
        engine = engine_for(journal, None)
        engine.screen(tx(1))
        with pytest.raises(ScreeningUnavailableError, match="journal backlog is full"):
            engine.screen(tx(2))
        assert engine.screen(tx(1)).replayed  # a retry of a decided one still gets its answer
    finally:
        journal.close()


def test_an_outcome_is_durable_and_says_whether_the_transaction_is_known(
    journal: Journal,
) -> None:
    engine = engine_for(journal, None)
    engine.screen(tx())
    assert engine.report_outcome("T1", "tx-1", Outcome.CHARGEBACK, T0 + 100) is True
    assert engine.report_outcome("T1", "tx-unknown", Outcome.CONFIRMED_FRAUD, T0 + 100) is False
    outcomes = journal.latest_outcomes()
    assert outcomes[("T1", "tx-1")].is_fraud and outcomes[("T1", "tx-1")].outcome == "CHARGEBACK"
    assert ("T1", "tx-unknown") in outcomes  # kept even when the transaction is not


def test_a_fraud_outcome_raises_the_terminals_risk_for_later_transactions(
    tmp_path: Path,
) -> None:
    """Terminal risk windows end 7 days back (labels arrive late): a transaction 8 days
    later at the same terminal sees the reported fraud, and one with no report does not."""
    later = tx(8 * 86_400, card="c")
    risk = [i for i, spec in enumerate(FEATURES) if spec.name.startswith("TERMINAL_ID_RISK")]
    seen: list[list[float]] = []
    for report in (True, False):
        journal = Journal(JournalSettings(tmp_path / f"journal-{report}.db"))
        journal.start()
        try:
            engine = engine_for(journal, None)
            engine.screen(tx())
            if report:
                engine.report_outcome("T1", "tx-1", Outcome.CONFIRMED_FRAUD, T0 + 100)
            engine.screen(later)
            journal.flush()
            stored = journal.find_transaction("T1", later.transaction_id)
        finally:
            journal.close()
        assert stored is not None
        seen.append([stored.features[i] for i in risk])
    labelled, unlabelled = seen
    assert max(labelled) > 0 and max(unlabelled) == 0


# -- shadow trials --------------------------------------------------------------------------


def test_a_shadow_trial_scores_the_next_transactions_and_decides_nothing(
    small_bundle: Bundle, journal: Journal
) -> None:
    live = model_with(small_bundle, 1.0, 1.0)  # approves everything
    engine = engine_for(journal, live)
    trial = engine.start_shadow(model_with(small_bundle, 0.0, 1.0), 2)  # would review all
    answers = [engine.screen(tx(n)) for n in (1, 2, 3)]
    assert [a.decision for a in answers] == [Decision.APPROVE] * 3
    assert trial.done.is_set()
    assert (trial.seen, trial.same_decision, trial.agreement) == (2, 0, 0.0)
    assert trial.max_score_diff == 0.0  # the same model: only the thresholds differ


def test_a_shadow_trial_of_no_transactions_is_done_at_once(
    small_bundle: Bundle, journal: Journal
) -> None:
    engine = engine_for(journal, model_with(small_bundle, 1.0, 1.0))
    trial = engine.start_shadow(model_with(small_bundle, 1.0, 1.0), 0)
    engine.screen(tx())
    assert trial.done.is_set() and trial.seen == 0 and trial.agreement == 1.0


def test_a_failing_candidate_ends_its_trial_and_live_answers_go_on(
    small_bundle: Bundle, journal: Journal
) -> None:
    live = model_with(small_bundle, 1.0, 1.0)
    broken = ActiveModel(
        version="broken",
        predictor=live.predictor,
        explainer=live.explainer,
        thresholds=live.thresholds,
        transform=lambda row: [],  # a row of the wrong width: the predictor refuses it
    )
    engine = engine_for(journal, live)
    trial = engine.start_shadow(broken, 5)
    answer = engine.screen(tx())
    assert answer.decision is Decision.APPROVE and answer.model_version == live.version
    assert trial.done.is_set() and trial.seen == 0
