"""The verdict tables: sync vs aio, the transport floor, the serving settings A/B, and the
DESIGN.md targets printed PASS/MISS beside the numbers (nothing asserts a timing)."""

from __future__ import annotations

import math

from loadtests.bench.in_process import InProcessResult
from loadtests.bench.plan import (
    AIO_ECHO,
    AIO_NATIVE,
    FOREIGN_WARNING,
    LIGHT_LOAD,
    PACED_TERMINALS,
    SYNC_ECHO,
    SYNC_NATIVE,
    SYNC_UNTUNED,
    TARGET_INPROCESS_P99_US,
    TARGET_MODEL_P50_US,
    TARGET_STREAM_TPS,
    TARGET_UNARY_P50_US,
    TARGET_UNARY_P99_US,
    TARGET_UNARY_TPS,
    TIE,
    Plan,
)
from loadtests.bench.report import PHASE_HEADER, _best, _find, _rows, _table
from loadtests.bench.shapes import Phase, Results
from loadtests.bench.stats import ratio, us, verdict


def _versus(sync: Phase, aio: Phase, metric: str) -> tuple[str, str, float]:
    """(sync value, aio value, aio speed-up: > 1 means aio is better)."""
    if metric == "TPS":
        return f"{sync.tps:,.0f}", f"{aio.tps:,.0f}", aio.tps / sync.tps
    sync_value, aio_value = (
        (sync.latency.p50, aio.latency.p50)
        if metric == "p50"
        else (sync.latency.p99, aio.latency.p99)
    )
    return us(sync_value), us(aio_value), sync_value / aio_value


def _load(kind: str, level: int, phase: Phase) -> str:
    if kind == "unary":
        return f"unary c={level}"
    return f"{'stream' if kind == 'stream' else 'ScreenBatch'}, {phase.shape}"


def report_sync_vs_aio(results: Results, plan: Plan) -> str:
    measures: list[tuple[str, int, str]] = [
        ("unary", level, metric) for level in plan.concurrencies for metric in ("p50", "p99", "TPS")
    ]
    measures.append(("unary", plan.sustained_concurrency, "TPS"))
    measures += [("stream", s * w, "TPS") for s, w in plan.stream_shapes]
    measures += [("batch", n * b, "TPS") for n, b in plan.batch_shapes]
    rows, speedups, excluded = [], [], 0
    for kind, level, metric in measures:
        sync, aio = (
            _find(results, SYNC_NATIVE, kind, level),
            _find(results, AIO_NATIVE, kind, level),
        )
        if sync is None or aio is None:
            continue
        sync_value, aio_value, speedup = _versus(sync, aio, metric)
        disturbed = max(sync.foreign_cores, aio.foreign_cores) > FOREIGN_WARNING
        if not 0 < speedup < math.inf:  # a side answered nothing: no ratio to read
            excluded += 1
            rows.append([_load(kind, level, sync), metric, sync_value, aio_value, "n/a", ""])
            continue
        if disturbed:
            excluded += 1
        else:
            speedups.append(speedup)
        better = f"aio {speedup:.2f}×" if speedup > 1 else f"sync {1 / speedup:.2f}×"
        floor = ""
        sync_echo, aio_echo = (
            _find(results, SYNC_ECHO, kind, level),
            _find(results, AIO_ECHO, kind, level),
        )
        if sync_echo is not None and aio_echo is not None:
            echo_sync, echo_aio, _ = _versus(sync_echo, aio_echo, metric)
            floor = f"{echo_sync} / {echo_aio}"
        better += " (disturbed: not counted)" if disturbed else ""
        rows.append([_load(kind, level, sync), metric, sync_value, aio_value, better, floor])
    wins = sum(s > 1 for s in speedups)
    mean = math.exp(sum(math.log(s) for s in speedups) / len(speedups)) if speedups else math.nan
    if not speedups:
        headline = "none, other processes disturbed every measure"
    elif abs(mean - 1) < TIE:
        headline = f"no clear winner, within {TIE:.0%} on the geometric mean"
    else:
        winner = "grpc.aio" if mean > 1 else "sync grpc.server"
        headline = f"{winner} is faster, by {abs(mean - 1):.0%} on the geometric mean"
    left_out = f"; {excluded} disturbed or unanswered left out" if excluded else ""
    summary = (
        f"**Verdict: {headline}** ({len(speedups)} measures: aio better on {wins}, sync on "
        f"{len(speedups) - wins}{left_out}). Same Gateway engine, native model, clients and "
        "traffic; only the gRPC server differs."
    )
    details = _rows(
        results,
        ((AIO_NATIVE, SYNC_NATIVE),),
        "unary",
        (*plan.concurrencies, plan.sustained_concurrency),
    )
    details += _rows(
        results, ((AIO_NATIVE, SYNC_NATIVE),), "stream", [s * w for s, w in plan.stream_shapes]
    )
    details += _rows(
        results, ((AIO_NATIVE, SYNC_NATIVE),), "batch", [n * b for n, b in plan.batch_shapes]
    )
    return "\n\n".join(
        [
            "### 5. Sync grpc.server vs grpc.aio (native model)",
            _table(["load", "metric", "sync", "aio", "better", "empty handler: sync / aio"], rows),
            summary,
            "aio server rows (TPS vs baseline = vs sync; ScreenBatch rows: latency per call):",
            _table(PHASE_HEADER, details),
        ]
    )


def report_settings(results: Results, plan: Plan) -> str:
    """The shipped gateway against itself without the two latency settings."""
    if SYNC_UNTUNED not in results:
        return "### 7. Settings A/B\n\nSkipped with `--quick`."
    rows = []
    for kind, level in [("unary", c) for c in plan.concurrencies] + [("paced", PACED_TERMINALS)]:
        shipped = _find(results, SYNC_NATIVE, kind, level)
        untuned = _find(results, SYNC_UNTUNED, kind, level)
        if shipped is None or untuned is None:
            continue
        rows.append(
            [
                shipped.shape,
                f"{us(untuned.latency.p50)} / {us(untuned.latency.p99)}",
                f"{us(shipped.latency.p50)} / {us(shipped.latency.p99)}",
                ratio(untuned.latency.p50, shipped.latency.p50),
                f"{untuned.tps:,.0f} / {shipped.tps:,.0f}",
                ratio(shipped.tps, untuned.tps),
            ]
        )
    header = [
        "load",
        "untuned p50 / p99 µs",
        "shipped p50 / p99 µs",
        "p50 better",
        "TPS untuned / shipped",
        "TPS better",
    ]
    return "\n\n".join(
        [
            "### 7. Settings A/B: gRPC's iomgr polling path and the process on one CPU",
            "sync/native as shipped vs the same gateway with `GRPC_EXPERIMENTS=` (gRPC's "
            "default I/O path) and `FRAUDSCREEN_SERVER_PIN_CPU=off` (threads on every core); "
            "same clients, interleaved.",
            _table(header, rows),
        ]
    )


def report_floor(results: Results, plan: Plan) -> str:
    """How much of a call is gRPC itself: the same server with an empty handler."""
    if SYNC_ECHO not in results and AIO_ECHO not in results:
        return "### 6. Transport floor\n\nSkipped with `--quick`."
    rows = []
    for spec, echo in ((SYNC_NATIVE, SYNC_ECHO), (AIO_NATIVE, AIO_ECHO)):
        for kind, level in (
            [("unary", c) for c in plan.concurrencies]
            + [("stream", s * w) for s, w in plan.stream_shapes]
            + [("batch", n * b) for n, b in plan.batch_shapes]
        ):
            real, floor = _find(results, spec, kind, level), _find(results, echo, kind, level)
            if real is None or floor is None:
                continue
            share = 1 - floor.server_us_per_tx / real.server_us_per_tx
            rows.append(
                [
                    spec.stack,
                    f"{'ScreenBatch' if kind == 'batch' else kind} {real.shape}",
                    f"{us(real.latency.p50)} / {us(floor.latency.p50)}",
                    f"{real.tps:,.0f} / {floor.tps:,.0f}",
                    f"{real.server_us_per_tx:,.0f} / {floor.server_us_per_tx:,.0f}",
                    f"{share:.0%}" if share > 0 else "≈0 (within noise)",
                    us(real.handler_us),
                    f"{real.client_us_per_tx:,.0f}",
                ]
            )
    echo_rows = _rows(results, ((SYNC_ECHO, None), (AIO_ECHO, None)), "unary", plan.concurrencies)
    echo_rows += _rows(
        results,
        ((SYNC_ECHO, None), (AIO_ECHO, None)),
        "stream",
        [s * w for s, w in plan.stream_shapes],
    )
    echo_rows += _rows(
        results,
        ((SYNC_ECHO, None), (AIO_ECHO, None)),
        "batch",
        [n * b for n, b in plan.batch_shapes],
    )
    return "\n\n".join(
        [
            "### 6. Where a call's time goes: fraudscreen vs the gRPC floor",
            "Floor = the same server, options and request parsing with a handler that returns "
            "a fixed answer (no screening). The difference is what fraudscreen adds per call.",
            _table(
                [
                    "stack",
                    "load",
                    "p50 µs: fraudscreen / floor",
                    "TPS: fraudscreen / floor",
                    "server CPU µs per tx: fraudscreen / floor",
                    "fraudscreen's share of server CPU",
                    "handler µs (server-side mean)",
                    "client CPU µs per tx",
                ],
                rows,
            ),
            "Floor servers (ScreenBatch rows: latency per call):",
            _table(PHASE_HEADER, echo_rows),
        ]
    )


def report_targets(in_process: InProcessResult, results: Results, plan: Plan) -> str:
    model = in_process.stages["native"]["model"]
    screen = in_process.screen["native"]
    rows = [
        [
            "compiled model call, median (in-process)",
            f"≤ {TARGET_MODEL_P50_US:g} µs",
            f"{us(model.p50)} µs",
            verdict(model.p50 <= TARGET_MODEL_P50_US),
        ],
        [
            "whole in-process screen, p99",
            f"≤ {TARGET_INPROCESS_P99_US:g} µs",
            f"{us(screen.p99)} µs",
            verdict(screen.p99 <= TARGET_INPROCESS_P99_US),
        ],
    ]
    for spec in (SYNC_NATIVE, AIO_NATIVE):
        for level in LIGHT_LOAD:
            phase = _find(results, spec, "unary", level)
            if phase is not None:
                lat = phase.latency
                rows.append(
                    [
                        f"unary loopback c={level} closed loop, {spec.name}: p50 / p99",
                        f"≤ {TARGET_UNARY_P50_US:g} / {TARGET_UNARY_P99_US:,.0f} µs",
                        f"{us(lat.p50)} / {us(lat.p99)} µs",
                        verdict(lat.p50 <= TARGET_UNARY_P50_US and lat.p99 <= TARGET_UNARY_P99_US),
                    ]
                )
        paced = _find(results, spec, "paced", PACED_TERMINALS)
        if paced is not None:
            lat = paced.latency
            rows.append(
                [
                    f"unary loopback, {PACED_TERMINALS} paced terminals ({paced.tps:,.0f} tx/s), "
                    f"{spec.name}: p50 / p99",
                    f"≤ {TARGET_UNARY_P50_US:g} / {TARGET_UNARY_P99_US:,.0f} µs",
                    f"{us(lat.p50)} / {us(lat.p99)} µs",
                    verdict(lat.p50 <= TARGET_UNARY_P50_US and lat.p99 <= TARGET_UNARY_P99_US),
                ]
            )
    labels = {"unary": "unary", "stream": "streaming", "batch": "streaming, via ScreenBatch,"}
    for spec in (SYNC_NATIVE, AIO_NATIVE):
        for kind, target in (
            ("unary", TARGET_UNARY_TPS),
            ("stream", TARGET_STREAM_TPS),
            ("batch", TARGET_STREAM_TPS),
        ):
            best = _best(results, spec, kind)
            if best is not None:
                rows.append(
                    [
                        f"{labels[kind]} TPS, {spec.name} (best: {best.shape})",
                        f"≥ {target:,.0f}",
                        f"{best.tps:,.0f}",
                        verdict(best.tps >= target),
                    ]
                )
    return "\n\n".join(
        [
            "### Targets (DESIGN.md performance budget)",
            _table(["target", "budget", "measured", ""], rows),
            "The gRPC targets are measured with a Python client sharing the gateway's 2 cores; "
            "see the CPU columns for each side's share.",
        ]
    )
