"""`fraudscreen serve`: bring the gateway up in a safe order and take it down gently.

Start: site key -> journal -> state rebuilt from the journal -> gRPC listening with health
NOT_SERVING -> model verified, compiled and loaded (or the stand-in policy, loudly) ->
health SERVING. Stop (SIGTERM/SIGINT): health NOT_SERVING, stop accepting RPCs, let
in-flight calls finish within the grace period, flush and close the journal.
"""

from __future__ import annotations

import functools
import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import structlog
from grpc_health.v1 import health, health_pb2

from fraudscreen.config import GatewayConfig, parse_host_port
from fraudscreen.features.online import OnlineFeatureStore
from fraudscreen.gateway.admission import SERVICE, STREAM, UNARY, Admission, Limits
from fraudscreen.gateway.cpu_placement import apply_pinning
from fraudscreen.gateway.metrics import GatewayMetrics, serve_metrics
from fraudscreen.gateway.servicer import (
    SCREENING_SERVICE,
    STREAM_METHODS,
    UNARY_METHODS,
    ScreeningServicer,
)
from fraudscreen.gateway.state_report import StateReporter
from fraudscreen.gateway.updater import ModelUpdater
from fraudscreen.gateway.uploader import SyncAgent
from fraudscreen.gateway.validation import RequestValidator, ValidationRules
from fraudscreen.localtime import SiteClock
from fraudscreen.model.bundle import Bundle, BundleError, load_bundle
from fraudscreen.model.predictor import Predictor
from fraudscreen.model.releases import ReleaseError
from fraudscreen.model.stacked import StackedPredictor
from fraudscreen.policy import Policy, PolicyRules, load_blocked_tokens
from fraudscreen.rpc.lifecycle import run_until_signalled
from fraudscreen.rpc.port_check import ensure_can_listen
from fraudscreen.rpc.server import bind, build_server, server_options
from fraudscreen.screening import ActiveModel, ModelSlot, ScreeningEngine
from fraudscreen.storage.journal import Journal, JournalSettings
from fraudscreen.storage.outbox import PrivacyOutbox
from fraudscreen.tokenizer import CardTokenizer, load_or_create_site_key

log = structlog.get_logger(__name__)

MAINTENANCE_SECONDS = 30.0
MODEL_UPDATE_HEALTH = "fraudscreen.model_update"  # NOT_SERVING after a failed update
JOURNAL_PURGE_SECONDS = 3600.0


def build_policy(config: GatewayConfig) -> Policy:
    rules = config.policy
    blocked: frozenset[str] = frozenset()
    if rules.blocked_cards_file is not None:
        blocked = load_blocked_tokens(rules.blocked_cards_file.read_text().splitlines())
    return Policy(
        PolicyRules(
            blocked_card_tokens=blocked,
            decline_above_minor=rules.decline_above_minor,
            review_above_minor=rules.review_above_minor,
            stand_in_review_above_minor=rules.stand_in_review_above_minor,
            review_threshold=rules.review_threshold,
            decline_threshold=rules.decline_threshold,
        )
    )


@dataclass
class _Running:
    server: grpc.Server
    port: int
    metrics_port: int | None
    stop_metrics: Callable[[], None] | None


class Gateway:
    """One gateway process: owns the journal, engine, gRPC server and metrics listener."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = GatewayMetrics.create()
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.slot = ModelSlot()
        self.policy = build_policy(config)
        self.journal = Journal(
            JournalSettings(
                path=config.journal.path,
                durability=config.journal.durability,
                batch_max=config.journal.batch_max,
                flush_interval=config.journal.flush_interval_ms / 1000,
                max_queue=config.journal.max_queue,
                retention_seconds=config.journal.retention_days * 86_400,
            )
        )
        self.engine = ScreeningEngine(
            store=OnlineFeatureStore(),
            slot=self.slot,
            policy=self.policy,
            journal=self.journal,
            idempotency_window_seconds=config.screening.idempotency_window_hours * 3600,
        )
        tokenizer = CardTokenizer(load_or_create_site_key(config.site.key_file))
        self.validator = RequestValidator(
            ValidationRules(
                currencies=frozenset(config.site.currencies),
                max_age_seconds=config.screening.max_transaction_age_days * 86_400,
                max_skew_seconds=config.screening.max_clock_skew_seconds,
            ),
            tokenizer,
            SiteClock(config.site.timezone),
        )
        self.servicer = ScreeningServicer(
            self.engine,
            self.validator,
            self.metrics,
            log_requests=config.logging.requests,
            max_message_bytes=config.server.max_message_bytes,
        )
        settings = config.server
        self.admission = Admission(
            Limits(
                unary=settings.max_concurrent_rpcs,
                stream=settings.max_streams,
                service=settings.max_workers,
                idle_timeout=settings.idle_timeout,
            ),
            {f"/{SCREENING_SERVICE}/{name}": UNARY for name in UNARY_METHODS}
            | {f"/{SCREENING_SERVICE}/{name}": STREAM for name in STREAM_METHODS},
            on_refused=lambda kind: self.metrics.calls_refused.labels(kind).inc(),
            on_idle_ended=lambda kind: self.metrics.calls_idle_ended.labels(kind).inc(),
        )
        for kind in (UNARY, STREAM, SERVICE):  # read when scraped: nothing per call
            self.metrics.calls_open.labels(kind).set_function(
                functools.partial(self.admission.open_calls, kind)
            )
        self.outbox = PrivacyOutbox(config.journal.path, budget=config.privacy.epsilon_budget)
        self._corrected: dict[str, str | None] = {}  # release version -> the model it corrects
        self.sync_agent = SyncAgent(
            site_id=config.site.id,
            journal=self.journal,
            outbox=self.outbox,
            schema=lambda: model.bin_schema if (model := self.slot.current) else None,
            privacy=config.privacy,
            sync=config.sync,
            band_model=self._band_model,
        )
        self.updater = ModelUpdater(
            config,
            slot=self.slot,
            engine=self.engine,
            policy=self.policy,
            on_swap=self._show_model,
            on_result=self._update_result,
        )
        self.state_report = StateReporter(
            model=lambda: (m.version, m.predictor.kind) if (m := self.slot.current) else ("", ""),
            stand_in=lambda: self.engine.stand_in_active,
            outbox=self.outbox,
        )
        self.sync_agent.gateway_state = self.state_report.message
        self.updater.gateway_state = self.state_report.message
        self._running: _Running | None = None
        self._stopping = threading.Event()
        self._maintenance: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._running is None:
            raise RuntimeError("gateway not started")
        return self._running.port

    @property
    def metrics_port(self) -> int | None:
        return None if self._running is None else self._running.metrics_port

    def start(self) -> int:
        """Start serving; returns the bound gRPC port. Blocks while the model compiles."""
        port = self.listen()
        self.become_ready()
        return port

    def listen(self) -> int:
        """Journal, state and gRPC up; health NOT_SERVING and calls UNAVAILABLE until ready."""
        log.info(
            "gateway.starting",
            listen=self.config.server.listen,
            metrics=self.config.metrics.listen or None,
            journal=str(self.config.journal.path),
            requests_logged=self.config.logging.requests,
        )
        self.journal.start()
        self.engine.restore()
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        server = self._grpc_server()
        address, bound = bind(server, self.config.server.listen, self.config.server.tls)
        self.admission.start()
        server.start()
        metrics_port, stop_metrics = self._start_metrics()
        self._running = _Running(server, bound, metrics_port, stop_metrics)
        log.info(
            "gateway.listening",
            address=address,
            port=bound,
            tls=self.config.server.tls.enabled,
            mutual_tls=self.config.server.tls.mutual,
        )
        return bound

    def become_ready(self) -> None:
        """Load the model (or fall back to the stand-in policy), then health SERVING."""
        self.load_model()
        settle_garbage_collector()
        self.servicer.ready = True
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        self._maintenance = threading.Thread(target=self._maintain, name="maintenance", daemon=True)
        self._maintenance.start()
        self.health.set(MODEL_UPDATE_HEALTH, health_pb2.HealthCheckResponse.SERVING)
        self.updater.start()
        if self.config.sync.hub:
            self.sync_agent.start()
            log.info(
                "sync.started",
                hub=self.config.sync.hub,
                epsilon_per_day=self.config.privacy.epsilon_per_day,
            )
        log.info("gateway.ready", port=self.port, stand_in=self.engine.stand_in_active)

    def load_model(self) -> None:
        """Load the configured bundle; on failure keep answering with the stand-in policy."""
        try:
            bundle = self._release_or_configured_bundle()
            model = ActiveModel.from_bundle(
                bundle,
                self.policy,
                self.updater.compile_options,
                native=self.config.model.predictor == "native",
            )
        except (BundleError, OSError, ValueError) as exc:
            log.error(
                "model.unavailable_stand_in_active",
                reason=str(exc),
                action="fix or replace the model bundle; until then the documented "
                "stand-in policy answers and every response says stand_in=true",
            )
            self.slot.swap(None)
            self.metrics.set_model(None, "none")
            return
        self.slot.swap(model)
        self._show_model(model)
        log.info(
            "model.loaded",
            model_version=model.version,
            predictor=model.predictor.kind,
            review=model.thresholds.review,
            decline=model.thresholds.decline,
        )

    def _release_or_configured_bundle(self) -> Bundle:
        try:
            release = self.updater.current_release()
        except ReleaseError as exc:
            log.error(
                "model.release_unusable",
                reason=str(exc),
                action="falling back to the configured bundle; run "
                "`fraudscreen model status` to inspect the releases",
            )
            release = None
        return release if release is not None else load_bundle(self.config.model.bundle)

    def _band_model(self, version: str, base: str) -> Predictor | None:
        """The predictor of model `base` when rows journaled under `version` were served
        by a correction of it, so the uploader bands them by their base score; else None.

        Any correction of `base` counts, live or not (a row is released 2-3 weeks after it
        was served, often under a later correction): the release store keeps every
        installed release's manifest. The base predictor is the live model's: the uploader
        releases only the live schema, so the live model is `base` or a correction of it.
        """
        live = self.slot.current
        if live is None:
            return None
        if isinstance(live.predictor, StackedPredictor):
            schema = live.bin_schema
            if schema is None or schema.model_version != base:
                return None
            predictor = live.predictor.base
            if version == live.version:
                return predictor
        elif live.version == base:
            predictor = live.predictor
        else:
            return None
        if version not in self._corrected:
            self._corrected[version] = self.updater.store.base_of(version)
        return predictor if self._corrected[version] == base else None

    def _show_model(self, model: ActiveModel) -> None:
        self.metrics.set_model(model.version, model.predictor.kind)

    def _update_result(self, result: str, reason: str | None) -> None:
        self.metrics.model_updates.labels(result).inc()
        self.state_report.update_result(result)
        status = (
            health_pb2.HealthCheckResponse.NOT_SERVING
            if result in ("refused", "failed")
            else health_pb2.HealthCheckResponse.SERVING
        )
        self.health.set(MODEL_UPDATE_HEALTH, status)

    def stop(self, grace: float | None = None) -> None:
        """Drain: health NOT_SERVING, refuse new calls, finish in-flight ones, close."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        grace = self.config.server.grace_seconds if grace is None else grace
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        # New calls are refused from here on, before the background workers are joined
        # (which can take a while on a busy machine); in-flight calls get `grace` seconds.
        drained = None if self._running is None else self._running.server.stop(grace)
        log.info("gateway.draining", grace_seconds=grace)  # logged once new calls are refused
        self.sync_agent.stop()
        self.updater.stop()
        if self._running is not None and drained is not None:
            drained.wait()
            self.admission.stop()
            if self._running.stop_metrics is not None:
                self._running.stop_metrics()
        self.journal.close()
        log.info("gateway.stopped")

    def _grpc_server(self) -> grpc.Server:
        settings = self.config.server
        return build_server(
            handlers=self.servicer.handlers(),
            health_servicer=self.health,
            service_name=SCREENING_SERVICE,
            max_workers=settings.max_workers,  # only calls that hold no thread (health Watch)
            thread_prefix="rpc",
            options=server_options(settings.max_message_bytes, keepalive=True),
            interceptors=[self.admission],
        )

    def _start_metrics(self) -> tuple[int | None, Callable[[], None] | None]:
        self.metrics.watch_journal(
            lambda: self.journal.queue_depth,
            lambda: self.journal.committed,
            lambda: self.journal.write_errors,
        )
        self.metrics.watch_sync(
            self.outbox.status, self.outbox.budget, lambda: self.sync_agent.state.last_push_ok
        )
        if not self.config.metrics.listen:
            return None, None
        host, port = parse_host_port(self.config.metrics.listen)
        tls = self.config.metrics.tls
        ensure_can_listen(host, port, "metrics.listen")
        port, stop = serve_metrics(
            self.metrics,
            host,
            port,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            client_cafile=str(tls.client_ca_file) if tls.client_ca_file else None,
        )
        log.info("metrics.listening", host=host, port=port, tls=tls.enabled)
        return port, stop

    def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for service in ("", SCREENING_SERVICE):
            self.health.set(service, status)

    def _maintain(self) -> None:
        last_purge = time.monotonic()
        while not self._stopping.wait(MAINTENANCE_SECONDS):
            try:
                self.engine.maintain()
                gc.freeze()
                if time.monotonic() - last_purge >= JOURNAL_PURGE_SECONDS:
                    self.journal.purge()  # the writer logs journal.purged with the counts
                    last_purge = time.monotonic()
            except Exception as exc:
                log.error("maintenance.failed", error=str(exc), exc_info=exc)


def settle_garbage_collector() -> None:
    """Keep long-lived state out of the cyclic GC's way.

    Card and terminal windows are millions of small containers; a full collection walking
    them stalled requests by 100+ ms under load. Everything alive after start-up (and, from
    the maintenance loop, every 30 s) is frozen into the permanent generation, so the
    collector only scans what requests allocate. Our state holds no reference cycles.
    """
    gc.collect()
    gc.freeze()


def serve(config: GatewayConfig) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    apply_pinning(config.server.pin_cpu)
    return run_until_signalled(Gateway(config), "gateway")
