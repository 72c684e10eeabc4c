"""Prometheus metrics for the gateway, on their own registry (tests run several servers)."""

from __future__ import annotations

import ssl
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fraudscreen.storage.outbox import LedgerStatus

LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.5,
    1.0,
)


@dataclass
class GatewayMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    journal_queue: Gauge
    journal_committed: Gauge
    journal_write_errors: Gauge
    model_info: Gauge
    stand_in: Gauge
    outcomes: Counter
    sync_pending: Gauge
    sync_sent: Gauge
    epsilon_spent: Gauge
    epsilon_budget: Gauge
    sync_last_push: Gauge
    model_updates: Counter
    calls_open: Gauge
    calls_refused: Counter
    calls_idle_ended: Counter
    deadline_unscreened: Counter

    @classmethod
    def create(cls) -> GatewayMetrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "fraudscreen_requests",
                "RPCs by method, gRPC code and decision",
                ["method", "code", "decision"],
                registry=registry,
            ),
            latency=Histogram(
                "fraudscreen_request_latency_seconds",
                "server-side time per screened item",
                ["method"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            journal_queue=Gauge(
                "fraudscreen_journal_queue_depth",
                "records waiting for the journal writer",
                registry=registry,
            ),
            journal_committed=Gauge(
                "fraudscreen_journal_committed",
                "records committed since start",
                registry=registry,
            ),
            journal_write_errors=Gauge(
                "fraudscreen_journal_write_errors",
                "failed journal commits (each retried)",
                registry=registry,
            ),
            model_info=Gauge(
                "fraudscreen_model_info",
                "the live model (value 1)",
                ["version", "predictor"],
                registry=registry,
            ),
            stand_in=Gauge(
                "fraudscreen_stand_in_active",
                "1 when no model is loaded and the stand-in policy answers",
                registry=registry,
            ),
            outcomes=Counter(
                "fraudscreen_outcomes",
                "reported outcomes by kind and whether the transaction was known",
                ["outcome", "known"],
                registry=registry,
            ),
            sync_pending=Gauge(
                "fraudscreen_sync_pending_batches",
                "released batches not yet acknowledged by the hub",
                registry=registry,
            ),
            sync_sent=Gauge(
                "fraudscreen_sync_sent_batches", "batches the hub acknowledged", registry=registry
            ),
            epsilon_spent=Gauge(
                "fraudscreen_privacy_epsilon_spent",
                "epsilon spent by released periods (privacy ledger)",
                registry=registry,
            ),
            epsilon_budget=Gauge(
                "fraudscreen_privacy_epsilon_budget",
                "the site's lifetime epsilon budget",
                registry=registry,
            ),
            model_updates=Counter(
                "fraudscreen_model_updates",
                "release installs by result (swapped, refused, failed, rolled_back)",
                ["result"],
                registry=registry,
            ),
            sync_last_push=Gauge(
                "fraudscreen_sync_last_success_timestamp_seconds",
                "when the hub last acknowledged a batch (0: never)",
                registry=registry,
            ),
            calls_open=Gauge(
                "fraudscreen_calls_open",
                "admitted calls in progress by kind (unary, stream, service)",
                ["kind"],
                registry=registry,
            ),
            calls_refused=Counter(
                "fraudscreen_calls_refused",
                "calls refused RESOURCE_EXHAUSTED because their kind was at its limit",
                ["kind"],
                registry=registry,
            ),
            calls_idle_ended=Counter(
                "fraudscreen_calls_idle_ended",
                "calls ended after server.idle_timeout without a request message",
                ["kind"],
                registry=registry,
            ),
            deadline_unscreened=Counter(
                "fraudscreen_deadline_unscreened",
                "batch items not screened because the caller's deadline had passed",
                ["method"],
                registry=registry,
            ),
        )

    def watch_journal(
        self,
        depth: Callable[[], float],
        committed: Callable[[], float],
        errors: Callable[[], float],
    ) -> None:
        self.journal_queue.set_function(depth)
        self.journal_committed.set_function(committed)
        self.journal_write_errors.set_function(errors)

    def watch_sync(
        self,
        status: Callable[[], LedgerStatus],
        budget: float,
        last_push: Callable[[], float | None],
    ) -> None:
        """Sync gauges read the ledger when scraped: one SQLite query per scrape."""
        snapshot = _Recent(status, max_age=1.0)
        self.sync_pending.set_function(lambda: snapshot().pending)
        self.sync_sent.set_function(lambda: snapshot().sent)
        self.epsilon_spent.set_function(lambda: snapshot().spent)
        self.epsilon_budget.set(budget)
        self.sync_last_push.set_function(lambda: last_push() or 0.0)

    def set_model(self, version: str | None, predictor: str) -> None:
        self.model_info.clear()
        if version is None:
            self.stand_in.set(1)
        else:
            self.stand_in.set(0)
            self.model_info.labels(version=version, predictor=predictor).set(1)


def observe_many(histogram: Histogram, value: float, count: int) -> None:
    """`histogram.observe(value)` `count` times, in one step: a batch's items each take
    the batch's time share, and 100 observe calls cost ~70 µs. prometheus_client has no
    public call for it, so this adds to the same sum and bucket observe would (its
    internals since 0.4); without them it falls back to observing one by one."""
    buckets = getattr(histogram, "_buckets", None)
    bounds = getattr(histogram, "_upper_bounds", None)
    total = getattr(histogram, "_sum", None)
    if buckets is None or bounds is None or total is None:
        for _ in range(count):
            histogram.observe(value)
        return
    total.inc(value * count)
    buckets[bisect_left(bounds, value)].inc(count)  # the first bound >= value, as observe


class _Recent:
    """The last `read()` result while younger than `max_age`, so the gauges of one scrape
    share one ledger query instead of running one each."""

    def __init__(self, read: Callable[[], LedgerStatus], max_age: float) -> None:
        self._read = read
        self._max_age = max_age
        self._value: LedgerStatus | None = None
        self._at = 0.0

    def __call__(self) -> LedgerStatus:
        now = time.monotonic()
        if self._value is None or now - self._at > self._max_age:
            self._value, self._at = self._read(), now
        return self._value


def serve_metrics(
    metrics: GatewayMetrics,
    host: str,
    port: int,
    *,
    certfile: str | None = None,
    keyfile: str | None = None,
    client_cafile: str | None = None,
) -> tuple[int, Callable[[], None]]:
    """Start the /metrics HTTP(S) listener; returns the bound port and a stop function."""
    server, thread = start_http_server(
        port,
        addr=host,
        registry=metrics.registry,
        certfile=certfile,
        keyfile=keyfile,
        client_cafile=client_cafile,
        client_auth_required=client_cafile is not None,
        tls_min_version=ssl.TLSVersion.TLSv1_2 if certfile else None,
    )

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return int(server.server_port), stop
