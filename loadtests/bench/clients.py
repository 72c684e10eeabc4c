"""Client processes: closed-loop unary, streaming and ScreenBatch callers, each with its own
tally of latencies, errors and decisions."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import random
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import grpc
import psutil

from fraudscreen.v1 import screening_pb2 as pb
from loadtests.bench.plan import CALL_TIMEOUT, SCREEN, SCREEN_BATCH, SCREEN_STREAM


@dataclass(frozen=True)
class UnaryTask:
    target: str
    threads: int
    payloads: list[bytes]
    start_at: float  # time.time() when every client starts sending
    seconds: float
    pace: float = 0.0  # mean think time (s) before each request; 0: closed loop


@dataclass(frozen=True)
class StreamTask:
    target: str
    streams: int
    window: int  # messages in flight per stream
    payloads: list[bytes]
    start_at: float
    seconds: float


@dataclass(frozen=True)
class BatchTask:
    target: str
    calls: int  # ScreenBatch calls in flight (one thread and channel each)
    batches: list[tuple[int, bytes]]  # (transactions, serialized ScreenBatchRequest)
    start_at: float
    seconds: float
    repeat: bool = False  # send the batches over and over (transport floor: no state)


Task = UnaryTask | StreamTask | BatchTask


@dataclass
class WorkerResult:
    latencies_ns: list[int]  # per call (unary, batch) or per message (stream)
    consumed: int  # transactions taken, answered or not
    elapsed: float  # from start_at to the last answer
    late: float  # how late after start_at this worker began
    transactions: int  # transactions answered (a result or an in-band error)
    in_window: int  # of which answered by start_at + seconds, when CPU stops being sampled
    max_reply_bytes: int
    errors: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    exhausted: bool = False


class _Tally:
    """One thread's results; merged after the threads end, so no lock per request."""

    def __init__(self, end: float) -> None:
        self.latencies_ns: list[int] = []
        self.errors: Counter[str] = Counter()
        self.decisions: Counter[str] = Counter()
        self.consumed = 0
        self.transactions = 0
        self.in_window = 0
        self.max_reply_bytes = 0
        self.last_answer = 0.0
        self.exhausted = False
        # the phase's end on the perf_counter_ns clock the latencies are taken with
        self.end_ns = time.perf_counter_ns() + int((end - time.time()) * 1e9)

    def answered(self, count: int, at_ns: int) -> None:
        self.transactions += count
        if at_ns <= self.end_ns:
            self.in_window += count

    def answer(self, response: pb.ScreenResponse) -> None:
        self.decisions[pb.Decision.Name(response.decision).removeprefix("DECISION_")] += 1
        if response.stand_in:
            self.errors["STAND_IN"] += 1

    def item(self, reply: pb.ScreenStreamResponse) -> None:
        if reply.HasField("error"):
            self.errors[f"code {reply.error.code}"] += 1
        else:
            self.answer(reply.response)


def _sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        time.sleep(delay)


def _code(exc: grpc.RpcError) -> str:
    code = exc.code() if isinstance(exc, grpc.Call) else None
    return code.name if code is not None else "RPC_ERROR"


def _unary_loop(
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes],
    payloads: Iterator[bytes],
    start_at: float,
    end: float,
    pace: float = 0.0,
) -> _Tally:
    tally = _Tally(end)
    clock = time.perf_counter_ns
    think = random.Random(threading.get_ident()).expovariate
    _sleep_until(start_at)
    while time.time() < end:
        if pace > 0:
            time.sleep(think(1 / pace))
        payload = next(payloads, None)  # shared by the process's threads; atomic under GIL
        if payload is None:
            tally.exhausted = True
            break
        tally.consumed += 1
        began = clock()
        try:
            raw: bytes = call(payload, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            tally.errors[_code(exc)] += 1
            continue
        done = clock()
        tally.latencies_ns.append(done - began)
        tally.answered(1, done)
        tally.max_reply_bytes = max(tally.max_reply_bytes, len(raw))
        tally.answer(pb.ScreenResponse.FromString(raw))
    tally.last_answer = time.time()
    return tally


def _stream_loop(
    call: grpc.StreamStreamMultiCallable[bytes, bytes],
    payloads: Iterator[bytes],
    window: int,
    start_at: float,
    end: float,
) -> _Tally:
    tally = _Tally(end)
    clock = time.perf_counter_ns
    slots = threading.Semaphore(window)
    sent_at: deque[int] = deque()

    def produce() -> Iterator[bytes]:
        for payload in payloads:
            slots.acquire()
            if time.time() >= end:
                return
            tally.consumed += 1
            sent_at.append(clock())
            yield payload
        tally.exhausted = True

    _sleep_until(start_at)
    try:
        for raw in call(produce(), timeout=CALL_TIMEOUT + (end - start_at)):
            done = clock()
            tally.latencies_ns.append(done - sent_at.popleft())
            tally.answered(1, done)
            slots.release()
            tally.max_reply_bytes = max(tally.max_reply_bytes, len(raw))
            tally.item(pb.ScreenStreamResponse.FromString(raw))
    except grpc.RpcError as exc:
        tally.errors[f"stream {_code(exc)}"] += 1
    tally.last_answer = time.time()
    return tally


def _batch_loop(
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes],
    batches: Iterator[tuple[int, bytes]],
    start_at: float,
    end: float,
) -> _Tally:
    """Closed loop of ScreenBatch calls: the next batch goes when the previous answered.
    A call's latency is every one of its transactions' time in flight."""
    tally = _Tally(end)
    clock = time.perf_counter_ns
    _sleep_until(start_at)
    while time.time() < end:
        batch = next(batches, None)  # shared by the process's threads; atomic under GIL
        if batch is None:
            tally.exhausted = True
            break
        size, payload = batch
        tally.consumed += size
        began = clock()
        try:
            raw: bytes = call(payload, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            tally.errors[f"call {_code(exc)} ({size} tx)"] += 1
            continue
        done = clock()
        tally.latencies_ns.append(done - began)
        tally.max_reply_bytes = max(tally.max_reply_bytes, len(raw))
        results = pb.ScreenBatchResponse.FromString(raw).results
        tally.answered(len(results), done)
        if len(results) != size:
            tally.errors[f"{len(results)} results for {size} requests"] += 1
        for reply in results:
            tally.item(reply)
    tally.last_answer = time.time()
    return tally


def run_task(task: Task) -> WorkerResult:
    """Run one phase in this client process: threads (unary, batch) or streams, until the
    end."""
    end = task.start_at + task.seconds
    count = (
        task.threads
        if isinstance(task, UnaryTask)
        else task.streams
        if isinstance(task, StreamTask)
        else task.calls
    )
    channels = [grpc.insecure_channel(task.target) for _ in range(count)]  # one per terminal
    payloads = iter(task.payloads) if not isinstance(task, BatchTask) else iter(())
    batches: Iterator[tuple[int, bytes]] = iter(())
    if isinstance(task, BatchTask):
        batches = itertools.cycle(task.batches) if task.repeat else iter(task.batches)
    try:
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=10)
        tallies: list[_Tally] = []
        lock = threading.Lock()

        def run(channel: grpc.Channel) -> None:
            if isinstance(task, UnaryTask):
                tally = _unary_loop(
                    channel.unary_unary(SCREEN, None, None),
                    payloads,
                    task.start_at,
                    end,
                    task.pace,
                )
            elif isinstance(task, StreamTask):
                tally = _stream_loop(
                    channel.stream_stream(SCREEN_STREAM, None, None),
                    payloads,
                    task.window,
                    task.start_at,
                    end,
                )
            else:
                tally = _batch_loop(
                    channel.unary_unary(SCREEN_BATCH, None, None), batches, task.start_at, end
                )
            with lock:
                tallies.append(tally)

        threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in channels]
        for thread in threads:
            thread.start()
        late = max(0.0, time.time() - task.start_at)
        for thread in threads:
            thread.join()
    finally:
        for channel in channels:
            channel.close()
    result = WorkerResult(
        latencies_ns=[v for t in tallies for v in t.latencies_ns],
        consumed=sum(t.consumed for t in tallies),
        elapsed=max(t.last_answer for t in tallies) - task.start_at,
        late=late,
        transactions=sum(t.transactions for t in tallies),
        in_window=sum(t.in_window for t in tallies),
        max_reply_bytes=max(t.max_reply_bytes for t in tallies),
        exhausted=any(t.exhausted for t in tallies),
    )
    for tally in tallies:
        result.errors.update(tally.errors)
        result.decisions.update(tally.decisions)
    return result


def _client_main(connection: Connection) -> None:
    """A client process: run each task it is sent; ``None`` ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while (task := connection.recv()) is not None:
        connection.send(run_task(task))


class ClientPool:
    """Long-lived client processes. Spawned, not forked: the parent has gRPC loaded, and
    forking a process with gRPC state is unsafe."""

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[BaseProcess, Connection]] = []
        for _ in range(size):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_client_main, args=(child_end,), daemon=True)
            process.start()
            child_end.close()
            self._workers.append((process, parent_end))
        self.cpu = [psutil.Process(process.pid) for process, _ in self._workers]

    @property
    def size(self) -> int:
        return len(self._workers)

    def submit(self, tasks: Sequence[Task]) -> None:
        for (_, connection), task in zip(self._workers, tasks, strict=False):
            connection.send(task)

    def collect(self, count: int, timeout: float) -> list[WorkerResult]:
        results = []
        for process, connection in self._workers[:count]:
            if not connection.poll(timeout):
                raise TimeoutError(f"client process {process.pid} sent no result in {timeout} s")
            results.append(connection.recv())
        return results

    def close(self) -> None:
        for _process, connection in self._workers:
            with contextlib.suppress(OSError):  # already gone
                connection.send(None)
        for process, _ in self._workers:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
