"""The locustfile's own command-line options (Locust passes them on to worker processes)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from loadtests.checks import REPORT_OUTCOME, SCREEN, SCREEN_STREAM

ACTIONS = (SCREEN, SCREEN_STREAM, REPORT_OUTCOME)
DEFAULT_MIX = "Screen=80,ScreenStream=15,ReportOutcome=5"


@dataclass(frozen=True)
class LoadOptions:
    mix: dict[str, float]
    batch_min: int
    batch_max: int
    retry_share: float
    traffic_days: int
    traffic_limit: int | None
    pace: float  # steps per second per user; 0 = closed loop, no waiting
    summary_out: str | None


def parse_mix(text: str) -> dict[str, float]:
    """'Screen=80,ScreenStream=15,ReportOutcome=5' -> weights; unknown names are errors."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, equals, weight = part.partition("=")
        if not equals or name.strip() not in ACTIONS:
            raise ValueError(
                f"mix entry {part!r}: write NAME=WEIGHT with NAME one of {', '.join(ACTIONS)}"
            )
        mix[name.strip()] = float(weight)
    if any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"mix {text!r}: weights must be >= 0 and not all 0")
    return mix


def parse_batch(text: str) -> tuple[int, int]:
    """'10-50' -> (10, 50): ScreenStream batch sizes drawn uniformly from this range."""
    low, _, high = text.partition("-")
    lo, hi = int(low), int(high or low)
    if not 1 <= lo <= hi <= 1000:
        raise ValueError(f"stream batch {text!r}: write MIN-MAX with 1 <= MIN <= MAX <= 1000")
    return lo, hi


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("fraudscreen load test")
    group.add_argument("--fs-mix", default=DEFAULT_MIX, help="weights per call type")
    group.add_argument("--fs-stream-batch", default="10-50", help="ScreenStream batch MIN-MAX")
    group.add_argument(
        "--fs-retry-share", type=float, default=0.01, help="share of Screens retried as-is"
    )
    group.add_argument("--fs-traffic-days", type=int, default=38, help="days of simulated traffic")
    group.add_argument(
        "--fs-traffic-limit", type=int, default=0, help="max pooled requests; 0: all"
    )
    group.add_argument("--fs-pace", type=float, default=0.0, help="steps/s per user; 0: no wait")
    group.add_argument("--fs-summary-out", default="", help="write exact µs latencies (JSON) here")


def from_parsed(parsed: Any) -> LoadOptions:
    low, high = parse_batch(parsed.fs_stream_batch)
    if not 0.0 <= parsed.fs_retry_share <= 1.0:
        raise ValueError(f"--fs-retry-share {parsed.fs_retry_share}: must be between 0 and 1")
    return LoadOptions(
        mix=parse_mix(parsed.fs_mix),
        batch_min=low,
        batch_max=high,
        retry_share=parsed.fs_retry_share,
        traffic_days=parsed.fs_traffic_days,
        traffic_limit=parsed.fs_traffic_limit or None,
        pace=parsed.fs_pace,
        summary_out=parsed.fs_summary_out or None,
    )
