"""A batch screened by `ScreeningEngine.screen_batch` (one model call, one journal step)
answers and journals exactly what screening the same transactions one by one does: the
same scores, decisions, reason codes, replays and refusals, on the small real model
compiled natively."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from fraudscreen.model.bundle import Bundle
from fraudscreen.screening import (
    DuplicateTransactionError,
    ScreeningEngine,
    ScreeningUnavailableError,
    ScreenResult,
)
from fraudscreen.storage.journal import Journal, JournalSettings
from fraudscreen.transaction import EntryMode, Transaction
from tests.unit.test_screening import T0, Clock, engine_for, model_with, tx


def traffic(count: int) -> list[Transaction]:
    """Cards coming back at a few terminals, amounts from small to large: windows fill up
    and some scores reach the review and decline cuts."""
    return [
        Transaction(
            terminal_id=f"T{n % 5}",
            transaction_id=f"tx-{n}",
            card_token=chr(ord("a") + n % 23) * 64,
            amount_minor=500 + (n * 7919) % 400_000,
            currency="EUR",
            timestamp=T0 + 37 * n,
            local_weekday=n % 7,
            local_hour=(n // 3) % 24,
            mcc=(5411, 5999, 7995)[n % 3],
            entry_mode=(EntryMode.CHIP, EntryMode.MANUAL, None)[n % 3],
        )
        for n in range(count)
    ]


def started(path: Path, max_queue: int | None = None) -> Journal:
    settings = (
        JournalSettings(path) if max_queue is None else JournalSettings(path, max_queue=max_queue)
    )
    journal = Journal(settings)
    journal.start()
    return journal


def stop_after(asks: int) -> Callable[[], bool]:
    """A batch's `stop`: false for the first `asks` questions, then true."""
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > asks

    return stop


def one_by_one(engine: ScreeningEngine, items: Sequence[Transaction]) -> list[object]:
    answers: list[object] = []
    for item in items:
        try:
            answers.append(engine.screen(item))
        except Exception as exc:
            answers.append(exc)
    return answers


def same(a: Sequence[object], b: Sequence[object]) -> None:
    assert len(a) == len(b)
    for one, other in zip(a, b, strict=True):
        if isinstance(one, Exception):
            assert type(one) is type(other) and str(one) == str(other)
        else:
            assert isinstance(one, ScreenResult) and one == other  # scores bit for bit


def test_a_batch_answers_and_journals_as_one_by_one(small_bundle: Bundle, tmp_path: Path) -> None:
    probe_journal = started(tmp_path / "probe.db")
    probe = engine_for(probe_journal, model_with(small_bundle, 1.0, 1.0))
    probed = one_by_one(probe, traffic(300))
    probe_journal.close()
    scores = sorted(r.score for r in probed if isinstance(r, ScreenResult))
    review, decline = scores[200], scores[280]  # a third reviewed or declined: reason codes
    items = traffic(300)
    # item 120 again (a retry), then its id with other content: in the same batch as it
    items[150:150] = [items[120], items[120]._replace(amount_minor=1)]

    journals = [started(tmp_path / "single.db"), started(tmp_path / "batch.db")]
    single, batched = (engine_for(j, model_with(small_bundle, review, decline)) for j in journals)
    try:
        expected = one_by_one(single, items)
        answers: list[object] = []
        for start, end in ((0, 1), (1, 8), (8, 108), (108, len(items))):
            answers += batched.screen_batch(items[start:end])
        same(answers, expected)
        decided = [a for a in answers if isinstance(a, ScreenResult)]
        assert {a.decision.name for a in decided} == {"APPROVE", "REVIEW", "DECLINE"}
        assert sum(a.replayed for a in decided) == 1
        assert sum(isinstance(a, DuplicateTransactionError) for a in answers) == 1
        for journal in journals:
            journal.flush()
        stored = [  # features as text: a missing feature is NaN, and NaN != NaN
            [(r._replace(features=()), list(map(repr, r.features))) for r in j.iter_transactions(0)]
            for j in journals
        ]
        assert len(stored[0]) == 300 and stored[0] == stored[1]
    finally:
        for journal in journals:
            journal.close()


def test_an_item_that_failed_before_the_engine_keeps_its_place(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    journal = started(tmp_path / "j.db")
    try:
        engine = engine_for(journal, model_with(small_bundle, 1.0, 1.0))
        failed = ValueError("invalid request")
        answers = engine.screen_batch([tx(1), failed, tx(2)])
        assert answers[1] is failed
        assert [a.transaction_id for a in answers if isinstance(a, ScreenResult)] == [
            "tx-1",
            "tx-2",
        ]
    finally:
        journal.close()


def test_a_stopped_batch_finishes_and_journals_the_items_before_the_stop(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    journal = started(tmp_path / "j.db")
    try:
        engine = engine_for(journal, model_with(small_bundle, 1.0, 1.0))
        stop = stop_after(3)
        answers = engine.screen_batch(traffic(10), stop)
        assert [a.transaction_id for a in answers if isinstance(a, ScreenResult)] == [
            "tx-0",
            "tx-1",
            "tx-2",
        ]
        journal.flush()
        assert journal.committed == 3
        assert not math.isnan(answers[0].score)  # type: ignore[union-attr]
        assert not engine.screen(traffic(10)[3]).replayed  # never screened: screened now
    finally:
        journal.close()


def test_a_full_backlog_refuses_the_items_beyond_it_before_deciding(tmp_path: Path) -> None:
    journal = Journal(JournalSettings(tmp_path / "j.db", max_queue=2))  # writer not started
    try:
        engine = engine_for(journal, None, clock=Clock())
        answers = engine.screen_batch([tx(1), tx(2), tx(3)])
        assert [type(a) for a in answers] == [ScreenResult, ScreenResult, ScreeningUnavailableError]
        assert "journal backlog is full" in str(answers[2])
        replays = engine.screen_batch([tx(1), tx(3)])
        assert isinstance(replays[0], ScreenResult) and replays[0].replayed
        assert isinstance(replays[1], ScreeningUnavailableError)  # never decided: refused again
    finally:
        journal.close()


@pytest.mark.parametrize("size", [0, 1])
def test_tiny_batches(small_bundle: Bundle, tmp_path: Path, size: int) -> None:
    journal = started(tmp_path / "j.db")
    try:
        engine = engine_for(journal, model_with(small_bundle, 1.0, 1.0))
        assert len(engine.screen_batch(traffic(size))) == size
    finally:
        journal.close()


def test_the_batch_claim_answers_as_claims_one_by_one(small_bundle: Bundle, tmp_path: Path) -> None:
    """The whole batch's idempotency keys are claimed under one lock; the answers are what
    claiming each item as it comes gives: a duplicate inside a batch (twice, and with other
    content), a replay of a whole earlier batch, and an earlier batch's ids mixed in."""
    first = traffic(40)
    twice = first[5]
    other = first[7]._replace(amount_minor=first[7].amount_minor + 1)  # its id, new content
    second = [*traffic(60)[40:], twice, twice, other, first[0], first[0]._replace(mcc=1)]
    dup_in = [
        *traffic(70)[60:63],
        traffic(70)[61],
        traffic(70)[63],
        traffic(70)[61],
        traffic(70)[63]._replace(entry_mode=None),
        traffic(70)[63],
    ]
    batches = [first, second, first, dup_in, dup_in]
    journals = [started(tmp_path / "single.db"), started(tmp_path / "batch.db")]
    single, batched = (engine_for(j, model_with(small_bundle, 0.05, 0.5)) for j in journals)
    try:
        for batch in batches:
            expected = one_by_one(single, batch)
            answers = batched.screen_batch(batch)
            same(answers, expected)
        replay = batched.screen_batch(first)
        assert all(isinstance(a, ScreenResult) and a.replayed for a in replay)
        for journal in journals:
            journal.flush()
        stored = [
            [(r._replace(features=()), list(map(repr, r.features))) for r in j.iter_transactions(0)]
            for j in journals
        ]
        assert len(stored[0]) == 64 and stored[0] == stored[1]
    finally:
        for journal in journals:
            journal.close()


def test_a_claim_released_inside_the_batch_is_claimed_again_by_its_retry(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    """An item whose features fail is forgotten; the same transaction later in the batch is
    then screened afresh, as one by one, not refused as a failed first attempt."""
    items = traffic(6)
    items[4:4] = [items[2]]
    journals = [started(tmp_path / "single.db"), started(tmp_path / "batch.db")]
    single, batched = (engine_for(j, model_with(small_bundle, 1.0, 1.0)) for j in journals)
    for engine in (single, batched):
        add = engine.store.add
        failed: list[str] = []

        def add_failing_once(
            t: Transaction, add: object = add, failed: list[str] = failed
        ) -> list[float]:
            if t.transaction_id == "tx-2" and not failed:
                failed.append(t.transaction_id)
                raise RuntimeError("features failed")
            return add(t)  # type: ignore[operator,no-any-return]

        engine.store.add = add_failing_once  # type: ignore[method-assign,assignment]
    try:
        expected = one_by_one(single, items)
        answers = batched.screen_batch(items)
        same(answers, expected)
        assert isinstance(answers[2], RuntimeError)
        assert isinstance(answers[4], ScreenResult) and not answers[4].replayed
    finally:
        for journal in journals:
            journal.close()


def test_a_stopped_batch_releases_every_claim_it_did_not_reach(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    journal = started(tmp_path / "j.db")
    try:
        engine = engine_for(journal, model_with(small_bundle, 1.0, 1.0))
        stop = stop_after(2)
        items = traffic(8)
        assert len(engine.screen_batch(items, stop)) == 2
        again = engine.screen_batch(items)
        assert [a.replayed for a in again if isinstance(a, ScreenResult)] == [True] * 2 + [
            False
        ] * 6
    finally:
        journal.close()
