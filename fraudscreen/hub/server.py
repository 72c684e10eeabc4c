"""`fraudscreen hub serve`: the hub's gRPC server, started and stopped like the gateway.

Start: token files -> trusted keys -> configured schemas -> database (created 0600) ->
gRPC listening -> health SERVING. Stop (SIGTERM/SIGINT): health NOT_SERVING,
refuse new calls, let in-flight ones finish within the grace period.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2

from fraudscreen.binschema import BinSchema
from fraudscreen.config import TLSConfig, parse_host_port
from fraudscreen.hub.auth import Authenticator
from fraudscreen.hub.database import describe, open_store
from fraudscreen.hub.defaults import (
    DEFAULT_DB,
    DEFAULT_LISTEN,
    DEFAULT_PUBLISHER_TOKENS,
    DEFAULT_SITE_TOKENS,
    MAX_MESSAGE_BYTES,
    STALE_AFTER_SECONDS,
)
from fraudscreen.hub.metrics import HubMetrics, start_metrics_server
from fraudscreen.hub.schemas import SchemaRegistry, load_schema
from fraudscreen.hub.service import SYNC_SERVICE, SyncServicer
from fraudscreen.hub.tokens import TokenFile
from fraudscreen.model.signing import load_trusted_keys
from fraudscreen.rpc.lifecycle import run_until_signalled
from fraudscreen.rpc.server import bind, build_server, server_options

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class HubSettings:
    db: Path | str = DEFAULT_DB  # a SQLite file or a postgresql:// URL
    site_tokens: Path = DEFAULT_SITE_TOKENS  # must exist (`fraudscreen hub add-site`)
    publisher_tokens: Path = DEFAULT_PUBLISHER_TOKENS  # missing: publishing is refused
    trusted_keys: tuple[Path, ...] = ()  # analysts' Ed25519 public keys; none: no publishing
    schemas: tuple[Path, ...] = ()  # bundle dirs or schema JSON; none: the built-in schema
    listen: str = DEFAULT_LISTEN
    tls: TLSConfig = field(default_factory=TLSConfig)
    max_workers: int = 16
    max_message_bytes: int = MAX_MESSAGE_BYTES
    grace_seconds: float = 10.0
    metrics_listen: str = ""  # host:port of /metrics; "" (default): no listener
    stale_after_seconds: float = STALE_AFTER_SECONDS  # a silent site counts as stale


class HubServer:
    """One hub process: owns the store, the servicer and the gRPC server."""

    def __init__(self, settings: HubSettings) -> None:
        parse_host_port(settings.listen)  # a bad address fails before anything is created
        self.settings = settings
        sites = TokenFile(settings.site_tokens)
        publishers = TokenFile(settings.publisher_tokens, missing_ok=True)
        trusted = load_trusted_keys(list(settings.trusted_keys)) if settings.trusted_keys else []
        configured = [load_schema(path) for path in settings.schemas] or [BinSchema.default()]
        # last: a bad flag leaves no file behind; one pooled connection per gRPC worker
        self.store = open_store(settings.db, pool_size=settings.max_workers)
        for schema in configured:
            self.store.put_schema(schema)
        self.schemas = SchemaRegistry([*configured, *self.store.schemas(accepted_only=True)])
        self.authenticator = Authenticator(
            sites, publishers, sites_from_certificates=settings.tls.mutual
        )
        self.metrics = HubMetrics.create(self.store, settings.stale_after_seconds)
        self.servicer = SyncServicer(
            self.store, self.authenticator, self.schemas, trusted, metrics=self.metrics
        )
        self.metrics_port = 0
        self._stop_metrics: Callable[[], None] | None = None
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self._server: grpc.Server | None = None
        self._port = 0
        self._stopping = threading.Event()
        if not trusted:
            log.warning(
                "hub.no_trusted_keys",
                action="publishing is refused until the hub runs with --trusted-key PUB.pem",
            )
        if not settings.publisher_tokens.exists():
            log.warning(
                "hub.no_publishers",
                path=str(settings.publisher_tokens),
                action="create it with `fraudscreen hub add-publisher NAME` to allow publishing",
            )

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("hub not started")
        return self._port

    def start(self) -> int:
        """Listen and serve; returns the bound port."""
        server = self._grpc_server()
        address, bound = bind(server, self.settings.listen, self.settings.tls, setting="--listen")
        server.start()
        self._server, self._port = server, bound
        if self.settings.metrics_listen:
            host, port = parse_host_port(self.settings.metrics_listen)
            self.metrics_port, self._stop_metrics = start_metrics_server(self.metrics, host, port)
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "hub.listening",
            address=address,
            port=bound,
            db=describe(self.settings.db),
            schema_version=self.store.schema_version(),
            sites=self.authenticator.sites.size,
            schemas=[h[:12] for h in self.schemas.hashes()],
            tls=self.settings.tls.enabled,
            mutual_tls=self.settings.tls.mutual,
            metrics_port=self.metrics_port or None,
        )
        return bound

    def stop(self, grace: float | None = None) -> None:
        """Drain: health NOT_SERVING, refuse new calls, finish in-flight ones."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        grace = self.settings.grace_seconds if grace is None else grace
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        drained = None if self._server is None else self._server.stop(grace)
        log.info("hub.draining", grace_seconds=grace)  # logged once new calls are refused
        if drained is not None:
            drained.wait()
        if self._stop_metrics is not None:
            self._stop_metrics()
        self.store.close()
        log.info("hub.stopped")

    def _grpc_server(self) -> grpc.Server:
        return build_server(
            handlers=self.servicer.handlers(),
            health_servicer=self.health,
            service_name=SYNC_SERVICE,
            max_workers=self.settings.max_workers,
            thread_prefix="hub-rpc",
            options=server_options(self.settings.max_message_bytes, keepalive=False),
        )

    def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in ("", SYNC_SERVICE):
            self.health.set(service, status)


def serve(settings: HubSettings) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    return run_until_signalled(HubServer(settings), "hub")
