"""`fraudscreen replay`: drive a running gateway with simulated terminal traffic.

Transactions are sent in time order, shifted by whole weeks so the last one lands just
before now (weekday and hour are preserved, so features match the simulation). Every
simulated fraud is reported back with ReportOutcome right after it is screened, the way
an issuer's chargeback would reach the gateway. The summary compares decisions with the
simulator's labels.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Never

import grpc
import numpy as np
import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp
from tqdm import tqdm

from fraudscreen import history
from fraudscreen.rpc.channels import client_channel
from fraudscreen.rpc.readiness import FAST_RECONNECT, wait_until_serving
from fraudscreen.simulate import SimulationConfig, simulate
from fraudscreen.v1 import screening_pb2 as pb
from fraudscreen.v1 import screening_pb2_grpc as pb_grpc

WEEK = 7 * 86_400
SCREENING_SERVICE = pb.DESCRIPTOR.services_by_name["Screening"].full_name  # health name
_MODES = {
    m: getattr(pb, f"ENTRY_MODE_{m.upper()}")
    for m in ("chip", "contactless", "magstripe", "manual", "fallback")
}
DEMO_SIMULATION = SimulationConfig(customers=1000, terminals=2000, seed=0)


@dataclass(frozen=True)
class ReplayOptions:
    target: str = "127.0.0.1:50051"
    days: int = 38
    limit: int | None = None
    mode: str = "unary"  # unary | stream | batch
    batch_size: int = 100
    concurrency: int = 4
    stream_window: int = 64
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    timeout: float = 5.0
    report_outcomes: bool = True
    wait: float = 60.0  # seconds to wait for the gateway to report SERVING


@dataclass
class ReplayStats:
    decisions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_us: list[float] = field(default_factory=list)
    caught: int = 0  # frauds answered REVIEW or DECLINE
    missed: int = 0
    false_alarms: int = 0  # genuine answered REVIEW or DECLINE
    genuine: int = 0
    stand_in: int = 0
    batch_mode: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, fraud: bool, decision: str, stand_in: bool, latency_us: float) -> None:
        flagged = decision in ("REVIEW", "DECLINE")
        with self.lock:
            self.decisions[decision] += 1
            self.latencies_us.append(latency_us)
            self.stand_in += stand_in
            if fraud:
                self.caught += flagged
                self.missed += not flagged
            else:
                self.genuine += 1
                self.false_alarms += flagged

    def error(self, code: str) -> None:
        with self.lock:
            self.errors[code] += 1


def load_traffic(history_path: Path | None, days: int, limit: int | None) -> pd.DataFrame:
    """The last `days` of the history (or of a demo simulation), time-shifted to end now."""
    frame = (
        history.load_history(history_path)
        if history_path is not None
        else history.validate_history(simulate(DEMO_SIMULATION, progress=True))
    )
    if history.CARD_PAN not in frame:
        raise ValueError("replay needs a CARD_PAN column (use `fraudscreen simulate` output)")
    end = frame[history.TX_DATETIME].max()
    frame = frame[frame[history.TX_DATETIME] > end - pd.Timedelta(days=days)]
    if limit is not None:
        frame = frame.iloc[:limit]
    seconds = frame[history.TX_DATETIME].to_numpy().astype("datetime64[s]").astype(np.int64)
    now = int(time.time()) - 60
    shift = math.ceil((now - int(seconds.max())) / WEEK) * WEEK if len(seconds) else 0
    if len(seconds) and seconds.max() + shift > now:
        shift -= WEEK
    shifted: pd.DataFrame = frame.assign(EPOCH_SECONDS=seconds + shift).reset_index(drop=True)
    return shifted


def requests(frame: pd.DataFrame) -> Iterator[tuple[pb.ScreenRequest, bool]]:
    mcc = frame[history.MCC].tolist() if history.MCC in frame else [None] * len(frame)
    modes = (
        frame[history.ENTRY_MODE].tolist() if history.ENTRY_MODE in frame else [None] * len(frame)
    )
    columns = zip(
        frame[history.TRANSACTION_ID].tolist(),
        frame[history.TERMINAL_ID].tolist(),
        frame[history.CARD_PAN].tolist(),
        frame[history.AMOUNT_MINOR].tolist(),
        frame[history.CURRENCY].tolist(),
        frame["EPOCH_SECONDS"].tolist(),
        mcc,
        modes,
        frame[history.TX_FRAUD].tolist(),
        strict=True,
    )
    for tx_id, terminal, pan, amount, currency, seconds, code, mode, fraud in columns:
        request = pb.ScreenRequest(
            transaction_id=f"tx-{tx_id}",
            terminal_id=f"T{terminal}",
            pan=str(pan),
            amount_minor=int(amount),
            currency=str(currency),
            timestamp=Timestamp(seconds=int(seconds)),
            entry_mode=_MODES.get(str(mode), pb.ENTRY_MODE_UNSPECIFIED),
        )
        if code is not None and not pd.isna(code):
            request.merchant_category_code = int(code)
        yield request, bool(fraud)


def open_channel(options: ReplayOptions) -> grpc.Channel:
    return client_channel(
        options.target,
        ca_file=options.ca_file,
        cert_file=options.cert_file,
        key_file=options.key_file,
        options=FAST_RECONNECT,
    )


def _report(
    stub: pb_grpc.ScreeningStub, request: pb.ScreenRequest, timeout: float, stats: ReplayStats
) -> None:
    try:
        stub.ReportOutcome(
            pb.ReportOutcomeRequest(
                transaction_id=request.transaction_id,
                terminal_id=request.terminal_id,
                outcome=pb.OUTCOME_CONFIRMED_FRAUD,
            ),
            timeout=timeout,
        )
    except grpc.RpcError as exc:
        stats.error(f"ReportOutcome:{exc.code().name}")


def _record(
    stub: pb_grpc.ScreeningStub,
    request: pb.ScreenRequest,
    fraud: bool,
    response: pb.ScreenResponse,
    latency_us: float,
    options: ReplayOptions,
    stats: ReplayStats,
) -> None:
    """Count an answer against the label; report a fraud back as the issuer would."""
    stats.add(
        fraud,
        pb.Decision.Name(response.decision).removeprefix("DECISION_"),
        response.stand_in,
        latency_us,
    )
    if fraud and options.report_outcomes:
        _report(stub, request, options.timeout, stats)


def _unary_worker(
    stub: pb_grpc.ScreeningStub,
    work: queue.Queue[tuple[pb.ScreenRequest, bool] | None],
    options: ReplayOptions,
    stats: ReplayStats,
    bar: tqdm[Never],
) -> None:
    while (item := work.get()) is not None:
        request, fraud = item
        began = time.perf_counter()
        try:
            response = stub.Screen(request, timeout=options.timeout)
        except grpc.RpcError as exc:
            stats.error(exc.code().name)
        else:
            _record(
                stub, request, fraud, response, (time.perf_counter() - began) * 1e6, options, stats
            )
        bar.update(1)


def _run_unary(
    stub: pb_grpc.ScreeningStub,
    frame: pd.DataFrame,
    options: ReplayOptions,
    stats: ReplayStats,
    bar: tqdm[Never],
) -> None:
    # Terminals are sharded over workers so each terminal's transactions stay in order.
    queues: list[queue.Queue[tuple[pb.ScreenRequest, bool] | None]] = [
        queue.Queue(maxsize=256) for _ in range(options.concurrency)
    ]
    workers = [
        threading.Thread(target=_unary_worker, args=(stub, q, options, stats, bar), daemon=True)
        for q in queues
    ]
    for worker in workers:
        worker.start()
    for request, fraud in requests(frame):
        queues[hash(request.pan) % options.concurrency].put((request, fraud))
    for q in queues:
        q.put(None)
    for worker in workers:
        worker.join()


def _run_stream(
    stub: pb_grpc.ScreeningStub,
    frame: pd.DataFrame,
    options: ReplayOptions,
    stats: ReplayStats,
    bar: tqdm[Never],
) -> None:
    sent: queue.Queue[tuple[pb.ScreenRequest, bool, float]] = queue.Queue()
    window = threading.Semaphore(options.stream_window)

    def produce() -> Iterator[pb.ScreenRequest]:
        for request, fraud in requests(frame):
            window.acquire()
            sent.put((request, fraud, time.perf_counter()))
            yield request

    for reply in stub.ScreenStream(produce()):
        request, fraud, began = sent.get()
        window.release()
        if reply.HasField("error"):
            stats.error(str(reply.error.code))
        else:
            _record(
                stub,
                request,
                fraud,
                reply.response,
                (time.perf_counter() - began) * 1e6,
                options,
                stats,
            )
        bar.update(1)


def _run_batch(
    stub: pb_grpc.ScreeningStub,
    frame: pd.DataFrame,
    options: ReplayOptions,
    stats: ReplayStats,
    bar: tqdm[Never],
) -> None:
    items = list(requests(frame))
    for start in range(0, len(items), options.batch_size):
        chunk = items[start : start + options.batch_size]
        began = time.perf_counter()
        try:
            reply = stub.ScreenBatch(
                pb.ScreenBatchRequest(requests=[r for r, _ in chunk]), timeout=options.timeout
            )
        except grpc.RpcError as exc:
            for _ in chunk:
                stats.error(exc.code().name)
            bar.update(len(chunk))
            continue
        elapsed_us = (time.perf_counter() - began) * 1e6
        for (request, fraud), result in zip(chunk, reply.results, strict=True):
            if result.HasField("error"):
                stats.error(str(result.error.code))
                continue
            _record(stub, request, fraud, result.response, elapsed_us, options, stats)
        bar.update(len(chunk))


def replay(frame: pd.DataFrame, options: ReplayOptions) -> tuple[ReplayStats, float]:
    stats = ReplayStats(batch_mode=options.mode == "batch")
    with open_channel(options) as channel:
        wait_until_serving(
            channel,
            options.target,
            service=SCREENING_SERVICE,
            wait_seconds=options.wait,
            what="gateway",
            hint="start one with `fraudscreen serve`, point --target at it, or wait "
            "longer with --wait",
        )
        stub = pb_grpc.ScreeningStub(channel)
        began = time.perf_counter()
        with tqdm(
            total=len(frame),
            unit="tx",
            desc=f"replay ({options.mode})",
            file=sys.stderr,
            smoothing=0.1,
        ) as bar:
            if options.mode == "stream":
                _run_stream(stub, frame, options, stats, bar)
            elif options.mode == "batch":
                _run_batch(stub, frame, options, stats, bar)
            else:
                _run_unary(stub, frame, options, stats, bar)
        return stats, time.perf_counter() - began


def summarize(stats: ReplayStats, seconds: float, frame: pd.DataFrame) -> str:
    lat = np.asarray(stats.latencies_us) if stats.latencies_us else np.zeros(1)
    frauds = stats.caught + stats.missed
    first = frame[history.TX_DATETIME].min()
    last = frame[history.TX_DATETIME].max()
    lines = [
        f"replayed {len(frame):,} simulated transactions ({first:%Y-%m-%d} .. {last:%Y-%m-%d}, "
        f"shifted to end now) in {seconds:.1f} s = {len(frame) / max(seconds, 1e-9):,.0f} tx/s",
        "decisions: " + ", ".join(f"{k} {v:,}" for k, v in sorted(stats.decisions.items())),
        f"stand-in answers: {stats.stand_in:,}",
        "client latency µs: "
        + ", ".join(f"p{q:g} {np.percentile(lat, q):,.0f}" for q in (50, 90, 99, 99.9)),
        f"fraud caught (REVIEW/DECLINE): {stats.caught:,} of {frauds:,} "
        f"({stats.caught / max(frauds, 1):.1%}); missed {stats.missed:,}",
        f"genuine flagged: {stats.false_alarms:,} of {stats.genuine:,} "
        f"({stats.false_alarms / max(stats.genuine, 1):.2%})",
        "errors: " + (", ".join(f"{k} {v:,}" for k, v in stats.errors.items()) or "none"),
    ]
    return "\n".join(lines)


def run(history_path: Path | None, options: ReplayOptions) -> int:
    frame = load_traffic(history_path, options.days, options.limit)
    stats, seconds = replay(frame, options)
    print(summarize(stats, seconds, frame))
    return 1 if stats.errors else 0
