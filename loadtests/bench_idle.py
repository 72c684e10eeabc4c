"""Does a fresh Screen answer as fast with the gateway's idle callers at their limits?

    python -m loadtests.bench_idle [--calls 2000] [--rounds 3] [--streams N] [--half-open M]

Starts a throwaway gateway (pinned to the first CPU as in production; this client runs on
the other), then alternates rounds: `--calls` sequential Screen calls with no idle callers,
then the same with `--streams` ScreenStream calls open and silent (default: the stream limit,
`server.max_streams`) and `--half-open` unary Screen calls whose HTTP/2 HEADERS arrived but
whose request never will. Prints medians and ratios against the round without idle callers;
never asserts a time. `--streams 0 --half-open 0` measures only the common path (to compare
two versions of the gateway on the same machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from fraudscreen.config import ServerConfig
from fraudscreen.v1 import screening_pb2 as pb
from fraudscreen.v1 import screening_pb2_grpc as pb_grpc
from loadtests.gateway import local_gateway
from loadtests.half_open import HalfOpenPeer

SCREEN_PATH = "/fraudscreen.v1.Screening/Screen"
SETTLE_S = 1.0  # let the gateway admit the idle callers before measuring
PAN = "4000000000000002"


class IdleCallers:
    """Silent ScreenStream calls and half-open unary calls, held until `close`."""

    def __init__(self, channel: grpc.Channel, port: int, streams: int, half_open: int) -> None:
        self._release = threading.Event()
        stub = pb_grpc.ScreeningStub(channel)
        self._streams = [stub.ScreenStream(self._silence()) for _ in range(streams)]
        self._peer = HalfOpenPeer(port) if half_open else None
        for _ in range(half_open):
            assert self._peer is not None
            self._peer.open_call(SCREEN_PATH)

    def _silence(self) -> Iterator[pb.ScreenRequest]:
        self._release.wait()
        return
        yield  # a generator that sends nothing until released

    def close(self) -> None:
        self._release.set()
        for stream in self._streams:
            stream.cancel()  # type: ignore[no-untyped-call]
        if self._peer is not None:
            self._peer.close()


def screen_latencies_us(stub: pb_grpc.ScreeningStub, tag: str, calls: int) -> list[float]:
    now = int(time.time()) - 60
    out: list[float] = []
    for i in range(calls):
        request = pb.ScreenRequest(
            transaction_id=f"{tag}-{i}",
            terminal_id=f"T{i % 8}",
            pan=PAN,
            amount_minor=1000 + i % 5000,
            currency="EUR",
            timestamp=Timestamp(seconds=now),
            entry_mode=pb.ENTRY_MODE_CHIP,
        )
        started = time.perf_counter()
        stub.Screen(request, timeout=30)
        out.append((time.perf_counter() - started) * 1e6)
    return out


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(calls: int, rounds: int, streams: int, half_open: int) -> str:
    cpus = sorted(os.sched_getaffinity(0))
    gateway_cpus = {cpus[0]}
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus[1:]))
    baseline: list[list[float]] = []
    loaded: list[list[float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-idle-") as scratch,
        local_gateway(Path(scratch) / "gateway.log", gateway_cpus) as gateway,
        grpc.insecure_channel(gateway.address) as channel,
    ):
        stub = pb_grpc.ScreeningStub(channel)
        port = int(gateway.address.rsplit(":", 1)[1])
        screen_latencies_us(stub, "warm", calls // 4)
        for r in range(rounds):
            baseline.append(screen_latencies_us(stub, f"a{r}", calls))
            if streams or half_open:
                idle = IdleCallers(channel, port, streams, half_open)
                time.sleep(SETTLE_S)
                try:
                    loaded.append(screen_latencies_us(stub, f"b{r}", calls))
                finally:
                    idle.close()
                time.sleep(SETTLE_S)
    rows = [("no idle callers", baseline)]
    if loaded:
        rows.append((f"{streams} idle streams + {half_open} half-open Screen calls", loaded))
    base_median = statistics.median(statistics.median(r) for r in baseline)
    lines = [
        f"fresh unary Screen, c=1, {calls} calls x {rounds} rounds (interleaved); "
        "medians of the per-round values",
        "",
        "| idle callers | p50 µs | p90 µs | p99 µs | p50 vs none |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in rows:
        p50 = statistics.median(statistics.median(r) for r in runs)
        p90 = statistics.median(_quantile(r, 0.9) for r in runs)
        p99 = statistics.median(_quantile(r, 0.99) for r in runs)
        lines.append(
            f"| {name} | {p50:,.0f} | {p90:,.0f} | {p99:,.0f} | {p50 / base_median:.2f}× |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    defaults = ServerConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--calls", type=int, default=2000, help="timed fresh Screen calls per round (2000)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds, with and without (3)"
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=getattr(defaults, "max_streams", 64),
        help="silent ScreenStream calls held open (server.max_streams)",
    )
    parser.add_argument(
        "--half-open", type=int, default=16, help="Screen calls whose request never comes (16)"
    )
    args = parser.parse_args(argv)
    print(run(args.calls, args.rounds, args.streams, args.half_open))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
