"""A screen result's answer, as `Screen` and `ScreenBatch` fill it in place, is the same
message, byte for byte, as one built with every field given (proto3: an unset bool and a
False one are the same bytes)."""

from __future__ import annotations

import itertools

import pytest

from fraudscreen.gateway.servicer import _DECISIONS, _fill_response, to_response
from fraudscreen.policy import Decision, Reason
from fraudscreen.screening import ScreenResult
from fraudscreen.v1 import screening_pb2 as pb

REASONS = (Reason("HIGH_AMOUNT", "amount", 0.75), Reason("AMOUNT_OVER_LIMIT"))


def full(result: ScreenResult) -> pb.ScreenResponse:
    return pb.ScreenResponse(
        transaction_id=result.transaction_id,
        terminal_id=result.terminal_id,
        decision=_DECISIONS[result.decision],
        score=result.score,
        reasons=[
            pb.ReasonCode(code=r.code, feature=r.feature, contribution=r.contribution)
            for r in result.reasons
        ],
        model_version=result.model_version,
        stand_in=result.stand_in,
        replayed=result.replayed,
    )


@pytest.mark.parametrize(
    ("decision", "reasons", "stand_in", "replayed"),
    list(itertools.product(Decision, ((), REASONS), (False, True), (False, True))),
)
def test_the_answer_is_every_field_of_the_result(
    decision: Decision, reasons: tuple[Reason, ...], stand_in: bool, replayed: bool
) -> None:
    result = ScreenResult("tx-1", "T1", decision, 0.125, reasons, "m-1", stand_in, replayed)
    expected = full(result)
    assert to_response(result) == expected
    assert to_response(result).SerializeToString() == expected.SerializeToString()
    batch = pb.ScreenBatchResponse()
    item = batch.results.add()
    _fill_response(item.response, result)
    assert item.response.SerializeToString() == expected.SerializeToString()
    assert item.response.stand_in is stand_in and item.response.replayed is replayed


def test_a_replayed_answer_after_a_fresh_one_in_the_same_batch_keeps_its_own_flags() -> None:
    fresh = ScreenResult("tx-1", "T1", Decision.APPROVE, 0.01, (), "m-1", False)
    batch = pb.ScreenBatchResponse()
    for result in (fresh._replace(replayed=True), fresh, fresh._replace(stand_in=True)):
        _fill_response(batch.results.add().response, result)
    assert [(r.response.replayed, r.response.stand_in) for r in batch.results] == [
        (True, False),
        (False, False),
        (False, True),
    ]
