"""ScreenBatch answers, counts and logs each item exactly as ScreenStream does item by item.

ScreenBatch builds its answers in place and counts its metrics once per batch (for
speed); ScreenStream builds and counts each item on its own. Two gateways with the same
model and policy get the same traffic, one as a stream, the other as batches: every answer
(decision, score, reason codes, replays, in-band errors), every request count, the
latency histogram's observation count, and every request log line must agree.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import Metric
from structlog.testing import capture_logs

from fraudscreen.gateway.server import Gateway
from fraudscreen.v1 import screening_pb2 as pb
from fraudscreen.v1 import screening_pb2_grpc as pb_grpc
from tests.support.service_support import (
    PANS,
    gateway_config,
    running_gateway,
    screen_request,
    stub_for,
)

POLICY = {
    "FRAUDSCREEN_POLICY_REVIEW_ABOVE_MINOR": "60000",  # hard-rule reviews with their reason
    "FRAUDSCREEN_POLICY_DECLINE_ABOVE_MINOR": "90000",
    "FRAUDSCREEN_POLICY_REVIEW_THRESHOLD": "0.1",  # model reviews carry reason codes
    "FRAUDSCREEN_LOGGING_REQUESTS": "all",
}


def traffic() -> list[pb.ScreenRequest]:
    requests = [
        screen_request(
            f"p-{i}",
            terminal_id=f"T{i % 3}",
            pan=PANS[i % 4],
            amount_minor=(i * 7919) % 100_000,
            entry_mode=(pb.ENTRY_MODE_CHIP, pb.ENTRY_MODE_MANUAL)[i % 2],
            mcc=None if i % 5 == 0 else 5411,
        )
        for i in range(120)
    ]
    requests[7].pan = "1234"  # invalid: an in-band INVALID_ARGUMENT
    requests[8].currency = "eur"
    requests[9].ClearField("timestamp")
    requests[30] = requests[20]  # a retry: replayed
    clash = pb.ScreenRequest()
    clash.CopyFrom(requests[21])
    clash.amount_minor += 1
    requests[31] = clash  # same id, other content: ALREADY_EXISTS in-band
    return requests


def requests_by_label(gateway: Gateway, method: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["code"], s.labels["decision"]): s.value
        for s in _family(gateway, "fraudscreen_requests").samples
        if s.name.endswith("_total") and s.labels["method"] == method
    }


def observations(gateway: Gateway, method: str) -> float:
    return next(
        s.value
        for s in _family(gateway, "fraudscreen_request_latency_seconds").samples
        if s.name.endswith("_count") and s.labels["method"] == method
    )


def _family(gateway: Gateway, name: str) -> Metric:
    return next(m for m in gateway.metrics.registry.collect() if m.name == name)


def request_lines(logs: list[MutableMapping[str, Any]]) -> list[dict[str, Any]]:
    """Request log lines without what differs by method: the method and the latency."""
    return [
        {k: v for k, v in line.items() if k not in ("method", "latency_us")}
        for line in logs
        if line["event"] in ("screened", "rejected")
    ]


def stream(stub: pb_grpc.ScreeningStub, requests: list[pb.ScreenRequest]) -> Iterator[Any]:
    return iter(stub.ScreenStream(iter(requests), timeout=30))


def test_batch_answers_counts_and_logs_as_the_stream_does(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    requests = traffic()
    configs = [gateway_config(tmp_path / name, small_bundle_path, POLICY) for name in "ab"]
    with running_gateway(configs[0]) as streamed, running_gateway(configs[1]) as batched:
        with capture_logs() as stream_logs:
            channel, stub = stub_for(streamed)
            with channel:
                expected = list(stream(stub, requests))
        with capture_logs() as batch_logs:
            channel, stub = stub_for(batched)
            with channel:
                answers: list[pb.ScreenStreamResponse] = []
                for start in (0, 1, 50):  # batches of 1, 49 and 70
                    end = {0: 1, 1: 50, 50: len(requests)}[start]
                    reply = stub.ScreenBatch(
                        pb.ScreenBatchRequest(requests=requests[start:end]), timeout=30
                    )
                    answers.extend(reply.results)
        assert answers == expected
        codes = {a.error.code for a in answers if a.HasField("error")}
        assert codes == {grpc.StatusCode.INVALID_ARGUMENT.value[0], 6}  # 6: ALREADY_EXISTS
        decisions = {a.response.decision for a in answers if a.HasField("response")}
        assert decisions == {pb.DECISION_APPROVE, pb.DECISION_REVIEW, pb.DECISION_DECLINE}
        features = {r.feature for a in answers for r in a.response.reasons}
        assert len(features) > 2  # model reason codes name their feature; hard rules ""
        assert any(a.response.replayed for a in answers)
        counts = requests_by_label(batched, "ScreenBatch")
        assert counts == requests_by_label(streamed, "ScreenStream")
        assert sum(counts.values()) == len(requests)
        assert observations(batched, "ScreenBatch") == len(requests)
        assert observations(streamed, "ScreenStream") == len(requests)
    assert request_lines(batch_logs) == request_lines(stream_logs)
    assert len(request_lines(batch_logs)) == len(requests)
