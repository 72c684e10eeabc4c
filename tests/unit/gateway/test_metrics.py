"""The gateway's metrics without a server."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from fraudscreen.gateway.metrics import GatewayMetrics, observe_many
from fraudscreen.storage.outbox import LedgerStatus


def test_sync_gauges_share_one_ledger_read_per_scrape() -> None:
    reads: list[int] = []

    def status() -> LedgerStatus:
        reads.append(1)
        return LedgerStatus(2.5, 365.0, 3, 4, 5, None, None)

    metrics = GatewayMetrics.create()
    metrics.watch_sync(status, 365.0, lambda: None)
    text = generate_latest(metrics.registry).decode()
    assert len(reads) == 1
    assert "fraudscreen_sync_pending_batches 4.0" in text
    assert "fraudscreen_sync_sent_batches 5.0" in text
    assert "fraudscreen_privacy_epsilon_spent 2.5" in text
    assert "fraudscreen_privacy_epsilon_budget 365.0" in text


@pytest.mark.parametrize("value", [0.0, 0.00005, 0.00007, 0.0001, 0.3, 1.0, 7.5])
def test_observe_many_counts_as_observing_one_by_one(value: float) -> None:
    one_by_one, at_once = GatewayMetrics.create(), GatewayMetrics.create()
    for _ in range(37):
        one_by_one.latency.labels("ScreenBatch").observe(value)
    observe_many(at_once.latency.labels("ScreenBatch"), value, 37)
    expected, got = (_latency_samples(m) for m in (one_by_one, at_once))
    assert got.pop("_sum") == pytest.approx(expected.pop("_sum"))
    assert got == expected


def _latency_samples(metrics: GatewayMetrics) -> dict[str, float]:
    family = next(
        m for m in metrics.registry.collect() if m.name == "fraudscreen_request_latency_seconds"
    )
    return {
        s.name.removeprefix(family.name) + s.labels.get("le", ""): s.value
        for s in family.samples
        if not s.name.endswith("_created")
    }
