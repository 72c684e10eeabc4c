"""A Locust user for gRPC, in the pattern of Locust's "Testing other systems/protocols" docs.

``grpc.experimental.gevent.init_gevent()`` runs on import, before any channel exists, so
gRPC waits cooperatively under gevent. A client interceptor times every call and fires
Locust's ``request`` event (request_type "grpc"); a response that fails its correctness
check is fired as a failure even though the RPC itself succeeded.

Streams: one ``ScreenStream`` call sends a batch and is reported as ONE request event
whose response time is the whole batch; the per-item latencies (request i sent ->
response i received) and the number of correct items travel in the event's ``context``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.experimental.gevent as grpc_gevent
from google.protobuf.message import Message
from locust import User
from locust.env import Environment
from locust.exception import LocustError

from fraudscreen.v1 import screening_pb2 as pb
from fraudscreen.v1 import screening_pb2_grpc as pb_grpc
from loadtests.checks import SCREEN, ResponseChecks

# Patch gRPC to use gevent: this must happen before any channel is created.
grpc_gevent.init_gevent()

REQUEST_TYPE = "grpc"


class ResponseCheckError(Exception):
    """The RPC succeeded but the answer is wrong; Locust records it as a failure."""


def _short(method: str) -> str:
    """'/fraudscreen.v1.Screening/Screen' -> 'Screen'."""
    return method.rsplit("/", 1)[-1]


class _Finished:
    """The already-consumed responses of a stream call, iterable again by the caller."""

    def __init__(self, call: Any, items: list[pb.ScreenStreamResponse]) -> None:
        self._call = call
        self._items = items

    def __iter__(self) -> Iterator[pb.ScreenStreamResponse]:
        return iter(self._items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


if TYPE_CHECKING:  # generic only in grpc-stubs, not at run time
    _UnaryInterceptor = grpc.UnaryUnaryClientInterceptor[Message, Message]
    _StreamInterceptor = grpc.StreamStreamClientInterceptor[
        pb.ScreenRequest, pb.ScreenStreamResponse
    ]
else:
    _UnaryInterceptor = grpc.UnaryUnaryClientInterceptor
    _StreamInterceptor = grpc.StreamStreamClientInterceptor


class LocustInterceptor(_UnaryInterceptor, _StreamInterceptor):
    """Times each call, checks the answer and fires one Locust request event per call."""

    def __init__(self, environment: Environment, checks: ResponseChecks) -> None:
        self._events = environment.events
        self._checks = checks

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Message], grpc.CallFuture[Message]],
        client_call_details: grpc.ClientCallDetails,
        request: Message,
    ) -> grpc.CallFuture[Message]:
        method = _short(client_call_details.method)
        name = self._checks.label(method, request)
        started = time.perf_counter_ns()
        call = continuation(client_call_details, request)
        exception: Exception | None = None
        length = 0
        try:
            response = call.result()
        except grpc.RpcError as exc:
            elapsed = time.perf_counter_ns() - started
            self._checks.forget(request)
            exception = exc
        else:
            elapsed = time.perf_counter_ns() - started
            length = response.ByteSize()
            problem = self._checks.unary_problem(method, request, response)
            if problem is not None:
                exception = ResponseCheckError(f"{name}: {problem}")
        transactions = 1 if name == SCREEN and exception is None else 0
        self._fire(name, elapsed, length, exception, {"transactions": transactions})
        return call

    def intercept_stream_stream(
        self,
        continuation: Callable[
            [grpc.ClientCallDetails, pb.ScreenRequest], grpc.CallIterator[pb.ScreenStreamResponse]
        ],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Iterator[pb.ScreenRequest],
    ) -> grpc.CallIterator[pb.ScreenStreamResponse]:
        name = _short(client_call_details.method)
        sent: list[pb.ScreenRequest] = []
        sent_at: list[int] = []

        def stamped() -> Iterator[pb.ScreenRequest]:
            for request in request_iterator:
                sent.append(request)
                sent_at.append(time.perf_counter_ns())
                yield request

        items: list[pb.ScreenStreamResponse] = []
        item_us: list[float] = []
        exception: Exception | None = None
        started = time.perf_counter_ns()
        # grpc-stubs types the stream continuation's second argument as one request.
        call = continuation(client_call_details, cast(pb.ScreenRequest, stamped()))
        try:
            for item in call:
                # An extra, unrequested answer is timed from the start; the check fails it.
                sent_ns = sent_at[len(items)] if len(items) < len(sent_at) else started
                item_us.append((time.perf_counter_ns() - sent_ns) / 1000)
                items.append(item)
        except grpc.RpcError as exc:
            exception = exc
        elapsed = time.perf_counter_ns() - started
        good, problem = ResponseChecks.stream_problem(sent, items)
        if exception is None and problem is not None:
            exception = ResponseCheckError(f"{name}: {problem}")
        length = sum(item.ByteSize() for item in items)
        self._fire(name, elapsed, length, exception, {"transactions": good, "items_us": item_us})
        return cast("grpc.CallIterator[pb.ScreenStreamResponse]", _Finished(call, items))

    def _fire(
        self,
        name: str,
        elapsed_ns: int,
        length: int,
        exception: Exception | None,
        context: dict[str, Any],
    ) -> None:
        self._events.request.fire(
            request_type=REQUEST_TYPE,
            name=name,
            response_time=elapsed_ns / 1e6,  # Locust wants ms; the float keeps the µs
            response_length=length,
            response=None,
            context=context,
            exception=exception,
        )


class ScreeningGrpcUser(User):  # type: ignore[misc]  # locust is untyped
    """Base user: one channel per user, intercepted, with a Screening stub on top."""

    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise LocustError(
                "no target: pass --host 127.0.0.1:PORT (the gateway's gRPC address, no scheme)"
            )
        self.checks = ResponseChecks()
        self._channel = grpc.insecure_channel(self.host)
        channel = grpc.intercept_channel(self._channel, LocustInterceptor(environment, self.checks))
        self.stub = pb_grpc.ScreeningStub(channel)

    def on_stop(self) -> None:
        self._channel.close()
