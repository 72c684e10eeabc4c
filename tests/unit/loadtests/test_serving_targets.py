"""Issue 16's serving targets: each verdict reads the right phase and compares it with the
right bound, relative to the empty-handler server where the target is relative."""

from __future__ import annotations

import dataclasses
import math

from loadtests.bench.plan import QUICK, SYNC_ECHO, SYNC_LIGHTGBM, SYNC_NATIVE, ServerSpec
from loadtests.bench.serving_targets import Target, report_serving_targets, serving_targets
from loadtests.bench.shapes import Phase, Results
from loadtests.bench.stats import Latency
from tests.unit.loadtests.test_bench import _phase


def _at(
    spec: ServerSpec, kind: str, level: int, tps: float, p50: float = 300.0, cores: float = 1.0
) -> Phase:
    phase = _phase(spec, kind, level, tps=tps, p50=p50)
    # server_us_per_tx = cores x 2 s / 1000 tx
    return dataclasses.replace(phase, server_cores=cores, shape=f"{kind} {level}")


def _results(
    batch_cores: float = 0.01745,  # 34.9 µs per transaction (35.0 is not exact in floats)
    batch_tps: float = 30_000.0,
    stream_tps: float = 7_500.0,
    c8_tps: float = 3_000.0,
    c1_p50: float = 375.0,
) -> Results:
    return {
        SYNC_NATIVE: [
            _at(SYNC_NATIVE, "batch", 100, batch_tps, cores=batch_cores),
            _at(SYNC_NATIVE, "batch", 200, batch_tps / 2),
            _at(SYNC_NATIVE, "stream", 128, stream_tps),
            _at(SYNC_NATIVE, "stream", 64, stream_tps * 10),  # another shape: not read
            _at(SYNC_NATIVE, "unary", 8, c8_tps),
            _at(SYNC_NATIVE, "unary", 1, 1_000.0, p50=c1_p50),
        ],
        SYNC_ECHO: [
            _at(SYNC_ECHO, "batch", 100, 100_000.0, cores=0.002),
            _at(SYNC_ECHO, "stream", 128, 10_000.0),
            _at(SYNC_ECHO, "unary", 8, 4_000.0),
            _at(SYNC_ECHO, "unary", 1, 3_000.0, p50=300.0),
        ],
        SYNC_LIGHTGBM: [_at(SYNC_LIGHTGBM, "batch", 100, 90_000.0)],  # never read
    }


FAST = Latency(count=100, p50=15.0, p99=60.0, p999=90.0, mean=20.0)


def _verdicts(screen: Latency, results: Results) -> dict[str, bool | None]:
    return {
        t.name.split(" (")[0].split(",")[0]: t.ok for t in serving_targets(screen, results, QUICK)
    }


def test_every_target_passes_at_its_bound() -> None:
    verdicts = _verdicts(FAST, _results())
    assert len(verdicts) == 7
    assert all(ok is True for ok in verdicts.values()), verdicts


def test_each_target_misses_just_past_its_bound() -> None:
    def missed(screen: Latency, results: Results) -> list[str]:
        return [name for name, ok in _verdicts(screen, results).items() if ok is False]

    assert missed(FAST, _results(batch_cores=0.01755)) == [
        "server CPU per transaction inside ScreenBatch"
    ]
    assert missed(FAST, _results(batch_tps=29_999.0)) == ["ScreenBatch throughput"]
    assert missed(FAST, _results(stream_tps=7_499.0)) == ["ScreenStream throughput"]
    assert missed(FAST, _results(c8_tps=2_999.0)) == ["unary throughput"]
    assert missed(FAST, _results(c1_p50=375.1)) == ["unary p50"]
    slow_p50 = dataclasses.replace(FAST, p50=15.1)
    assert missed(slow_p50, _results()) == ["in-process screen p50"]
    slow_p99 = dataclasses.replace(FAST, p99=60.1)
    assert missed(slow_p99, _results()) == ["in-process screen p99"]


def test_a_relative_target_without_its_empty_handler_is_not_judged() -> None:
    results = _results()
    del results[SYNC_ECHO]
    verdicts = _verdicts(FAST, results)
    assert verdicts["ScreenStream throughput"] is None
    assert verdicts["unary throughput"] is None
    assert verdicts["unary p50"] is None
    assert verdicts["ScreenBatch throughput"] is True  # absolute: judged all the same
    empty = Latency(0, math.nan, math.nan, math.nan, math.nan)
    assert _verdicts(empty, results)["in-process screen p50"] is None
    assert Target("x", "", "", "", None).verdict == "n/a"


def test_the_table_shows_fraudscreen_beside_the_empty_handler() -> None:
    section = report_serving_targets(FAST, _results(c8_tps=1_000.0), QUICK)
    lines = section.splitlines()
    assert lines[0].startswith("### Serving targets (issue 16)")
    c8 = next(line for line in lines if line.startswith("| unary throughput"))
    assert "| 1,000 tx/s (unary 8) | 4,000 tx/s (unary 8) | MISS |" in c8
    batch = next(line for line in lines if line.startswith("| server CPU"))
    assert "| 34.9 µs | 4.0 µs | PASS |" in batch
    assert "**6 of 7 judged targets pass.**" in section
