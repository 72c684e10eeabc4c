"""Issue 16's serving targets, PASS/MISS in one table beside the empty-handler server of the
same run: they are stated against what Python's gRPC stack itself costs here, so the
verdict is only as good as the floor measured next to it (no floor, no verdict)."""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.bench.plan import (
    SERVING_BATCH_SERVER_US,
    SERVING_BATCH_TPS,
    SERVING_INPROCESS_P50_US,
    SERVING_INPROCESS_P99_US,
    SERVING_STREAM_SHAPE,
    SERVING_STREAM_VS_EMPTY,
    SERVING_UNARY_P50_VS_EMPTY,
    SERVING_UNARY_TPS_VS_EMPTY,
    SYNC_ECHO,
    SYNC_NATIVE,
    Plan,
)
from loadtests.bench.report import _best, _find, _table
from loadtests.bench.shapes import Phase, Results
from loadtests.bench.stats import Latency, us


@dataclass(frozen=True)
class Target:
    """One row: what is promised, what was measured, what the empty handler did."""

    name: str
    budget: str
    measured: str
    empty_handler: str
    ok: bool | None  # None: not measured in this run (or its floor was not)

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else "PASS" if self.ok else "MISS"


def _cpu(phase: Phase | None) -> str:
    return "not run" if phase is None else f"{phase.server_us_per_tx:,.1f} µs"


def _tps(phase: Phase | None) -> str:
    return "not run" if phase is None else f"{phase.tps:,.0f} tx/s ({phase.shape})"


def _p50(phase: Phase | None) -> str:
    return "not run" if phase is None else f"{us(phase.latency.p50)} µs"


def _share(real: Phase | None, floor: Phase | None, at_least: float) -> bool | None:
    if real is None or floor is None:
        return None
    return real.tps >= at_least * floor.tps


def serving_targets(screen: Latency, results: Results, plan: Plan) -> list[Target]:
    """The targets, read off the shipped server (sync, native model) and its empty handler."""
    size = plan.batch_shapes[0][0] * plan.batch_shapes[0][1]
    batch, batch_floor = (_find(results, s, "batch", size) for s in (SYNC_NATIVE, SYNC_ECHO))
    best_batch, best_batch_floor = (_best(results, s, "batch") for s in (SYNC_NATIVE, SYNC_ECHO))
    window = SERVING_STREAM_SHAPE[0] * SERVING_STREAM_SHAPE[1]
    stream, stream_floor = (_find(results, s, "stream", window) for s in (SYNC_NATIVE, SYNC_ECHO))
    c8, c8_floor = (_find(results, s, "unary", 8) for s in (SYNC_NATIVE, SYNC_ECHO))
    c1, c1_floor = (_find(results, s, "unary", 1) for s in (SYNC_NATIVE, SYNC_ECHO))
    return [
        Target(
            f"server CPU per transaction inside ScreenBatch ({batch.shape if batch else size})",
            f"≤ {SERVING_BATCH_SERVER_US:g} µs",
            _cpu(batch),
            _cpu(batch_floor),
            None if batch is None else batch.server_us_per_tx <= SERVING_BATCH_SERVER_US,
        ),
        Target(
            "ScreenBatch throughput (best shape)",
            f"≥ {SERVING_BATCH_TPS:,.0f} tx/s",
            _tps(best_batch),
            _tps(best_batch_floor),
            None if best_batch is None else best_batch.tps >= SERVING_BATCH_TPS,
        ),
        Target(
            f"ScreenStream throughput, {SERVING_STREAM_SHAPE[0]} streams × "
            f"{SERVING_STREAM_SHAPE[1]} in flight",
            f"≥ {SERVING_STREAM_VS_EMPTY:g}× empty handler",
            _tps(stream),
            _tps(stream_floor),
            _share(stream, stream_floor, SERVING_STREAM_VS_EMPTY),
        ),
        Target(
            "unary throughput, concurrency 8",
            f"≥ {SERVING_UNARY_TPS_VS_EMPTY:g}× empty handler",
            _tps(c8),
            _tps(c8_floor),
            _share(c8, c8_floor, SERVING_UNARY_TPS_VS_EMPTY),
        ),
        Target(
            "unary p50, concurrency 1",
            f"≤ {SERVING_UNARY_P50_VS_EMPTY:g}× empty handler",
            _p50(c1),
            _p50(c1_floor),
            None
            if c1 is None or c1_floor is None
            else c1.latency.p50 <= SERVING_UNARY_P50_VS_EMPTY * c1_floor.latency.p50,
        ),
        Target(
            "in-process screen p50",
            f"≤ {SERVING_INPROCESS_P50_US:g} µs",
            f"{us(screen.p50)} µs",
            "—",
            None if screen.count == 0 else screen.p50 <= SERVING_INPROCESS_P50_US,
        ),
        Target(
            "in-process screen p99",
            f"≤ {SERVING_INPROCESS_P99_US:g} µs",
            f"{us(screen.p99)} µs",
            "—",
            None if screen.count == 0 else screen.p99 <= SERVING_INPROCESS_P99_US,
        ),
    ]


def report_serving_targets(screen: Latency, results: Results, plan: Plan) -> str:
    targets = serving_targets(screen, results, plan)
    rows = [[t.name, t.budget, t.measured, t.empty_handler, t.verdict] for t in targets]
    passed = sum(t.ok is True for t in targets)
    judged = sum(t.ok is not None for t in targets)
    return "\n\n".join(
        [
            "### Serving targets (issue 16), sync/native as shipped vs its empty handler",
            _table(["target", "budget", "fraudscreen", "empty handler", ""], rows),
            f"**{passed} of {judged} judged targets pass.** Server CPU counts every thread "
            "of the gateway process (handler, journal writer, logging, metrics); the load "
            "comes from Python clients on the same 2 cores.",
        ]
    )
