"""The service benchmark's parsing and summaries, without running a benchmark: the numbers
in the README's performance tables come through these."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path

import grpc
import pytest
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from fraudscreen.v1 import screening_pb2 as pb
from loadtests.bench.clients import _Tally
from loadtests.bench.plan import (
    AIO_NATIVE,
    QUICK,
    SYNC_LIGHTGBM,
    SYNC_NATIVE,
    SYNC_UNTUNED,
    ServerSpec,
)
from loadtests.bench.report import PHASE_HEADER, _rows, _table, report_unary
from loadtests.bench.servers import ServerProcess, _AbortCapture, _Aborted
from loadtests.bench.shapes import Phase, Results, _split, shapes
from loadtests.bench.stats import Latency, ratio, us, verdict
from loadtests.bench.traffic import TrafficCursor, frame_batch, in_laps
from loadtests.bench.verdicts import _versus, report_sync_vs_aio


def _phase(spec: ServerSpec, kind: str, concurrency: int, tps: float, p50: float = 300.0) -> Phase:
    return Phase(
        spec=spec,
        kind=kind,
        concurrency=concurrency,
        shape=f"{concurrency} threads",
        latency=Latency(count=1000, p50=p50, p99=p50 * 3, p999=p50 * 5, mean=p50 * 1.1),
        tps=tps,
        seconds=2.0,
        server_cores=1.0,
        client_cores=0.5,
        handler_us=42.0,
        foreign_cores=0.0,
        errors=Counter({"UNAVAILABLE": 3}),
        decisions=Counter({"APPROVE": 990}),
        notes=(),
        transactions=1000,
        in_window=1000,
    )


def test_latency_summarizes_nanoseconds_as_microsecond_percentiles() -> None:
    latency = Latency.of(list(range(1_000, 101_000, 1_000)))  # 1..100 µs
    assert latency.count == 100
    assert latency.p50 == pytest.approx(50.5)
    assert latency.p99 == pytest.approx(99.01)
    assert latency.mean == pytest.approx(50.5)
    empty = Latency.of([])
    assert empty.count == 0
    assert math.isnan(empty.p50)


def test_numbers_print_as_the_tables_show_them() -> None:
    assert ratio(300.0, 150.0) == "2.00×"
    assert ratio(0.0, 150.0) == "n/a"
    assert us(12.345) == "12.3"
    assert us(1234.5) == "1,234"
    assert us(math.nan) == "n/a"
    assert (verdict(True), verdict(False)) == ("PASS", "MISS")


def test_a_framed_batch_parses_as_the_screen_batch_request_protobuf_would_write() -> None:
    requests = [
        pb.ScreenRequest(transaction_id=f"t{i}", terminal_id="T1", pan="4" * 16, amount_minor=i)
        for i in (1, 300, 70_000)
    ]
    requests.append(pb.ScreenRequest(transaction_id="x" * 200))  # a length over one byte
    framed = frame_batch([r.SerializeToString() for r in requests])
    assert pb.ScreenBatchRequest.FromString(framed) == pb.ScreenBatchRequest(requests=requests)
    assert framed == pb.ScreenBatchRequest(requests=requests).SerializeToString()


def test_the_traffic_cursor_hands_out_consecutive_slices_with_ids_unique_to_the_run() -> None:
    requests = [pb.ScreenRequest(terminal_id="T1", amount_minor=i) for i in range(5)]
    cursor = TrafficCursor(requests, "run.sync")
    first = [pb.ScreenRequest.FromString(b) for b in cursor.peek(3)]
    assert [r.transaction_id for r in first] == ["run.sync.0", "run.sync.1", "run.sync.2"]
    cursor.advance(3)
    rest = [pb.ScreenRequest.FromString(b) for b in cursor.peek(3)]
    assert [r.amount_minor for r in rest] == [3, 4]  # the end: fewer, never wrapped
    wrapping = TrafficCursor(requests, "floor", wrap=True)
    wrapping.advance(4)
    again = [pb.ScreenRequest.FromString(b) for b in wrapping.peek(3)]
    assert [(r.transaction_id, r.amount_minor) for r in again] == [
        ("floor.4", 4),
        ("floor.5", 0),
        ("floor.6", 1),
    ]


def test_the_traffic_in_laps_keeps_time_moving_forward_and_the_last_lap_as_given() -> None:
    week = 7 * 86_400
    requests = [pb.ScreenRequest(transaction_id=f"t{i}") for i in range(3)]
    for i, request in enumerate(requests):
        request.timestamp.seconds = 1_000 * week + i * week
    laps = in_laps(requests, 2, 4 * week)
    seconds = [r.timestamp.seconds for r in laps]
    assert len(laps) == 6
    assert seconds == sorted(seconds)
    assert seconds[3:] == [1_000 * week + i * week for i in range(3)]  # the last lap as given
    assert [s - 4 * week for s in seconds[3:]] == seconds[:3]
    assert laps[3] is requests[0] and laps[0] is not requests[0]
    assert in_laps(requests, 1, 4 * week) == requests


def test_the_server_log_is_read_for_its_first_event_of_each_name(tmp_path: Path) -> None:
    server = ServerProcess(SYNC_NATIVE, tmp_path)
    server.log_path.write_text(
        "plain text from grpc\n"
        + json.dumps({"event": "gateway.listening", "port": 5001})
        + "\n{broken json\n"
        + json.dumps({"event": "gateway.listening", "port": 9999})
        + "\n"
        + json.dumps({"event": "gateway.ready"})
        + "\n"
    )
    events = server._events()
    assert events["gateway.listening"]["port"] == 5001
    assert "gateway.ready" in events
    assert len(events) == 2


def test_client_tallies_count_decisions_in_band_errors_and_the_window() -> None:
    tally = _Tally(end=0.0)  # the window already closed
    tally.item(pb.ScreenStreamResponse(response=pb.ScreenResponse(decision=pb.DECISION_REVIEW)))
    tally.item(pb.ScreenStreamResponse(error={"code": 14}))
    tally.answer(pb.ScreenResponse(decision=pb.DECISION_APPROVE, stand_in=True))
    tally.answered(3, at_ns=tally.end_ns + 1)
    assert tally.decisions == Counter({"REVIEW": 1, "APPROVE": 1})
    assert tally.errors == Counter({"code 14": 1, "STAND_IN": 1})
    assert (tally.transactions, tally.in_window) == (3, 0)


def test_threads_spread_over_client_processes_as_evenly_as_possible() -> None:
    assert _split(5, 2) == [3, 2]
    assert _split(1, 2) == [1]
    assert _split(64, 2) == [32, 32]


def test_a_phase_derives_cpu_per_transaction_and_calls_per_second() -> None:
    phase = _phase(SYNC_NATIVE, "unary", 8, tps=4_000.0)
    assert phase.server_us_per_tx == pytest.approx(2_000.0)  # 1 core x 2 s / 1000 tx
    assert phase.client_us_per_tx == pytest.approx(1_000.0)
    assert phase.calls_per_second == pytest.approx(4_000.0)


def test_the_quick_plan_measures_every_kind_of_shape() -> None:
    kinds = [shape.kind for shape in shapes(QUICK)]
    assert kinds.count("unary") == len(QUICK.concurrencies) + 1  # + sustained
    assert {"paced", "stream", "batch"} <= set(kinds)


def test_rows_compare_each_server_with_its_baseline_at_the_same_level() -> None:
    results: Results = {
        SYNC_NATIVE: [_phase(SYNC_NATIVE, "unary", 8, tps=4_000.0)],
        SYNC_LIGHTGBM: [_phase(SYNC_LIGHTGBM, "unary", 8, tps=2_000.0)],
    }
    rows = _rows(results, ((SYNC_NATIVE, SYNC_LIGHTGBM), (SYNC_LIGHTGBM, None)), "unary", [8])
    assert [row[0] for row in rows] == ["sync/native", "sync/lightgbm"]
    vs_baseline = PHASE_HEADER.index("TPS vs baseline")
    assert rows[0][vs_baseline] == "2.00×"
    assert rows[1][vs_baseline] == ""
    assert rows[0][PHASE_HEADER.index("errors")] == "UNAVAILABLE 3"
    table = _table(PHASE_HEADER, rows).splitlines()
    assert len(table) == 4
    assert table[1].count("---") == len(PHASE_HEADER)


def test_the_unary_section_reports_what_was_measured() -> None:
    plan = QUICK
    results: Results = {
        spec: [_phase(spec, "unary", c, tps=1_000.0 * c) for c in plan.concurrencies]
        for spec in (SYNC_NATIVE, SYNC_LIGHTGBM)
    }
    section = report_unary(results, plan)
    assert section.startswith("### 2. Unary gRPC")
    assert "sync/native" in section
    assert "sync/lightgbm" in section


def test_sync_versus_aio_reads_a_speed_up_above_one_as_aio_better() -> None:
    sync = _phase(SYNC_NATIVE, "unary", 8, tps=3_000.0, p50=400.0)
    aio = _phase(SYNC_UNTUNED, "unary", 8, tps=6_000.0, p50=200.0)
    assert _versus(sync, aio, "TPS") == ("3,000", "6,000", 2.0)


def test_sync_versus_aio_survives_a_side_that_answered_nothing() -> None:
    sync = _phase(SYNC_NATIVE, "unary", 8, tps=3_000.0)
    aio = _phase(AIO_NATIVE, "unary", 8, tps=0.0)
    plan = dataclasses.replace(QUICK, concurrencies=(8,), stream_shapes=(), batch_shapes=())
    section = report_sync_vs_aio({SYNC_NATIVE: [sync], AIO_NATIVE: [aio]}, plan)
    assert "| unary c=8 | TPS | 3,000 | 0 | n/a |" in section


class _AioContext:
    """What grpc.aio's ServicerContext answers for a call with or without a deadline."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining

    def time_remaining(self) -> float | None:
        return self.remaining

    def peer(self) -> str:
        return "ipv4:127.0.0.1:4242"


@pytest.mark.parametrize(("remaining", "seen"), [(None, math.inf), (2.5, 2.5), (0.0, 0.0)])
def test_the_aio_variant_gives_the_servicer_a_deadline_it_can_compare(
    remaining: float | None, seen: float
) -> None:
    """grpc.aio says None for no deadline; the sync servicer compares it with 0 (every aio
    unary and batch call failed INTERNAL before)."""
    context = _AbortCapture(_AioContext(remaining))  # type: ignore[arg-type]
    assert context.time_remaining() == seen
    assert context.peer() == "ipv4:127.0.0.1:4242"
    status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="amount_minor: too large")
    )
    with pytest.raises(_Aborted) as aborted:
        context.abort_with_status(status)
    assert aborted.value.status.code == grpc.StatusCode.INVALID_ARGUMENT
