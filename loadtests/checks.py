"""What a correct answer looks like, so a wrong answer counts as a failure, not a success.

Each check returns ``None`` for a correct response or one sentence saying what is wrong.
``ResponseChecks`` also remembers deliberate retries: their answer must be the stored
first answer with ``replayed=True``.
"""

from __future__ import annotations

from google.protobuf.message import Message

from fraudscreen.v1 import screening_pb2 as pb

SCREEN = "Screen"
SCREEN_STREAM = "ScreenStream"
REPORT_OUTCOME = "ReportOutcome"
SCREEN_RETRY = "Screen retry"
_DECIDED = frozenset({pb.DECISION_APPROVE, pb.DECISION_REVIEW, pb.DECISION_DECLINE})
_FLAGGED = frozenset({pb.DECISION_REVIEW, pb.DECISION_DECLINE})


def screen_problem(request: pb.ScreenRequest, response: pb.ScreenResponse) -> str | None:
    """The answer to one screened transaction, checked field by field."""
    if response.decision not in _DECIDED:
        return f"decision {pb.Decision.Name(response.decision)} is not APPROVE/REVIEW/DECLINE"
    if response.transaction_id != request.transaction_id:
        return f"transaction_id {response.transaction_id!r} != sent {request.transaction_id!r}"
    if response.terminal_id != request.terminal_id:
        return f"terminal_id {response.terminal_id!r} != sent {request.terminal_id!r}"
    if not 0.0 <= response.score <= 1.0:
        return f"score {response.score!r} is outside [0, 1]"
    if not response.model_version:
        return "model_version is empty"
    if response.decision in _FLAGGED and not response.reasons:
        return f"{pb.Decision.Name(response.decision)} without reasons"
    return None


def replay_problem(first: pb.ScreenResponse, again: pb.ScreenResponse) -> str | None:
    """A retried Screen must repeat the first answer and say replayed=true."""
    if not again.replayed:
        return "retry of the same transaction came back with replayed=false"
    expected = pb.ScreenResponse()
    expected.CopyFrom(first)
    expected.replayed = True
    if again != expected:
        return "retry answered differently from the first attempt"
    return None


def stream_item_problem(request: pb.ScreenRequest, item: pb.ScreenStreamResponse) -> str | None:
    """One item of a ScreenStream reply: an error item is a failure, like a unary error."""
    if item.HasField("error"):
        return f"error item code {item.error.code}: {item.error.message}"
    if not item.HasField("response"):
        return "item has neither response nor error"
    if item.transaction_id != request.transaction_id:
        return f"item transaction_id {item.transaction_id!r} != sent {request.transaction_id!r}"
    return screen_problem(request, item.response)


def outcome_problem(response: pb.ReportOutcomeResponse) -> str | None:
    """Outcomes are only reported for transactions this user screened, so both must be true."""
    if not response.recorded:
        return "outcome not recorded"
    if not response.known_transaction:
        return "gateway does not know a transaction this load test screened"
    return None


class ResponseChecks:
    """Per-user checks keyed by method name; also names deliberate retries apart."""

    def __init__(self) -> None:
        self._replays: dict[tuple[str, str], pb.ScreenResponse] = {}

    def expect_replay(self, request: pb.ScreenRequest, first: pb.ScreenResponse) -> None:
        """The next Screen of `request` is a deliberate retry of an answered transaction."""
        self._replays[(request.terminal_id, request.transaction_id)] = first

    def label(self, method: str, request: Message) -> str:
        """The name this call is reported under (retries apart: they take a faster path)."""
        if (
            method == SCREEN
            and isinstance(request, pb.ScreenRequest)
            and (request.terminal_id, request.transaction_id) in self._replays
        ):
            return SCREEN_RETRY
        return method

    def unary_problem(self, method: str, request: Message, response: Message) -> str | None:
        if isinstance(request, pb.ScreenRequest) and isinstance(response, pb.ScreenResponse):
            first = self._replays.pop((request.terminal_id, request.transaction_id), None)
            if first is not None:
                return replay_problem(first, response)
            return screen_problem(request, response)
        if isinstance(response, pb.ReportOutcomeResponse):
            return outcome_problem(response)
        return f"{method}: unexpected response type {type(response).__name__}"

    def forget(self, request: Message) -> None:
        """Drop a retry expectation whose call failed before an answer arrived."""
        if isinstance(request, pb.ScreenRequest):
            self._replays.pop((request.terminal_id, request.transaction_id), None)

    @staticmethod
    def stream_problem(
        requests: list[pb.ScreenRequest], items: list[pb.ScreenStreamResponse]
    ) -> tuple[int, str | None]:
        """(number of correct items, first problem) for one ScreenStream batch."""
        problem = None
        if len(items) != len(requests):
            problem = f"{len(items)} responses for {len(requests)} requests"
        good = 0
        for index, (request, item) in enumerate(zip(requests, items, strict=False)):
            item_problem = stream_item_problem(request, item)
            if item_problem is None:
                good += 1
            elif problem is None:
                problem = f"item {index}: {item_problem}"
        return good, problem
