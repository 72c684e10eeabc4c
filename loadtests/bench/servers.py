"""The servers under test, each in its own process: `fraudscreen serve`, and the variants built
here (grpc.aio around the same Gateway objects, and the transport floor that answers a fixed
response)."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import psutil

from fraudscreen.rpc.server import server_options
from fraudscreen.v1 import screening_pb2 as pb
from loadtests.bench.plan import ROOT, ServerSpec
from loadtests.bench.traffic import gateway_env
from loadtests.cpu import machine_busy_seconds, process_seconds
from loadtests.gateway import latency_totals, process_env, stop_process, tail_log

if TYPE_CHECKING:  # heavy imports stay out of the client processes, which only need grpc
    from fraudscreen.config import GatewayConfig
    from fraudscreen.gateway.server import Gateway
    from fraudscreen.gateway.servicer import ScreeningServicer


SCREENING_METHODS = ("Screen", "ScreenStream", "ScreenBatch")
SERVER_STOP_TIMEOUT = 20.0


class ServerProcess:
    """One gateway (or transport-floor server) in its own process, always stopped.

    The log goes to a file rather than a pipe: a pipe nobody drains would block the
    server once full (it logs every non-approved transaction).
    """

    def __init__(self, spec: ServerSpec, directory: Path) -> None:
        self.spec = spec
        self.directory = directory
        self.log_path = directory / "server.log"
        self.port = 0
        self.metrics_port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._psutil: psutil.Process | None = None

    def start(self, timeout: float = 180.0) -> int:
        """Start, and wait for the ``gateway.ready`` log line; returns the gRPC port."""
        if self.spec.stack == "sync" and not self.spec.echo:
            command = [sys.executable, "-m", "fraudscreen", "serve"]
        else:
            command = [sys.executable, "-m", "loadtests.bench_service", "--serve", self.spec.stack]
            command += ["--echo"] if self.spec.echo else []
        predictor = "native" if self.spec.echo else self.spec.predictor
        env = process_env({**gateway_env(self.directory, predictor), **self.spec.environment})
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=ROOT
            )
        self._psutil = psutil.Process(self._process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self._events()
            if "gateway.ready" in events:
                self.port = int(events["gateway.listening"]["port"])
                if "metrics.listening" in events:
                    self.metrics_port = int(events["metrics.listening"]["port"])
                return self.port
            if self._process.poll() is not None:
                raise RuntimeError(f"{self.spec.name} server exited:\n{self._tail()}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.spec.name} server not ready in {timeout:.0f} s:\n{self._tail()}")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def process(self) -> psutil.Process:
        assert self._psutil is not None, "not started"
        return self._psutil

    def cpu_seconds(self) -> float:
        return process_seconds(self.process)

    def handler_totals(self) -> tuple[float, float] | None:
        """(seconds, items) the servicer spent handling Screen/ScreenStream/ScreenBatch
        items so far (a batch observes each transaction), from its own Prometheus
        histogram; None for a server without metrics."""
        if self.metrics_port is None:
            return None
        seconds = items = 0.0
        for method, (spent, count) in latency_totals(self.metrics_port, timeout=10).items():
            if method in SCREENING_METHODS:
                seconds += spent
                items += count
        return seconds, items

    def stop(self) -> None:
        """SIGTERM (drain), then SIGKILL if it does not exit in time."""
        if self._process is not None:
            stop_process(self._process, timeout=SERVER_STOP_TIMEOUT)

    def _events(self) -> dict[str, dict[str, Any]]:
        events: dict[str, dict[str, Any]] = {}
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                events.setdefault(str(record.get("event")), record)
        return events

    def _tail(self) -> str:
        return tail_log(self.log_path, 20)


class ForeignLoad:
    """CPU that processes other than ours used over a window, in cores. A benchmark on a
    shared box must say when someone else was busy: it skews every number.

    Steal counts as busy here (unlike loadtests.cpu's MACHINE row): CPU a hypervisor
    gave to another tenant is foreign load too."""

    def __init__(self, ours: Sequence[psutil.Process]) -> None:
        self._ours = [psutil.Process(), *ours]  # this process too: it samples and parses
        self._began = time.monotonic()
        self._busy = machine_busy_seconds(include_steal=True)
        self._own = sum(process_seconds(p) for p in self._ours)

    def cores(self) -> float:
        elapsed = time.monotonic() - self._began
        busy = machine_busy_seconds(include_steal=True) - self._busy
        own = sum(process_seconds(p) for p in self._ours) - self._own
        return max(0.0, busy - own) / elapsed if elapsed > 0 else 0.0


# ------------------------------------------- server variants: grpc.aio, transport floor


def grpc_server_options(config: GatewayConfig) -> list[tuple[str, Any]]:
    """The options the gateway gives its sync server, for every variant here."""
    return server_options(config.server.max_message_bytes, keepalive=True)


class _Aborted(Exception):
    def __init__(self, status: grpc.Status) -> None:
        super().__init__(status.details)
        self.status = status


class _AbortCapture:
    """Stands in for the sync ServicerContext on the paths the servicer uses one: the
    call's deadline and peer come from the aio context, ``abort_with_status`` raises, and
    the aio handler turns that into ``context.abort``."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context

    def time_remaining(self) -> float:
        """aio says None for a call without a deadline, where sync gRPC gives a float."""
        remaining = self._context.time_remaining()
        return math.inf if remaining is None else remaining

    def peer(self) -> str:
        return self._context.peer()

    def abort_with_status(self, status: grpc.Status) -> None:
        raise _Aborted(status)


def aio_handler(servicer: ScreeningServicer) -> grpc.GenericRpcHandler[Any, Any]:
    """Screen, ScreenStream and ScreenBatch for grpc.aio, running the sync servicer's own
    code inline.

    Screening is CPU only (the journal is written by its own thread), so it runs on the
    event loop: a thread hop per call would cost more than it could save. A batch holds
    the loop for all its transactions (as it holds the GIL in the sync server).
    ReportOutcome waits for a durable write and is left out: it is not benchmarked.
    """

    def shim(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.ServicerContext:
        return cast(grpc.ServicerContext, _AbortCapture(context))

    async def screen(message: object, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return servicer.Screen(message, shim(context))
        except _Aborted as aborted:
            status = aborted.status
            await context.abort(status.code, status.details, status.trailing_metadata)

    async def screen_stream(
        messages: AsyncIterator[object], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ScreenStreamResponse]:
        sync_context = shim(context)
        async for message in messages:
            for reply in servicer.ScreenStream(iter((message,)), sync_context):
                yield reply

    async def screen_batch(message: object, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return servicer.ScreenBatch(message, shim(context))
        except _Aborted as aborted:
            status = aborted.status
            await context.abort(status.code, status.details, status.trailing_metadata)

    return _screening_handler(screen, screen_stream, screen_batch)


_ECHO = pb.ScreenResponse(
    transaction_id="tx", terminal_id="T1", decision=pb.DECISION_APPROVE, model_version="echo"
)
_ECHO_STREAM = pb.ScreenStreamResponse(transaction_id="tx", terminal_id="T1", response=_ECHO)


def _echo_batch(message: object) -> pb.ScreenBatchResponse:
    """One fixed answer per transaction of the batch (already parsed by gRPC), in-band."""
    count = len(message.requests) if isinstance(message, pb.ScreenBatchRequest) else 0
    return pb.ScreenBatchResponse(results=[_ECHO_STREAM] * count)


def echo_handler(stack: str) -> grpc.GenericRpcHandler[Any, Any]:
    """The transport floor: requests parsed as usual, a fixed answer, no screening. What
    gRPC itself costs per call on this machine, under any handler."""

    def screen(message: object, context: object) -> pb.ScreenResponse:
        return _ECHO

    def screen_stream(messages: Iterator[object], context: object) -> Iterator[Any]:
        for _ in messages:
            yield _ECHO_STREAM

    def screen_batch(message: object, context: object) -> pb.ScreenBatchResponse:
        return _echo_batch(message)

    async def screen_async(message: object, context: object) -> pb.ScreenResponse:
        return _ECHO

    async def screen_stream_async(messages: AsyncIterator[object], context: object) -> Any:
        async for _ in messages:
            yield _ECHO_STREAM

    async def screen_batch_async(message: object, context: object) -> pb.ScreenBatchResponse:
        return _echo_batch(message)

    if stack == "aio":
        return _screening_handler(screen_async, screen_stream_async, screen_batch_async)
    return _screening_handler(screen, screen_stream, screen_batch)


def _screening_handler(
    screen: Callable[..., Any], screen_stream: Callable[..., Any], screen_batch: Callable[..., Any]
) -> grpc.GenericRpcHandler[Any, Any]:
    """Registered exactly like ScreeningServicer.handlers(): lenient request parsing."""
    from fraudscreen.gateway.servicer import SCREENING_SERVICE
    from fraudscreen.rpc.parsing import lenient_parser

    return grpc.method_handlers_generic_handler(
        SCREENING_SERVICE,
        {
            "Screen": grpc.unary_unary_rpc_method_handler(
                screen,
                request_deserializer=lenient_parser(pb.ScreenRequest),
                response_serializer=pb.ScreenResponse.SerializeToString,
            ),
            "ScreenStream": grpc.stream_stream_rpc_method_handler(
                screen_stream,
                request_deserializer=lenient_parser(pb.ScreenRequest),
                response_serializer=pb.ScreenStreamResponse.SerializeToString,
            ),
            "ScreenBatch": grpc.unary_unary_rpc_method_handler(
                screen_batch,
                request_deserializer=lenient_parser(pb.ScreenBatchRequest),
                response_serializer=pb.ScreenBatchResponse.SerializeToString,
            ),
        },
    )


def _announce(event: str, **fields: object) -> None:
    """The JSON log lines ServerProcess waits for, as ``fraudscreen serve`` writes them."""
    import structlog

    structlog.get_logger("loadtests.bench_service").info(event, **fields)


def _serve_sync_echo(config: GatewayConfig) -> None:
    """The sync transport floor, built as Gateway._grpc_server builds the gateway's server
    (health and reflection included, never called here); runs until SIGTERM."""
    from grpc_health.v1 import health

    from fraudscreen.gateway.servicer import SCREENING_SERVICE
    from fraudscreen.rpc.server import build_server

    server = build_server(
        handlers=echo_handler("sync"),
        health_servicer=health.HealthServicer(experimental_non_blocking=True),
        service_name=SCREENING_SERVICE,
        max_workers=config.server.max_workers,
        thread_prefix="rpc",
        options=grpc_server_options(config),
        max_concurrent_rpcs=config.server.max_concurrent_rpcs,
    )
    port = server.add_insecure_port(config.server.listen)
    server.start()
    _announce("gateway.listening", port=port, stack="sync", echo=True)
    _announce("gateway.ready", port=port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    stop.wait()
    server.stop(config.server.grace_seconds).wait()


async def _serve_aio(config: GatewayConfig, gateway: Gateway | None) -> None:
    """grpc.aio server with the gateway's servicer (or the echo floor if None)."""
    server = grpc.aio.server(
        maximum_concurrent_rpcs=config.server.max_concurrent_rpcs,
        options=grpc_server_options(config),
    )
    handler = echo_handler("aio") if gateway is None else aio_handler(gateway.servicer)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(config.server.listen)
    await server.start()
    _announce("gateway.listening", port=port, stack="aio", echo=gateway is None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tasks = []
    if gateway is not None:
        from fraudscreen.gateway.server import settle_garbage_collector

        settle_garbage_collector()  # as Gateway.become_ready
        tasks.append(asyncio.create_task(_maintain(gateway)))
        gateway.servicer.ready = True
    _announce("gateway.ready", port=port)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await server.stop(config.server.grace_seconds)


async def _maintain(gateway: Gateway) -> None:
    """As Gateway._maintain: every 30 s the engine forgets expired state and what is left
    is frozen out of the GC (the journal purge is hourly: not within a benchmark)."""
    from fraudscreen.gateway.server import MAINTENANCE_SECONDS

    while True:
        await asyncio.sleep(MAINTENANCE_SECONDS)
        gateway.engine.maintain()
        gc.freeze()


def serve_variant(stack: str, echo: bool) -> int:
    """``--serve aio`` / ``--serve STACK --echo``: the server variants ``fraudscreen serve``
    does not offer, from the same FRAUDSCREEN_* config. The aio gateway is the same Gateway
    object (journal, state, model, validator, servicer, metrics) minus its sync server."""
    from fraudscreen.config import load_config
    from fraudscreen.gateway.cpu_placement import apply_pinning
    from fraudscreen.gateway.server import Gateway
    from fraudscreen.logs import configure_logging, resolve_format

    config = load_config(None)
    log_format = resolve_format(config.logging.format)
    configure_logging(json=log_format == "json", level=config.logging.level)
    apply_pinning(config.server.pin_cpu)  # placed as `fraudscreen serve` places itself
    if echo and stack == "sync":
        _serve_sync_echo(config)
        return 0
    if echo:
        asyncio.run(_serve_aio(config, None))
        return 0
    if stack != "aio":
        raise SystemExit("the sync gateway is `fraudscreen serve`; --serve sync needs --echo")
    gateway = Gateway(config)
    stop_metrics: Callable[[], None] | None = None
    try:
        gateway.journal.start()
        gateway.engine.restore()
        gateway.load_model()
        _metrics_port, stop_metrics = gateway._start_metrics()  # logs metrics.listening
        asyncio.run(_serve_aio(config, gateway))
    finally:
        if stop_metrics is not None:
            stop_metrics()
        gateway.stop(grace=0)  # no sync server was started: this flushes the journal
    return 0
