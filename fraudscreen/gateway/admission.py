"""Admission of calls: per-kind limits, a thread for every admitted call, idle calls ended.

grpcio's sync server reads a unary call's request on a pool worker, and a stream handler
waits in `next()` on a pool worker, so a caller that opens a call and sends nothing holds
a worker for as long as it stays connected. With one shared pool, as many idle callers as
workers stopped every other call, health checks included, and calls past that queued into
their deadlines instead of being refused.

So every call is admitted here, on gRPC's poller thread (a server interceptor runs there,
before the call is handed to a pool), by kind:

- each kind (unary screening calls, screening streams, the health and reflection services)
  has its own limit and its own thread pool of exactly that size, so an admitted call
  always has a thread (a thread blocked waiting for a message costs a little memory, no
  CPU) and one kind can never take another's threads;
- a call counts against its limit until its handler returns (not merely until the caller
  has gone), so the count never exceeds the threads;
- a call past its kind's limit is refused at once with RESOURCE_EXHAUSTED, by a refusal
  handler that does not wait for the request;
- a call that has received no message for `idle_timeout` (a stream between messages, a
  unary call whose request never arrives) is ended with UNAVAILABLE by a watchdog thread,
  which logs the peer; the caller reconnects when it has something to send.

Unary handlers are registered as stream-unary ones here: the behaviour then runs as soon as
the call is admitted, so it can register the call with the watchdog before waiting for the
request (a unary behaviour only starts once its request has arrived).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from grpc._cython import cygrpc  # type: ignore[attr-defined]

log = structlog.get_logger(__name__)

UNARY = "unary"
STREAM = "stream"
SERVICE = "service"
REFUSAL_THREADS = 2
REFUSAL_LOG_INTERVAL = 1.0  # seconds between `call.refused` lines per kind (floods)


@dataclass(frozen=True)
class Limits:
    """Calls admitted at once per kind, and seconds without a message before a call ends."""

    unary: int
    stream: int
    service: int
    idle_timeout: float

    def of(self, kind: str) -> int:
        return {UNARY: self.unary, STREAM: self.stream, SERVICE: self.service}[kind]


@dataclass
class _Watched:
    """One admitted call that is waiting for (or between) request messages."""

    context: grpc.ServicerContext
    method: str
    kind: str
    last_message: float = field(default_factory=time.monotonic)


class IdleWatchdog:
    """Ends calls that have received no message for `idle_timeout` seconds."""

    def __init__(
        self,
        idle_timeout: float,
        on_idle_ended: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_timeout = idle_timeout
        self._on_idle_ended = on_idle_ended
        self._clock = clock
        self._calls: dict[int, _Watched] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="idle-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def watch(self, context: grpc.ServicerContext, method: str, kind: str) -> _Watched:
        watched = _Watched(context, method, kind, self._clock())
        with self._lock:
            self._calls[id(watched)] = watched
        return watched

    def forget(self, watched: _Watched) -> None:
        with self._lock:
            self._calls.pop(id(watched), None)

    def _run(self) -> None:
        period = min(max(self.idle_timeout / 4, 0.01), 1.0)
        while not self._stop.wait(period):
            self.end_idle_calls()

    def end_idle_calls(self) -> None:
        now = self._clock()
        with self._lock:
            idle = [w for w in self._calls.values() if now - w.last_message >= self.idle_timeout]
            for watched in idle:
                del self._calls[id(watched)]
        for watched in idle:
            self._end(watched, now - watched.last_message)

    def _end(self, watched: _Watched, idle_seconds: float) -> None:
        context = watched.context
        log.warning(
            "call.idle_ended",
            peer=context.peer(),
            method=watched.method,
            kind=watched.kind,
            idle_seconds=round(idle_seconds, 1),
            idle_timeout=self.idle_timeout,
        )
        self._on_idle_ended(watched.kind)
        end_call(
            context,
            grpc.StatusCode.UNAVAILABLE,
            f"no request message for {self.idle_timeout:g} s (server.idle_timeout); "
            "call ended, open a new one when there is something to send",
        )


def end_call(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End a call from another thread with a status the caller can read.

    The public `context.cancel()` only gives the caller a bare CANCELLED; the Cython call
    underneath can cancel with a status (grpc_call_cancel_with_status). A test checks
    the status the caller sees, so a grpcio that changes this shows up there.
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    if call is None:
        context.cancel()  # type: ignore[no-untyped-call]
        return
    call.cancel(_CYGRPC_CODES[code], details)


_CYGRPC_CODES = {code: cygrpc.StatusCode(code.value[0]) for code in grpc.StatusCode}


class Admission(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Per-kind limits and idle ending for every call the server accepts."""

    def __init__(
        self,
        limits: Limits,
        kinds: dict[str, str],
        *,
        on_refused: Callable[[str], None] = lambda kind: None,
        on_idle_ended: Callable[[str], None] = lambda kind: None,
    ) -> None:
        """`kinds` maps full method names (/package.Service/Method) to UNARY or STREAM;
        every other method is SERVICE (health, reflection)."""
        self.limits = limits
        self._kinds = kinds
        self._on_refused = on_refused
        self._open = {UNARY: 0, STREAM: 0, SERVICE: 0}
        self._limit = {kind: limits.of(kind) for kind in self._open}
        self._lock = threading.Lock()
        self._last_refusal_log = {UNARY: 0.0, STREAM: 0.0, SERVICE: 0.0}
        self.pools = {
            kind: futures.ThreadPoolExecutor(
                max_workers=limits.of(kind), thread_name_prefix=f"rpc-{kind}"
            )
            for kind in (UNARY, STREAM, SERVICE)
        }
        self._refusal_pool = futures.ThreadPoolExecutor(
            max_workers=REFUSAL_THREADS, thread_name_prefix="rpc-refuse"
        )
        self.watchdog = IdleWatchdog(limits.idle_timeout, on_idle_ended)
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._refusals = {kind: self._refusal(kind) for kind in (UNARY, STREAM, SERVICE)}

    def open_calls(self, kind: str) -> int:
        return self._open[kind]

    def start(self) -> None:
        self.watchdog.start()

    def stop(self) -> None:
        self.watchdog.stop()
        for pool in (*self.pools.values(), self._refusal_pool):
            pool.shutdown(wait=False)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrap(method, handler)
            if wrapped is None:  # a non-blocking server stream (health Watch): holds no thread
                return handler
            self._wrapped[method] = wrapped
        kind = self._kinds.get(method, SERVICE)
        with self._lock:
            refused = self._open[kind] >= self._limit[kind]
            if not refused:
                self._open[kind] += 1
        if refused:
            self._refused(kind, method)
            return self._refusals[kind]
        return wrapped

    def _release(self, kind: str) -> None:
        with self._lock:
            self._open[kind] -= 1

    def _refused(self, kind: str, method: str) -> None:
        self._on_refused(kind)
        now = time.monotonic()
        if now - self._last_refusal_log[kind] >= REFUSAL_LOG_INTERVAL:
            self._last_refusal_log[kind] = now
            log.warning("call.refused", kind=kind, method=method, limit=self.limits.of(kind))

    def _refusal(self, kind: str) -> grpc.RpcMethodHandler[Any, Any]:
        limit = self.limits.of(kind)
        what = {UNARY: "unary calls", STREAM: "streams", SERVICE: "service calls"}[kind]

        def refuse(_requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this gateway already has {limit} {what} open (its limit); retry later",
            )
            yield  # pragma: no cover - abort raises; this makes a generator

        refuse.experimental_thread_pool = self._refusal_pool  # type: ignore[attr-defined]
        return grpc.stream_stream_rpc_method_handler(refuse)

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        kind = self._kinds.get(method, SERVICE)
        pool = self.pools[kind]
        watchdog = self.watchdog
        if not handler.request_streaming and not handler.response_streaming:
            unary = handler.unary_unary
            assert unary is not None

            def unary_behaviour(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                try:  # gRPC runs this for every admitted call, cancelled or not
                    watched = watchdog.watch(context, method, kind)
                    try:
                        request = next(requests, None)
                    finally:
                        watchdog.forget(watched)
                    if request is None:
                        context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            "a unary call needs one request message",
                        )
                    return unary(request, context)
                finally:
                    self._release(kind)

            unary_behaviour.experimental_thread_pool = pool  # type: ignore[attr-defined]
            return grpc.stream_unary_rpc_method_handler(
                unary_behaviour,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.request_streaming and handler.response_streaming:
            stream = handler.stream_stream
            assert stream is not None

            def stream_behaviour(
                requests: Iterator[Any], context: grpc.ServicerContext
            ) -> Iterator[Any]:
                # gRPC always starts this generator; one it abandons is closed when dropped
                watched = watchdog.watch(context, method, kind)
                try:
                    yield from stream(_touching(requests, watched), context)
                finally:
                    watchdog.forget(watched)
                    self._release(kind)

            stream_behaviour.experimental_thread_pool = pool  # type: ignore[attr-defined]
            return grpc.stream_stream_rpc_method_handler(
                stream_behaviour,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return None


def _touching(requests: Iterator[Any], watched: _Watched) -> Iterator[Any]:
    """The request messages, each one resetting the call's idle clock."""
    for request in requests:
        watched.last_message = time.monotonic()
        yield request
