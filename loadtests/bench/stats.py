"""Latency percentiles of a set of samples, and how the tables print numbers and ratios."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Latency:
    """Percentiles of one set of samples, in µs."""

    count: int
    p50: float
    p99: float
    p999: float
    mean: float

    @classmethod
    def of(cls, samples_ns: Sequence[int] | npt.NDArray[np.int64]) -> Latency:
        values = np.asarray(samples_ns, dtype=np.float64) / 1000.0
        if values.size == 0:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        p50, p99, p999 = (float(v) for v in np.percentile(values, [50, 99, 99.9]))
        return cls(int(values.size), p50, p99, p999, float(values.mean()))


def ratio(baseline: float, value: float) -> str:
    """How many times smaller ``value`` is than ``baseline`` (times faster, for latency)."""
    if not (baseline > 0 and value > 0):
        return "n/a"
    return f"{baseline / value:.2f}×"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def us(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"
