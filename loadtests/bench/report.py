"""The Markdown tables the README's performance section is made of."""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from collections.abc import Sequence
from pathlib import Path

import grpc

from loadtests.bench.in_process import InProcessResult
from loadtests.bench.plan import (
    BATCH_SHAPES_WHY,
    BLOCK,
    CLIENT_PROCESSES,
    FOREIGN_WARNING,
    IN_PROCESS_WARMUP,
    LAP_SECONDS,
    PACE_SECONDS,
    PACED_TERMINALS,
    SYNC_LIGHTGBM,
    SYNC_NATIVE,
    TRAFFIC_DAYS,
    TRAFFIC_LAPS,
    Plan,
    ServerSpec,
)
from loadtests.bench.shapes import Phase, Results
from loadtests.bench.stats import ratio, us
from loadtests.bench.traffic import gateway_env
from loadtests.gateway import process_env


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _find(results: Results, spec: ServerSpec, kind: str, concurrency: int) -> Phase | None:
    for phase in results.get(spec, []):
        if phase.kind == kind and phase.concurrency == concurrency:
            return phase
    return None


def _errors(phase: Phase) -> str:
    parts = [f"{k} {v:,}" for k, v in phase.errors.most_common()] + list(phase.notes)
    return "; ".join(parts) or "0"


def _best(results: Results, spec: ServerSpec, kind: str) -> Phase | None:
    phases = [p for p in results.get(spec, []) if p.kind == kind]
    return max(phases, key=lambda p: p.tps) if phases else None


PHASE_HEADER = [
    "server",
    "concurrency",
    "clients",
    "p50 µs",
    "p99 µs",
    "p99.9 µs",
    "TPS",
    "TPS vs baseline",
    "CPU cores server / client",
    "CPU µs per tx server / client",
    "handler µs (server-side mean)",
    "errors",
]


def _phase_row(phase: Phase, baseline: Phase | None) -> list[str]:
    return [
        phase.spec.name,
        str(phase.concurrency),
        phase.shape,
        us(phase.latency.p50),
        us(phase.latency.p99),
        us(phase.latency.p999),
        f"{phase.tps:,.0f}",
        ratio(phase.tps, baseline.tps) if baseline is not None else "",
        f"{phase.server_cores:.2f} / {phase.client_cores:.2f}",
        f"{phase.server_us_per_tx:,.0f} / {phase.client_us_per_tx:,.0f}",
        us(phase.handler_us),
        _errors(phase),
    ]


def _rows(
    results: Results,
    pairs: Sequence[tuple[ServerSpec, ServerSpec | None]],
    kind: str,
    levels: Sequence[int],
) -> list[list[str]]:
    """One row per (server, level), each with its TPS ratio against its baseline server."""
    rows = []
    for spec, baseline in pairs:
        for level in levels:
            phase = _find(results, spec, kind, level)
            if phase is not None:
                base = _find(results, baseline, kind, level) if baseline is not None else None
                rows.append(_phase_row(phase, base))
    return rows


def report_environment(
    plan: Plan, quick: bool, traffic: int, in_process: InProcessResult, results: Results
) -> str:
    foreign = max(
        [in_process.foreign_cores] + [p.foreign_cores for ps in results.values() for p in ps]
    )
    flagged = foreign > FOREIGN_WARNING
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return "\n".join(
        [
            "## Service benchmark" + (" (--quick)" if quick else ""),
            "",
            f"- machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"grpcio {grpc.__version__}; loopback, no TLS",
            f"- traffic: {traffic:,} simulated terminal transactions (the replay demo "
            f"simulation, {TRAFFIC_DAYS} days, {TRAFFIC_LAPS} laps {LAP_SECONDS // 86_400} days "
            "apart), sent in time order with ids unique to the run; request logging "
            "`non_approve`",
            f"- load: up to {CLIENT_PROCESSES} Python client processes on the same cores, closed "
            "loop (and one paced light-load shape); every server in its own process, pinned to "
            "one CPU as `fraudscreen serve` pins itself (`server.pin_cpu = auto`), clients "
            "unpinned; servers and clients on gRPC's iomgr polling path (GRPC_EXPERIMENTS="
            f"{os.environ.get('GRPC_EXPERIMENTS', '')!r}); "
            "CPU = cores each side used over the measured window (psutil); "
            "handler µs = the servicer's own time per item from its Prometheus histogram "
            "(validate, screen, metrics, log; no gRPC)",
            f"- phases: unary {plan.latency_seconds:g} s per level, sustained "
            f"{plan.sustained_seconds:g} s, streaming {plan.stream_seconds:g} s and "
            f"ScreenBatch {plan.batch_seconds:g} s per shape; "
            "single runs, so compare neighbours rather than read the last digit",
            f"- other processes on the machine used at most {foreign:.2f} cores during any "
            "measurement" + (" (flagged beside the numbers it touched)" if flagged else ""),
        ]
    )


def report_in_process(result: InProcessResult) -> str:
    baseline = result.screen["lightgbm"]
    rows = [
        [
            name + (" (baseline)" if name == "lightgbm" else ""),
            f"{lat.count:,}",
            us(lat.p50),
            us(lat.p99),
            us(lat.p999),
            us(lat.mean),
            f"{1e6 / lat.mean:,.0f}",
            ratio(baseline.p50, lat.p50),
            ratio(baseline.p99, lat.p99),
        ]
        for name, lat in result.screen.items()
    ]
    total = max(1, sum(result.decisions.values()))
    mix = ", ".join(f"{k} {v / total:.1%}" for k, v in result.decisions.most_common())
    labels = {
        "validate": "validate + tokenize (HMAC)",
        "features": "features (online windows)",
        "model": "model call",
        "policy": "policy (incl. reason codes)",
        "reasons": f"↳ reason codes: {result.reason_share:.1%} of tx (non-approvals)",
        "rest": "rest of engine.screen (idempotency, fingerprint, journal enqueue)",
        "total": "total (instrumented)",
    }
    stage_rows = [
        [label]
        + [
            us(getattr(result.stages[predictor][stage], q))
            for predictor in ("native", "lightgbm")
            for q in ("p50", "p99")
        ]
        for stage, label in labels.items()
    ]
    busy = (
        f" Other processes used {result.foreign_cores:.2f} cores meanwhile: skewed."
        if result.foreign_cores > FOREIGN_WARNING
        else ""
    )
    return "\n\n".join(
        [
            "### 1. In-process screen (validate, tokenize, features, model, policy, journal "
            "enqueue; no gRPC)",
            _table(
                [
                    "predictor",
                    "tx",
                    "p50 µs",
                    "p99 µs",
                    "p99.9 µs",
                    "mean µs",
                    "TPS ceiling, 1 core (1/mean)",
                    "p50 vs baseline",
                    "p99 vs baseline",
                ],
                rows,
            ),
            f"Decisions: {mix}. Both engines screened the same transactions, alternating every "
            f"{BLOCK}, after {IN_PROCESS_WARMUP:,} untimed ones. A hot loop: caches stay warm, "
            "which a server between two gRPC calls does not enjoy (compare handler µs below)."
            + busy,
            "Garbage collections during the timed screens (both engines; each stops every "
            f"thread): {result.collections}.",
            "Where the time goes (separate run with per-call timers, ~0.2 µs each; "
            "percentiles of parts do not add up to the total's):",
            _table(
                ["stage", "native p50 µs", "native p99 µs", "lightgbm p50 µs", "lightgbm p99 µs"],
                stage_rows,
            ),
        ]
    )


def report_unary(results: Results, plan: Plan) -> str:
    pairs = ((SYNC_NATIVE, SYNC_LIGHTGBM), (SYNC_LIGHTGBM, None))
    ratios = []
    for level in (*plan.concurrencies, plan.sustained_concurrency):
        native = _find(results, SYNC_NATIVE, "unary", level)
        lgbm = _find(results, SYNC_LIGHTGBM, "unary", level)
        if native is not None and lgbm is not None:
            ratios.append(
                [
                    str(level),
                    ratio(lgbm.latency.p50, native.latency.p50),
                    ratio(lgbm.latency.p99, native.latency.p99),
                    ratio(native.tps, lgbm.tps),
                    ratio(lgbm.server_us_per_tx, native.server_us_per_tx),
                ]
            )
    return "\n\n".join(
        [
            "### 2. Unary gRPC on loopback, closed loop (sync grpc.server = `fraudscreen serve`)",
            "Baseline: the same server scoring with LightGBM's `Booster.predict`. Latency is "
            "measured by the client, from send to parsed answer.",
            _table(PHASE_HEADER, _rows(results, pairs, "unary", plan.concurrencies)),
            "Light load, 8 callers: 8 terminals, each thinking "
            f"{PACE_SECONDS * 1000:g} ms (mean, exponential) between answer and next request:",
            _table(PHASE_HEADER, _rows(results, pairs, "paced", [PACED_TERMINALS])),
            "Native vs LightGBM (how many times better native is):",
            _table(["concurrency", "p50", "p99", "TPS", "server CPU per tx"], ratios),
            "### 3. Sustained unary throughput",
            _table(PHASE_HEADER, _rows(results, pairs, "unary", [plan.sustained_concurrency])),
        ]
    )


def report_stream(results: Results, plan: Plan) -> str:
    levels = [streams * window for streams, window in plan.stream_shapes]
    rows = []
    for level in levels:
        rows += _rows(
            results, ((SYNC_NATIVE, SYNC_LIGHTGBM), (SYNC_LIGHTGBM, None)), "stream", [level]
        )
    return "\n\n".join(
        [
            "### 4. Streaming throughput (ScreenStream, a window of messages in flight per stream)",
            "Latency here is time in flight, queueing in the window included.",
            _table(PHASE_HEADER, rows),
            report_batch(results, plan),
        ]
    )


def _max_message_bytes() -> int:
    """``server.max_message_bytes`` as the servers load it (defaults + environment)."""
    from fraudscreen.config import load_config

    env = process_env(gateway_env(Path(tempfile.gettempdir()), "native"))
    return load_config(None, env).server.max_message_bytes


def _kib(size: int) -> str:
    return f"{size / 1024:,.1f}"


def report_batch(results: Results, plan: Plan) -> str:
    levels = [calls * size for calls, size in plan.batch_shapes]
    rows = []
    for spec, baseline in ((SYNC_NATIVE, SYNC_LIGHTGBM), (SYNC_LIGHTGBM, None)):
        stream = _best(results, spec, "stream")
        for level in levels:
            phase = _find(results, spec, "batch", level)
            if phase is None:
                continue
            base = _find(results, baseline, "batch", level) if baseline is not None else None
            lat = phase.latency
            rows.append(
                [
                    spec.name,
                    phase.shape,
                    f"{phase.concurrency:,}",
                    f"{us(lat.p50)} / {us(lat.p99)} / {us(lat.p999)}",
                    f"{us(lat.p50 / phase.batch)} / {us(lat.p99 / phase.batch)}",
                    f"{phase.tps:,.0f}",
                    f"{phase.calls_per_second:,.1f}",
                    ratio(phase.tps, base.tps) if base is not None else "",
                    ratio(phase.tps, stream.tps) if stream is not None else "n/a",
                    f"{phase.server_cores:.2f} / {phase.client_cores:.2f}",
                    f"{phase.server_us_per_tx:,.0f} / {phase.client_us_per_tx:,.0f}",
                    us(phase.handler_us),
                    f"{_kib(phase.max_request_bytes)} / {_kib(phase.max_reply_bytes)}",
                    _errors(phase),
                ]
            )
    limit = _max_message_bytes()
    return "\n\n".join(
        [
            "### 4b. Batched throughput (ScreenBatch: closed loop, each caller sends its next "
            "batch when the previous one answered)",
            "A call's latency is the time in flight of every transaction in it (the time a "
            "host spends filling a batch from its terminals comes on top and is not measured); "
            "per tx = the call's latency ÷ transactions per call, what batching amortizes. "
            "TPS counts transactions. Baseline: the same server scoring with LightGBM.",
            _table(
                [
                    "server",
                    "load (calls in flight × tx per call)",
                    "tx in flight",
                    "call p50 / p99 / p99.9 µs",
                    "per tx p50 / p99 µs",
                    "TPS",
                    "calls/s",
                    "TPS vs baseline",
                    "TPS vs its best ScreenStream",
                    "CPU cores server / client",
                    "CPU µs per tx server / client",
                    "handler µs per tx (server-side mean)",
                    f"largest request / reply KiB (limit {_kib(limit)})",
                    "errors",
                ],
                rows,
            ),
            BATCH_SHAPES_WHY,
        ]
    )
