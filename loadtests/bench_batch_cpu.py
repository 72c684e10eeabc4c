"""ScreenBatch's own CPU per transaction, in-process: the handler without the gRPC transport.

    python -m loadtests.bench_batch_cpu [--batches N] [--size 100] [--profile FILE]
    python -m loadtests.bench_batch_cpu --server SECONDS [--size 100]

Issue 16's first target is the gateway's CPU per transaction inside ``ScreenBatch`` (1 x
100). ``bench_service --quick`` reads it off a real server in ~2 minutes, mixed with the
gRPC stack (~4 µs) and a shared machine's noise; this loop isolates what our code costs,
so one change can be measured in seconds. It runs what the servicer runs per call on
pre-serialized batches of the simulated traffic (after warm-up, the shipped model, request
logging as the load tests' gateway has it): parse the bytes, ``ScreenBatch``, serialize the
answer; then it waits for the journal writer to commit everything, so the writer thread's
CPU is counted too (``time.process_time``: all threads of this process). ``--profile``
writes a cProfile of the timed loop (handler thread only) for ``python -m pstats``.

``--server`` measures the same figure off a real ``fraudscreen serve`` (its own process,
pinned as shipped) in seconds instead of bench_service's minutes: one Python caller sends
one batch after another, and the server process's CPU over the window is divided by the
transactions answered. This VM's speed moves up to 2x within a day, so compare runs made
minutes apart.
"""

from __future__ import annotations

import argparse
import cProfile
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fraudscreen.rpc.parsing import lenient_parser
from fraudscreen.v1 import screening_pb2 as pb
from loadtests.bench.clients import BatchTask, run_task
from loadtests.bench.in_process import engine_only_gateway
from loadtests.bench.plan import (
    BATCH_MAX_TPS,
    IN_PROCESS_WARMUP,
    START_DELAY,
    SYNC_NATIVE,
    progress,
)
from loadtests.bench.servers import ServerProcess
from loadtests.bench.traffic import assign_ids, frame_batch, load_requests

SERVER_WARMUP_BATCHES = 100
SERVER_WARMUP_LIMIT = 60.0  # s; the warm-up batches run out long before
SERVER_SETTLE = 0.3  # s


class _Context:
    """What ScreenBatch asks of a gRPC context: no deadline, a peer, abort raises."""

    def time_remaining(self) -> float:
        return float("inf")

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"

    def abort_with_status(self, status: object) -> None:
        raise RuntimeError(f"aborted: {status}")


def _batches(requests: Sequence[pb.ScreenRequest], size: int) -> list[bytes]:
    return [
        frame_batch([r.SerializeToString() for r in requests[i : i + size]])
        for i in range(0, len(requests) - size + 1, size)
    ]


def run(batches: int, size: int, profile: Path | None) -> int:
    from fraudscreen.logs import configure_logging

    configure_logging(json=True, level="info")  # as the gateway: non-approvals are logged
    progress("loading simulated traffic")
    requests = load_requests(laps=1)[: IN_PROCESS_WARMUP + batches * size]
    assign_ids(requests, "cpu")
    warmup = _batches(requests[:IN_PROCESS_WARMUP], size)
    timed = _batches(requests[IN_PROCESS_WARMUP:], size)
    parse = lenient_parser(pb.ScreenBatchRequest)
    context = _Context()
    with tempfile.TemporaryDirectory(prefix="bench-batch-cpu-") as tmp:
        gateway = engine_only_gateway(Path(tmp), "native")
        handler = gateway.servicer.ScreenBatch
        decisions = 0
        try:
            for data in warmup:
                handler(parse(data), context).SerializeToString()  # type: ignore[arg-type]
            gateway.journal.flush(timeout=60)
            profiler = cProfile.Profile() if profile is not None else None
            cpu, thread, wall = time.process_time(), time.thread_time(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            for data in timed:
                answer = handler(parse(data), context)  # type: ignore[arg-type]
                answer.SerializeToString()
                decisions += len(answer.results)
            if profiler is not None:
                profiler.disable()
            handler_cpu = time.thread_time() - thread
            gateway.journal.flush(timeout=60)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if profiler is not None and profile is not None:
                profiler.dump_stats(str(profile))
        finally:
            gateway.stop(grace=0)
    count = len(timed) * size
    assert decisions == count, f"{decisions} answers for {count} transactions"
    print(
        f"{len(timed)} batches x {size}: process CPU {cpu / count * 1e6:.1f} µs/tx "
        f"(handler thread {handler_cpu / count * 1e6:.1f}, writer and rest "
        f"{(cpu - handler_cpu) / count * 1e6:.1f}), wall {wall / count * 1e6:.1f} µs/tx"
    )
    return 0


def run_server(seconds: float, size: int) -> int:
    """One closed-loop caller (bench_service's own client loop) against `fraudscreen serve`;
    server CPU per transaction answered."""
    progress("loading simulated traffic")
    requests = load_requests()[: int(seconds * BATCH_MAX_TPS) + SERVER_WARMUP_BATCHES * size]
    assign_ids(requests, f"server-{time.time_ns()}")
    batches = [(size, batch) for batch in _batches(requests, size)]
    with tempfile.TemporaryDirectory(prefix="bench-batch-server-") as tmp:
        server = ServerProcess(SYNC_NATIVE, Path(tmp))
        progress("starting fraudscreen serve")
        server.start()
        try:
            warmup = batches[:SERVER_WARMUP_BATCHES]  # sent until they run out
            run_task(BatchTask(server.target, 1, warmup, time.time(), SERVER_WARMUP_LIMIT))
            progress(f"timing {seconds:g} s of 1 caller x {size} tx")
            cpu = server.cpu_seconds()
            timed = batches[SERVER_WARMUP_BATCHES:]
            result = run_task(
                BatchTask(server.target, 1, timed, time.time() + START_DELAY, seconds)
            )
            time.sleep(SERVER_SETTLE)  # the journal writer commits the last group
            cpu = server.cpu_seconds() - cpu
        finally:
            server.stop()
    if result.exhausted:
        print("the traffic ran out before the time was up", file=sys.stderr)
        return 1
    if result.errors or result.transactions != result.consumed:
        print(f"not every transaction was answered: {dict(result.errors)}", file=sys.stderr)
        return 1
    answered, wall = result.transactions, result.elapsed
    print(
        f"fraudscreen serve, 1 caller x {size} tx for {wall:.1f} s: {answered:,} tx, "
        f"{answered / wall:,.0f} tx/s, server CPU {cpu / answered * 1e6:.1f} µs/tx"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench_batch_cpu",
        description="ScreenBatch CPU per transaction in-process (no gRPC transport).",
    )
    parser.add_argument("--batches", type=int, default=300, help="timed batches (300)")
    parser.add_argument("--size", type=int, default=100, help="transactions per batch (100)")
    parser.add_argument("--profile", type=Path, help="write a cProfile of the timed loop here")
    parser.add_argument(
        "--server", type=float, metavar="SECONDS", help="time a real fraudscreen serve instead"
    )
    args = parser.parse_args(argv)
    if args.server is not None:
        if args.server <= 0:
            parser.error("--server: the seconds to time must be > 0")
        return run_server(args.server, args.size)
    return run(args.batches, args.size, args.profile)


if __name__ == "__main__":
    sys.exit(main())
