"""The gateway's metrics without a server."""

from __future__ import annotations

from prometheus_client import generate_latest

from fraudscreen.gateway.metrics import GatewayMetrics
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
