"""Load shapes and phases: each shape measured on every server in turn, with the CPU both sides
and other processes used."""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from fraudscreen.v1 import screening_pb2 as pb
from loadtests.bench.clients import BatchTask, ClientPool, StreamTask, Task, UnaryTask, _sleep_until
from loadtests.bench.plan import (
    BATCH_MAX_TPS,
    ECHO_BATCHES,
    FOREIGN_WARNING,
    PACE_SECONDS,
    PACED_TERMINALS,
    START_DELAY,
    STREAM_MAX_TPS,
    UNARY_MAX_TPS,
    Plan,
    ServerSpec,
    progress,
)
from loadtests.bench.servers import ForeignLoad, ServerProcess
from loadtests.bench.stats import Latency
from loadtests.bench.traffic import TrafficCursor, frame_batch
from loadtests.cpu import process_seconds


@dataclass(frozen=True)
class Phase:
    """One measured load shape against one server."""

    spec: ServerSpec
    kind: str  # "unary", "stream" or "batch"
    concurrency: int  # client threads (unary) or transactions in flight (stream, batch)
    shape: str  # e.g. "4 + 4 threads", "4 streams × 32 in flight", "2 calls × 400 tx"
    latency: Latency  # per call (unary, batch) or per message (stream)
    tps: float  # transactions per second
    seconds: float
    server_cores: float
    client_cores: float
    handler_us: float  # servicer's own mean time per item, server-side (NaN: not known)
    foreign_cores: float  # CPU other processes on the machine used meanwhile
    errors: Counter[str]
    decisions: Counter[str]
    notes: tuple[str, ...]
    transactions: int  # answered
    in_window: int  # answered within the window the CPU was sampled over
    batch: int = 1  # transactions per call (batch), 1 otherwise
    max_request_bytes: int = 0
    max_reply_bytes: int = 0

    @property
    def server_us_per_tx(self) -> float:
        return self.server_cores * self.seconds / max(1, self.in_window) * 1e6

    @property
    def client_us_per_tx(self) -> float:
        return self.client_cores * self.seconds / max(1, self.in_window) * 1e6

    @property
    def calls_per_second(self) -> float:
        return self.tps / self.batch


def _split(total: int, parts: int) -> list[int]:
    """``total`` threads over at most ``parts`` processes, as evenly as possible."""
    parts = max(1, min(total, parts))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class RetryBudget:
    """Seconds the whole run may spend repeating phases that other processes disturbed,
    so a busy shared machine cannot stretch the run without bound."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def take(self, seconds: float) -> bool:
        if seconds > self.left:
            return False
        self.left -= seconds
        return True


class ServerBench:
    """Runs the load phases against one server process and measures both sides' CPU."""

    def __init__(
        self, server: ServerProcess, pool: ClientPool, traffic: TrafficCursor, retry: RetryBudget
    ) -> None:
        self.server = server
        self.pool = pool
        self.traffic = traffic
        self.retry = retry
        self.others: list[psutil.Process] = []  # our other (idle) servers: not foreign load

    def warm_up(self, seconds: float) -> None:
        """Threads, connections and caches of both sides warm; nothing is recorded."""
        self._unary(32, seconds)

    def measure(self, shape: Shape) -> Phase:
        if shape.kind == "unary":
            return self._undisturbed(lambda: self._unary(shape.size, shape.seconds))
        if shape.kind == "paced":
            return self._undisturbed(lambda: self._paced(shape.size, shape.seconds))
        if shape.kind == "batch":
            return self._undisturbed(lambda: self._batch(shape.size, shape.window, shape.seconds))
        return self._undisturbed(lambda: self._stream(shape.size, shape.window, shape.seconds))

    def _undisturbed(self, measure: Callable[[], Phase]) -> Phase:
        """Measure; if other processes were busy meanwhile, once more while the retry budget
        lasts, keeping the less disturbed of the two."""
        phase = measure()
        if phase.foreign_cores > FOREIGN_WARNING and self.retry.take(phase.seconds + 1):
            progress(f"  other processes used {phase.foreign_cores:.2f} cores: repeating once")
            phase = min(phase, measure(), key=lambda p: p.foreign_cores)
        return phase

    def _unary(self, concurrency: int, seconds: float) -> Phase:
        split = _split(concurrency, self.pool.size)
        chunk = self.traffic.peek(int(seconds * UNARY_MAX_TPS) + 16 * concurrency)
        start_at = time.time() + START_DELAY
        tasks = [
            UnaryTask(self.server.target, threads, chunk[i :: len(split)], start_at, seconds)
            for i, threads in enumerate(split)
        ]
        shape = " + ".join(f"{n}" for n in split) + (" thread" if concurrency == 1 else " threads")
        return self._measure("unary", concurrency, shape, tasks, start_at, seconds)

    def _paced(self, terminals: int, seconds: float) -> Phase:
        """Light load: closed-loop callers that think PACE_SECONDS (mean) between calls."""
        split = _split(terminals, self.pool.size)
        chunk = self.traffic.peek(int(seconds * terminals / PACE_SECONDS * 2) + 16 * terminals)
        start_at = time.time() + START_DELAY
        target = self.server.target
        tasks = [
            UnaryTask(target, n, chunk[i :: len(split)], start_at, seconds, PACE_SECONDS)
            for i, n in enumerate(split)
        ]
        shape = f"{terminals} terminals, {PACE_SECONDS * 1000:g} ms mean think time"
        return self._measure("paced", terminals, shape, tasks, start_at, seconds)

    def _stream(self, streams: int, window: int, seconds: float) -> Phase:
        split = _split(streams, self.pool.size)
        chunk = self.traffic.peek(int(seconds * STREAM_MAX_TPS) + 2 * streams * window)
        start_at = time.time() + START_DELAY
        tasks = [
            StreamTask(self.server.target, n, window, chunk[i :: len(split)], start_at, seconds)
            for i, n in enumerate(split)
        ]
        shape = f"{streams} stream{'s' if streams > 1 else ''} × {window} in flight"
        return self._measure("stream", streams * window, shape, tasks, start_at, seconds)

    def _batch(self, calls: int, size: int, seconds: float) -> Phase:
        """``calls`` closed-loop ScreenBatch callers, ``size`` consecutive transactions per
        call; batch k goes to client process k mod (processes used). The transport floor
        gets a few batches per caller to send over and over: it keeps no state, and fresh
        traffic for its 100k+ TPS would take the parent longer to serialize than to send."""
        split = _split(calls, self.pool.size)
        repeat = self.server.spec.echo
        count = ECHO_BATCHES * calls if repeat else int(seconds * BATCH_MAX_TPS) // size + 2 * calls
        chunk = self.traffic.peek(count * size)
        batches = [
            (size, frame_batch(chunk[i : i + size]))
            for i in range(0, len(chunk) - size + 1, size)  # full batches only
        ]
        start_at = time.time() + START_DELAY
        tasks = [
            BatchTask(self.server.target, n, batches[i :: len(split)], start_at, seconds, repeat)
            for i, n in enumerate(split)
        ]
        shape = f"{calls} call{'s' if calls > 1 else ''} × {size} tx"
        largest = max((len(b) for _, b in batches), default=0)
        return self._measure("batch", calls * size, shape, tasks, start_at, seconds, size, largest)

    def _measure(
        self,
        kind: str,
        concurrency: int,
        shape: str,
        tasks: Sequence[Task],
        start_at: float,
        seconds: float,
        batch: int = 1,
        max_request_bytes: int = 0,
    ) -> Phase:
        """Hand the tasks out, sample CPU of both sides exactly over [start, start+seconds]."""
        clients = self.pool.cpu[: len(tasks)]
        self.pool.submit(tasks)
        handled_before = self.server.handler_totals()  # before any request of this phase
        _sleep_until(start_at)
        server_before = self.server.cpu_seconds()
        client_before = sum(process_seconds(p) for p in clients)
        foreign = ForeignLoad([self.server.process, *self.others, *clients])
        _sleep_until(start_at + seconds)
        server_cpu = self.server.cpu_seconds() - server_before
        client_cpu = sum(process_seconds(p) for p in clients) - client_before
        foreign_cores = foreign.cores()
        results = self.pool.collect(len(tasks), timeout=seconds + 60)
        handled_after = self.server.handler_totals()
        self.traffic.advance(max(r.consumed for r in results) * len(tasks))
        latencies = [v for r in results for v in r.latencies_ns]
        transactions = sum(r.transactions for r in results)
        elapsed = max(r.elapsed for r in results)
        errors: Counter[str] = Counter()
        decisions: Counter[str] = Counter()
        for result in results:
            errors.update(result.errors)
            decisions.update(result.decisions)
        notes = []
        if any(r.exhausted for r in results):
            notes.append("traffic ran out early")
        if foreign_cores > FOREIGN_WARNING:
            notes.append(f"other processes used {foreign_cores:.2f} cores")
        if max(r.late for r in results) > 0.05:
            notes.append(f"a client started {max(r.late for r in results) * 1000:.0f} ms late")
        handler_us = math.nan
        if handled_before is not None and handled_after is not None:
            calls = handled_after[1] - handled_before[1]
            if calls > 0:
                handler_us = (handled_after[0] - handled_before[0]) / calls * 1e6
        return Phase(
            spec=self.server.spec,
            kind=kind,
            concurrency=concurrency,
            shape=shape,
            latency=Latency.of(latencies),
            tps=transactions / elapsed if elapsed > 0 else 0.0,
            seconds=seconds,
            server_cores=server_cpu / seconds,
            client_cores=client_cpu / seconds,
            handler_us=handler_us,
            foreign_cores=foreign_cores,
            errors=errors,
            decisions=decisions,
            notes=tuple(notes),
            transactions=transactions,
            in_window=sum(r.in_window for r in results),
            batch=batch,
            max_request_bytes=max_request_bytes,
            max_reply_bytes=max(r.max_reply_bytes for r in results),
        )


@dataclass(frozen=True)
class Shape:
    """One load shape, measured on every server in turn."""

    kind: str  # "unary", "stream" or "batch"
    size: int  # client threads (unary), streams or ScreenBatch calls in flight
    window: int  # messages in flight per stream, or transactions per batch
    seconds: float
    products_only: bool = False  # not worth running on the transport floor

    def label(self) -> str:
        if self.kind == "unary":
            return f"unary, concurrency {self.size} for {self.seconds:g} s"
        if self.kind == "paced":
            return f"unary, {self.size} paced terminals for {self.seconds:g} s"
        if self.kind == "batch":
            return f"ScreenBatch, {self.size} × {self.window} tx in flight for {self.seconds:g} s"
        return f"streaming, {self.size} × {self.window} in flight for {self.seconds:g} s"


def shapes(plan: Plan) -> list[Shape]:
    unary = [Shape("unary", c, 0, plan.latency_seconds) for c in plan.concurrencies]
    unary.append(Shape("paced", PACED_TERMINALS, 0, plan.latency_seconds))
    sustained = Shape("unary", plan.sustained_concurrency, 0, plan.sustained_seconds, True)
    streams = [Shape("stream", n, w, plan.stream_seconds) for n, w in plan.stream_shapes]
    batches = [Shape("batch", n, b, plan.batch_seconds) for n, b in plan.batch_shapes]
    return [*unary, sustained, *streams, *batches]


def bench_servers(
    plan: Plan,
    requests: Sequence[pb.ScreenRequest],
    pool: ClientPool,
    run: str,
    retry: RetryBudget,
) -> Results:
    """Sections 2-6. Every server is up at once (an idle one costs nothing) and each load
    shape is measured on all of them in turn, the order rotating, so drift or a busy
    neighbour hurts every contender alike instead of whichever ran last."""
    results: Results = {spec: [] for spec in plan.servers}
    with contextlib.ExitStack() as stack:
        benches: dict[ServerSpec, ServerBench] = {}
        for spec in plan.servers:
            name = f"bench-{spec.stack}-{spec.predictor}-"
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=name)))
            server = ServerProcess(spec, directory)
            stack.callback(server.stop)  # runs before the directory is removed
            progress(f"{spec.name}: starting server")
            server.start()
            traffic = TrafficCursor(
                requests, f"{run}.{spec.stack}.{spec.predictor}", wrap=spec.echo
            )
            benches[spec] = ServerBench(server, pool, traffic, retry)
        for bench in benches.values():
            bench.others = [b.server.process for b in benches.values() if b is not bench]
        for spec, bench in benches.items():
            progress(f"{spec.name}: warm-up ({plan.warmup_seconds:g} s)")
            bench.warm_up(plan.warmup_seconds)
        for index, shape in enumerate(shapes(plan)):
            order = list(benches)[index % len(benches) :] + list(benches)[: index % len(benches)]
            for spec in order:
                if shape.products_only and spec.echo:
                    continue
                if not spec.tuned and shape.kind not in ("unary", "paced"):
                    continue  # the settings A/B needs the unary shapes only
                progress(f"{spec.name}: {shape.label()}")
                results[spec].append(benches[spec].measure(shape))
    return results


Results = dict[ServerSpec, list[Phase]]
