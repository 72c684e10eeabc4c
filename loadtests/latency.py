"""Exact latencies in microseconds, because Locust's own stats round to whole milliseconds.

One HdrHistogram per request name (1 µs .. 60 s, 3 significant digits) plus call, failure
and transaction counts. A book can be encoded, shipped from a Locust worker to the master
and merged there, so ``--processes`` gives the same numbers as a single process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
ITEM_SUFFIX = " item"  # "ScreenStream item": per-item latencies inside a stream call


class NameStats(TypedDict):
    """One request name in the summary: counts and exact percentiles (µs)."""

    calls: int
    failures: int
    transactions: int
    p50_us: float | None
    p90_us: float | None
    p99_us: float | None
    p999_us: float | None
    max_us: float | None
    histogram: str | None  # HdrHistogram V2 "histoblob", for later re-analysis


def _new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def percentile_key(percentile: float) -> str:
    """50.0 -> 'p50_us', 99.9 -> 'p999_us' (the names used in the summary and slo.toml)."""
    return "p" + f"{percentile:g}".replace(".", "") + "_us"


@dataclass
class _Counts:
    calls: int = 0
    failures: int = 0
    transactions: int = 0


class LatencyBook:
    """Histograms and counts per request name, plus the wall-clock span of the samples."""

    def __init__(self) -> None:
        self._histograms: dict[str, HdrHistogram] = {}
        self._counts: dict[str, _Counts] = {}
        self.first: float | None = None  # time.time() of the first sample
        self.last: float | None = None

    def reset(self) -> None:
        self._histograms.clear()
        self._counts.clear()
        self.first = self.last = None

    def _span(self, moment: float) -> None:
        self.first = moment if self.first is None else min(self.first, moment)
        self.last = moment if self.last is None else max(self.last, moment)

    def call(self, name: str, now: float, *, failed: bool, transactions: int) -> None:
        self._span(now)
        counts = self._counts.setdefault(name, _Counts())
        counts.calls += 1
        counts.failures += failed
        counts.transactions += transactions

    def record(self, name: str, latency_us: float) -> None:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = self._histograms[name] = _new_histogram()
        histogram.record_value(min(max(round(latency_us), LOWEST_US), HIGHEST_US))

    def export(self) -> dict[str, Any]:
        """A JSON-able snapshot (for worker -> master), see `merge`."""
        return {
            "first": self.first,
            "last": self.last,
            "counts": {n: [c.calls, c.failures, c.transactions] for n, c in self._counts.items()},
            "histograms": {n: h.encode().decode() for n, h in self._histograms.items()},
        }

    def merge(self, snapshot: dict[str, Any]) -> None:
        for bound in ("first", "last"):
            if snapshot.get(bound) is not None:
                self._span(float(snapshot[bound]))
        for name, (calls, failures, transactions) in snapshot.get("counts", {}).items():
            counts = self._counts.setdefault(name, _Counts())
            counts.calls += int(calls)
            counts.failures += int(failures)
            counts.transactions += int(transactions)
        for name, blob in snapshot.get("histograms", {}).items():
            histogram = self._histograms.get(name)
            if histogram is None:
                histogram = self._histograms[name] = _new_histogram()
            histogram.decode_and_add(blob)

    def summary(self) -> dict[str, NameStats]:
        names = sorted(set(self._counts) | set(self._histograms))
        return {name: self._stats(name) for name in names}

    def _stats(self, name: str) -> NameStats:
        counts = self._counts.get(name, _Counts())
        histogram = self._histograms.get(name)
        if histogram is None or histogram.get_total_count() == 0:
            values: list[float | None] = [None] * len(PERCENTILES)
            top: float | None = None
            blob = None
        else:
            values = [float(histogram.get_value_at_percentile(p)) for p in PERCENTILES]
            top = float(histogram.get_max_value())
            blob = histogram.encode().decode()
        return NameStats(
            calls=counts.calls,
            failures=counts.failures,
            transactions=counts.transactions,
            p50_us=values[0],
            p90_us=values[1],
            p99_us=values[2],
            p999_us=values[3],
            max_us=top,
            histogram=blob,
        )
