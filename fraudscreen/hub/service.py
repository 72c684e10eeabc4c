"""The fraudscreen.v1.Sync servicer: authenticate, parse, call storage, map errors.

Status codes a gateway or analyst acts on:
  UNAUTHENTICATED      no credentials, or a token the hub does not know
  PERMISSION_DENIED    a site pushing another site's batch; a publisher pushing; a site
                       publishing
  INVALID_ARGUMENT     malformed request; google.rpc.BadRequest names each bad field
                       (batch.kind unspecified; a known-domain batch without every cell
                       of its schema's domain: batch.cells)
  FAILED_PRECONDITION  unknown bin schema (batch.schema_hash); a release whose signature or
                       bundle does not verify
  ALREADY_EXISTS       a batch id (or model version) already stored with other content:
                       the hub keeps the first and never overwrites; retrying cannot help
An OK PushBatch means the hub holds the batch durably: `stored` says this call wrote it,
`duplicate` that an identical copy was already there.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

import grpc
import structlog
from google.protobuf.message import Message
from google.rpc import status_pb2
from grpc_status import rpc_status

from fraudscreen.hub.auth import (
    Authenticator,
    Caller,
    require_own_site,
    require_publisher,
    require_site,
)
from fraudscreen.hub.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ReleaseRejectedError,
    UnknownSchemaError,
)
from fraudscreen.hub.fleet import GatewayState
from fraudscreen.hub.metrics import HubMetrics
from fraudscreen.hub.releases import verify_release
from fraudscreen.hub.schemas import SchemaRegistry
from fraudscreen.hub.storage import ConflictError, HubStore
from fraudscreen.hub.validation import (
    batch_from_request,
    gateway_state_from_request,
    release_from_request,
)
from fraudscreen.model.signing import PublicKey
from fraudscreen.rpc.parsing import decoded, lenient_parser
from fraudscreen.rpc.status import FieldViolation, RequestInvalidError, StatusMap, code_name
from fraudscreen.v1 import sync_pb2 as pb

log = structlog.get_logger("fraudscreen.hub")

SYNC_SERVICE = pb.DESCRIPTOR.services_by_name["Sync"].full_name
R = TypeVar("R")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


STATUSES = StatusMap(
    logger=log,
    internal_event="sync.internal_error",
    internal_message="internal error; the hub logged it",
)
STATUSES.register(AuthenticationError, grpc.StatusCode.UNAUTHENTICATED)
STATUSES.register(PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED)
STATUSES.register(
    UnknownSchemaError,
    grpc.StatusCode.FAILED_PRECONDITION,
    lambda _exc: [FieldViolation("batch.schema_hash", "not a bin schema this hub accepts")],
)
STATUSES.register(ReleaseRejectedError, grpc.StatusCode.FAILED_PRECONDITION)
STATUSES.register(ConflictError, grpc.StatusCode.ALREADY_EXISTS)


def hub_status(exc: Exception) -> status_pb2.Status:
    """Map a refusal to the status its caller can act on; anything else is INTERNAL."""
    return STATUSES.status(exc)


def _certificate_names(context: grpc.ServicerContext) -> list[bytes]:
    """Common names of the verified client certificate (none without mutual TLS)."""
    value: object = context.auth_context().get("x509_common_name")
    if isinstance(value, bytes):
        return [value]
    if value is None:
        return []
    return [v for v in cast(Iterable[object], value) if isinstance(v, bytes)]


class SyncServicer:
    """Handlers for fraudscreen.v1.Sync; registered by `handlers()` with lenient parsing."""

    def __init__(
        self,
        store: HubStore,
        authenticator: Authenticator,
        schemas: SchemaRegistry,
        trusted_keys: Sequence[PublicKey],
        *,
        now: Callable[[], dt.datetime] = _utc_now,
        metrics: HubMetrics | None = None,
    ) -> None:
        self._store = store
        self._auth = authenticator
        self._schemas = schemas
        self._trusted = list(trusted_keys)
        self._now = now
        self._metrics = metrics or HubMetrics.create(store, stale_after=3 * 3600.0)

    def handlers(self) -> grpc.GenericRpcHandler[Any, Any]:
        def unary(handler: Callable[[object, grpc.ServicerContext], Message], request: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                handler,
                request_deserializer=lenient_parser(request),
                response_serializer=lambda message: message.SerializeToString(),
            )

        return grpc.method_handlers_generic_handler(
            SYNC_SERVICE,
            {
                "PushBatch": unary(self.PushBatch, pb.PushBatchRequest),
                "FetchRelease": unary(self.FetchRelease, pb.FetchReleaseRequest),
                "PublishRelease": unary(self.PublishRelease, pb.PublishReleaseRequest),
                "ReportState": unary(self.ReportState, pb.ReportStateRequest),
            },
        )

    def PushBatch(self, message: object, context: grpc.ServicerContext) -> pb.PushBatchResponse:
        def push(caller: Caller) -> pb.PushBatchResponse:
            require_site(caller)
            request = decoded(message, pb.PushBatchRequest)
            if request.HasField("batch"):  # else validation names the missing field
                require_own_site(caller, request.batch.site_id)
            batch = batch_from_request(request, self._schemas, today=self._now().date())
            state = self._state(request)
            stored = self._store.put_batch(batch)
            self._metrics.pushes.labels("stored" if stored else "duplicate").inc()
            self._record_state(batch.site_id, state)
            log.info(
                "sync.batch_stored" if stored else "sync.batch_duplicate",
                site_id=batch.site_id,
                batch_id=batch.batch_id,
                period=batch.period,
                schema_hash=batch.schema_hash[:12],
                cells=len(batch.cells),
                epsilon=batch.epsilon,
                kind=batch.kind,
            )
            return pb.PushBatchResponse(stored=stored, duplicate=not stored)

        return self._serve("PushBatch", context, push)

    def FetchRelease(
        self, message: object, context: grpc.ServicerContext
    ) -> pb.FetchReleaseResponse:
        def fetch(caller: Caller) -> pb.FetchReleaseResponse:
            site = require_site(caller)
            request = decoded(message, pb.FetchReleaseRequest)
            self._record_state(site, self._state(request))
            found = self._store.release_for(site, request.current_version)
            if found is None:
                return pb.FetchReleaseResponse(available=False)
            log.info("sync.release_sent", site_id=site, model_version=found.model_version)
            return pb.FetchReleaseResponse(
                available=True,
                release=pb.ModelRelease(
                    model_version=found.model_version,
                    files=[pb.ReleaseFile(name=n, content=c) for n, c in found.files.items()],
                    published_at=found.published_at,
                ),
            )

        return self._serve("FetchRelease", context, fetch)

    def PublishRelease(
        self, message: object, context: grpc.ServicerContext
    ) -> pb.PublishReleaseResponse:
        def publish(caller: Caller) -> pb.PublishReleaseResponse:
            publisher = require_publisher(caller)
            request = decoded(message, pb.PublishReleaseRequest)
            known = self._auth.sites.names() | {s.site_id for s in self._store.sites_summary()}
            version, files, sites = release_from_request(request, known)
            verified = verify_release(version, files, self._trusted)
            if verified.bin_schema is not None:  # gateways running it aggregate with it
                self._store.put_schema(verified.bin_schema, accept=True)
                if self._schemas.add(verified.bin_schema):
                    log.info("sync.schema_accepted", schema_hash=verified.bin_schema.hash[:12])
            published_at = self._now().isoformat(timespec="seconds")
            record = self._store.put_release(version, files, sites, published_at)
            log.info(
                "sync.release_published",
                publisher=publisher,
                model_version=version,
                sites=list(sites) if sites is not None else "all",
                seq=record.seq,
            )
            return pb.PublishReleaseResponse(
                model_version=version, sites=len(sites) if sites is not None else len(known)
            )

        return self._serve("PublishRelease", context, publish)

    def ReportState(self, message: object, context: grpc.ServicerContext) -> pb.ReportStateResponse:
        def report(caller: Caller) -> pb.ReportStateResponse:
            site = require_site(caller)
            request = decoded(message, pb.ReportStateRequest)
            state = self._state(request)
            if state is None:
                raise RequestInvalidError(
                    [FieldViolation("state", "required: the gateway's state")]
                )
            self._record_state(site, state)
            return pb.ReportStateResponse()

        return self._serve("ReportState", context, report)

    @staticmethod
    def _state(
        request: pb.PushBatchRequest | pb.FetchReleaseRequest | pb.ReportStateRequest,
    ) -> GatewayState | None:
        """The gateway state a request carries (validated), or None: older gateways send
        none and are served as before."""
        if not request.HasField("state"):
            return None
        return gateway_state_from_request(request.state)

    def _record_state(self, site: str, state: GatewayState | None) -> None:
        if state is None:
            return
        if self._store.put_site_state(site, state, self._now().timestamp()):
            log.info(
                "sync.state_changed",
                site_id=site,
                model_version=state.model_version,
                stand_in=state.stand_in,
                last_update_result=state.last_update_result,
            )
        self._metrics.reports.inc()

    def _serve(self, method: str, context: grpc.ServicerContext, work: Callable[[Caller], R]) -> R:
        started = time.perf_counter()
        caller: Caller | None = None
        try:
            caller = self._auth.authenticate(
                context.invocation_metadata(), _certificate_names(context)
            )
            return work(caller)
        except Exception as exc:
            status = hub_status(exc)
            self._metrics.refused.labels(method, code_name(status)).inc()
            log.info(
                "sync.refused",
                method=method,
                caller=caller.name if caller is not None else None,
                code=code_name(status),
                message=status.message,
                latency_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            context.abort_with_status(rpc_status.to_status(status))
