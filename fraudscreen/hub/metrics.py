"""Prometheus metrics of the hub: what this process did (pushes, refusals) and what the
fleet looks like (sites by model version, stale sites), read from the shared database at
scrape time, so every hub process of a fleet reports the same fleet figures."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fraudscreen.hub.fleet import sites_by_version, stale_sites
from fraudscreen.hub.storage import HubStore


class FleetCollector(Collector):
    """Fleet gauges computed from the store on each scrape (one query, no cache)."""

    def __init__(
        self, store: HubStore, stale_after: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._stale_after = stale_after
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        states = self._store.site_states()
        by_version = GaugeMetricFamily(
            "fraudscreen_hub_sites_by_version",
            "sites whose latest report names this model version",
            labels=["model_version"],
        )
        for version, count in sites_by_version(states).items():
            by_version.add_metric([version or "(none)"], count)
        yield by_version
        yield GaugeMetricFamily(
            "fraudscreen_hub_sites_reporting", "sites that ever reported their state", len(states)
        )
        yield GaugeMetricFamily(
            "fraudscreen_hub_sites_stale",
            f"sites silent for more than {self._stale_after:g} s",
            len(stale_sites(states, self._clock(), self._stale_after)),
        )
        yield GaugeMetricFamily(
            "fraudscreen_hub_sites_stand_in",
            "sites whose latest report says they run on the stand-in policy",
            sum(1 for s in states if s.state.stand_in),
        )


@dataclass
class HubMetrics:
    registry: CollectorRegistry
    pushes: Counter
    refused: Counter
    reports: Counter

    @classmethod
    def create(cls, store: HubStore, stale_after: float) -> HubMetrics:
        registry = CollectorRegistry()
        registry.register(FleetCollector(store, stale_after))
        return cls(
            registry=registry,
            pushes=Counter(
                "fraudscreen_hub_pushes",
                "PushBatch calls this process answered OK, by result (stored, duplicate)",
                ["result"],
                registry=registry,
            ),
            refused=Counter(
                "fraudscreen_hub_refused",
                "calls this process refused, by method and gRPC code",
                ["method", "code"],
                registry=registry,
            ),
            reports=Counter(
                "fraudscreen_hub_state_reports",
                "gateway state reports recorded by this process",
                registry=registry,
            ),
        )


def start_metrics_server(
    metrics: HubMetrics, host: str, port: int
) -> tuple[int, Callable[[], None]]:
    """Start the /metrics listener; returns the bound port and a stop function."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return int(server.server_port), stop
