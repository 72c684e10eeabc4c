"""Idle and half-open callers against a real gateway: per-kind limits, refusal at once past
them, health always answered, idle calls ended with a clear status and a log line."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from structlog.testing import capture_logs

from fraudscreen.gateway.admission import STREAM, UNARY
from fraudscreen.gateway.server import Gateway
from fraudscreen.v1 import screening_pb2 as pb
from fraudscreen.v1 import screening_pb2_grpc as pb_grpc
from loadtests.half_open import HalfOpenPeer
from tests.support.service_support import gateway_config, running_gateway, screen_request

SCREEN_PATH = "/fraudscreen.v1.Screening/Screen"
LIMITS = {
    "FRAUDSCREEN_SERVER_MAX_STREAMS": "4",
    "FRAUDSCREEN_SERVER_MAX_CONCURRENT_RPCS": "4",
    "FRAUDSCREEN_SERVER_MAX_WORKERS": "4",
}
SERVING = health_pb2.HealthCheckResponse.SERVING
# Generous: these bound a wait, they assert nothing about speed.
PATIENCE = 30.0


def wait_until(condition: Callable[[], bool], timeout: float = PATIENCE) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class IdleStream:
    """A ScreenStream call whose caller sends `first` messages, then nothing until closed."""

    def __init__(self, stub: pb_grpc.ScreeningStub, first: list[pb.ScreenRequest]) -> None:
        self._closed = threading.Event()
        self.call = stub.ScreenStream(self._requests(first), timeout=2 * PATIENCE)
        self.responses: Iterator[pb.ScreenStreamResponse] = iter(self.call)

    def _requests(self, first: list[pb.ScreenRequest]) -> Iterator[pb.ScreenRequest]:
        yield from first
        self._closed.wait()

    def close(self) -> None:
        self._closed.set()
        self.call.cancel()  # type: ignore[no-untyped-call]


def refused_code(call: Callable[[], object]) -> grpc.StatusCode | None:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return None


def test_idle_streams_and_half_open_calls_up_to_the_limits_delay_nothing(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    config = gateway_config(tmp_path, small_bundle_path, LIMITS)
    with running_gateway(config) as gateway:
        channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
        stub = pb_grpc.ScreeningStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service="fraudscreen.v1.Screening")
        streams = [IdleStream(stub, []) for _ in range(4)]  # the stream limit, all idle
        peer = HalfOpenPeer(gateway.port)
        for _ in range(3):  # one below the unary limit, requests never sent
            peer.open_call(SCREEN_PATH)
        # synchronisation only: with admission removed the counts never move and the
        # calls below show the starvation
        wait_until(lambda: gateway.admission.open_calls(STREAM) == 4)
        wait_until(lambda: gateway.admission.open_calls(UNARY) == 3)
        try:
            answer = stub.Screen(screen_request("fresh-1"), timeout=PATIENCE)
            assert answer.decision != pb.DECISION_UNSPECIFIED
            recorded = stub.ReportOutcome(
                pb.ReportOutcomeRequest(
                    terminal_id="T1", transaction_id="fresh-1", outcome=pb.OUTCOME_CHARGEBACK
                ),
                timeout=PATIENCE,
            )
            assert recorded.known_transaction
            assert health.Check(check, timeout=PATIENCE).status == SERVING

            # past the stream limit: refused at once, not queued into the deadline
            extra = IdleStream(stub, [screen_request("stream-5")])
            assert refused_code(lambda: next(extra.responses)) == grpc.StatusCode.RESOURCE_EXHAUSTED
            extra.close()
            # the unary limit full of half-open calls: the next Screen is refused, health is not
            peer.open_call(SCREEN_PATH)
            assert wait_until(lambda: gateway.admission.open_calls(UNARY) == 4)
            assert (
                refused_code(lambda: stub.Screen(screen_request("fresh-2"), timeout=PATIENCE))
                == grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            assert health.Check(check, timeout=PATIENCE).status == SERVING
            refused = gateway.metrics.calls_refused
            assert refused.labels(STREAM)._value.get() == 1
            assert refused.labels(UNARY)._value.get() == 1
        finally:
            for stream in streams:
                stream.close()
            peer.close()
            channel.close()
        # the callers left: their slots are free again
        assert wait_until(lambda: gateway.admission.open_calls(STREAM) == 0)
        assert wait_until(lambda: gateway.admission.open_calls(UNARY) == 0)


def test_idle_calls_are_ended_with_a_clear_status_and_the_peer_logged(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    config = gateway_config(
        tmp_path, small_bundle_path, {**LIMITS, "FRAUDSCREEN_SERVER_IDLE_TIMEOUT": "2"}
    )
    with capture_logs() as logs, running_gateway(config) as gateway:
        channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
        stub = pb_grpc.ScreeningStub(channel)
        stream = IdleStream(stub, [screen_request("before-idle")])
        peer = HalfOpenPeer(gateway.port)
        half_open = peer.open_call(SCREEN_PATH)
        try:
            assert next(stream.responses).response.transaction_id == "before-idle"
            with pytest.raises(grpc.RpcError) as ended:
                next(stream.responses)  # nothing more sent: the gateway ends the stream
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "server.idle_timeout" in (ended.value.details() or "")
            status = peer.wait_for_status(half_open, timeout=PATIENCE)
            assert status is not None and status["grpc-status"] == "14", status
            assert wait_until(lambda: gateway.admission.open_calls(STREAM) == 0)
            assert wait_until(lambda: gateway.admission.open_calls(UNARY) == 0)
            # the freed capacity serves new calls
            assert stub.Screen(screen_request("after-idle"), timeout=PATIENCE).transaction_id
        finally:
            stream.close()
            peer.close()
            channel.close()
        ended_calls = gateway.metrics.calls_idle_ended
        assert ended_calls.labels(STREAM)._value.get() == 1
        assert ended_calls.labels(UNARY)._value.get() == 1
    idle_lines = [entry for entry in logs if entry["event"] == "call.idle_ended"]
    assert {entry["kind"] for entry in idle_lines} == {STREAM, UNARY}
    assert all("127.0.0.1" in entry["peer"] for entry in idle_lines), idle_lines


def test_gateway_refuses_unknown_methods_without_admitting_them(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    config = gateway_config(tmp_path, small_bundle_path, LIMITS)
    with running_gateway(config) as gateway:
        channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
        call = channel.unary_unary(
            "/fraudscreen.v1.Screening/Nope", request_serializer=None, response_deserializer=None
        )
        assert refused_code(lambda: call(b"", timeout=PATIENCE)) == grpc.StatusCode.UNIMPLEMENTED
        assert isinstance(gateway, Gateway)
        assert gateway.admission.open_calls(UNARY) == 0
        channel.close()
