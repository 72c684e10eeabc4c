"""The gateway's side of sync: release matured periods, then push the outbox to the hub.

Runs in the background. Releasing needs no network (it only writes the outbox), so a
gateway offline for days keeps noising each matured period exactly once and catches up
when the link returns; pushes retry with exponential backoff and full jitter; the hub
upserts on (site, batch id), so a resend after a lost acknowledgement is harmless.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import structlog

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.config import PrivacyConfig, SyncConfig
from fraudscreen.gateway.hub_link import HubWorker, hub_metadata
from fraudscreen.model.predictor import Predictor
from fraudscreen.privacy.aggregate import DAY, LabelledRow, Period, due_periods, exact_table
from fraudscreen.privacy.release import ReleaseParameters
from fraudscreen.score_bands import reads_score, with_score
from fraudscreen.storage.journal import Journal
from fraudscreen.storage.outbox import BudgetExhaustedError, OutboxEntry, PrivacyOutbox
from fraudscreen.v1 import sync_pb2 as sync_pb
from fraudscreen.v1 import sync_pb2_grpc as sync_grpc

log = structlog.get_logger(__name__)

_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


# outbox payload "kind" -> wire enum; payloads stored before "kind" existed were thresholded
_KINDS = {
    "threshold": sync_pb.RELEASE_KIND_THRESHOLD,
    "known_domain": sync_pb.RELEASE_KIND_KNOWN_DOMAIN,
}


def batch_message(payload: dict[str, Any]) -> sync_pb.AggregateBatch:
    """The stored outbox payload as the wire message (same content on every retry)."""
    kind = payload.get("kind", "threshold")
    if kind not in _KINDS:
        raise ValueError(f"outbox payload has unknown release kind {kind!r}")
    return sync_pb.AggregateBatch(
        site_id=payload["site_id"],
        batch_id=payload["batch_id"],
        period=payload["period"],
        period_days=int(payload["period_days"]),
        schema_hash=payload["schema_hash"],
        epsilon=float(payload["epsilon"]),
        delta=float(payload["delta"]),
        mechanism=payload["mechanism"],
        kind=_KINDS[kind],
        cells=[
            sync_pb.AggregateCell(codes=codes, noisy_total=total, noisy_fraud=fraud)
            for codes, total, fraud in payload["cells"]
        ],
    )


@dataclass
class SyncState:
    """What the uploader last did, for metrics and health."""

    last_push_ok: float | None = None
    consecutive_failures: int = 0
    budget_exhausted: bool = False


class SyncAgent(HubWorker):
    """Releases matured periods into the outbox and pushes pending batches to the hub."""

    def __init__(
        self,
        *,
        site_id: str,
        journal: Journal,
        outbox: PrivacyOutbox,
        schema: Callable[[], BinSchema | None],
        privacy: PrivacyConfig,
        sync: SyncConfig,
        clock: Callable[[], float] = time.time,
        band_model: Callable[[str, str], Predictor | None] = lambda version, base: None,
    ) -> None:
        """`band_model(version, base)`: for rows journaled under model `version`, the
        predictor whose score puts them in the bands of model `base`, when `version` serves
        a correction of `base` (a stacked model scores its base first); else None."""
        super().__init__(sync, "sync")
        self.site_id = site_id
        self.journal = journal
        self.outbox = outbox
        self._schema = schema
        self._band_model = band_model
        self.privacy = privacy
        self.sync = sync
        self._clock = clock
        self.state = SyncState()

    @property
    def params(self) -> ReleaseParameters:
        return ReleaseParameters(
            self.privacy.epsilon_per_day, self.privacy.delta, self.privacy.max_contributions
        )

    def release_due(self) -> list[str]:
        """Noise and store every matured, unreleased period (no network needed)."""
        schema = self._schema()
        first = self.journal.earliest_timestamp()
        if schema is None or first is None:
            return []
        released = []
        periods = due_periods(
            first,
            int(self._clock()),
            period_days=self.privacy.period_days,
            maturity_days=self.privacy.label_maturity_days,
        )
        for period in periods:
            if self.outbox.released(period.name, schema.hash):
                continue
            try:
                batch = self.outbox.release(
                    self.site_id,
                    period,
                    schema,
                    self.params,
                    lambda p=period: self._exact_table(p, schema),  # type: ignore[misc]
                    mechanism=self.privacy.mechanism,
                )
            except BudgetExhaustedError as exc:
                if not self.state.budget_exhausted:
                    log.error("privacy.budget_exhausted", reason=str(exc))
                self.state.budget_exhausted = True
                break
            if batch is not None:
                released.append(batch)
                log.info(
                    "privacy.period_released",
                    period=period.name,
                    batch_id=batch,
                    epsilon=self.privacy.epsilon_per_day,
                    mechanism=self.privacy.mechanism,
                )
        return released

    def _exact_table(self, period: Period, schema: BinSchema) -> dict[Cell, tuple[int, int]]:
        return exact_table(
            self._labelled_rows(period, schema), schema, self.privacy.max_contributions
        )

    def _labelled_rows(self, period: Period, schema: BinSchema) -> Iterator[LabelledRow]:
        """The period's journal rows as the schema bins them. A score-band schema bins the
        score of the model its bands belong to, so it tables the rows that model scored
        and the rows a correction of it served (their band comes from the base model's
        score of the journaled features, what the stacked model computed first). Rows of
        any other version are not tabled under this schema: a band means nothing there (a
        model swap splits the day)."""
        outcomes = self.journal.latest_outcomes(period.start)
        scored = reads_score(schema)
        for record in self.journal.iter_transactions(period.start, period.end):
            features = record.features
            if scored:
                score = self._band_score(record.model_version, record.score, features, schema)
                if score is None:
                    continue
                features = with_score(features, score)
            outcome = outcomes.get((record.terminal_id, record.transaction_id))
            yield LabelledRow(
                card_token=record.card_token,
                transaction_key=f"{record.terminal_id}:{record.transaction_id}",
                features=features,
                is_fraud=bool(outcome and outcome.is_fraud),
                day=record.timestamp // DAY,
            )

    def _band_score(
        self,
        version: str,
        served: float | None,
        features: tuple[float, ...],
        schema: BinSchema,
    ) -> float | None:
        """The score that bands a journaled row under `schema`, or None: not tabled."""
        if version == schema.model_version:
            return served  # None: the stand-in policy answered, no model score
        if served is None or schema.model_version is None:
            return None
        base = self._band_model(version, schema.model_version)
        return None if base is None else base.predict_row(features)

    def push_pending(self) -> int:
        """Send what the outbox holds; returns batches acknowledged. Raises on transport
        failure so the caller backs off."""
        if not self.sync.hub:
            return 0
        stub = self.hub_stub()
        metadata = hub_metadata(self.sync)
        sent = 0
        for entry in self.outbox.pending():
            self._push(stub, entry, metadata)
            sent += 1
        return sent

    def _push(
        self, stub: sync_grpc.SyncStub, entry: OutboxEntry, metadata: tuple[tuple[str, str], ...]
    ) -> None:
        try:
            reply = stub.PushBatch(
                sync_pb.PushBatchRequest(
                    batch=batch_message(entry.payload), state=self.state_message()
                ),
                timeout=30,
                metadata=metadata,
            )
        except grpc.RpcError as exc:
            code = exc.code()
            message = f"{code.name}: {exc.details()}"
            self.outbox.mark_failed(entry.batch_id, message)
            if code not in _RETRYABLE:
                log.error(
                    "sync.batch_refused",
                    batch_id=entry.batch_id,
                    period=entry.period,
                    error=message,
                    action="the hub refused this batch; check the site's "
                    "token, schema and hub logs. It stays in the outbox and is retried",
                )
            raise ConnectionError(message) from exc
        self.outbox.mark_sent(entry.batch_id)
        self.state.last_push_ok = self._clock()
        log.info(
            "sync.batch_sent",
            batch_id=entry.batch_id,
            period=entry.period,
            duplicate=reply.duplicate,
        )

    def tick(self) -> None:
        """One round: release what matured, push what is pending; with nothing to push,
        report the gateway's state alone, so the hub hears from it every round."""
        self.release_due()
        if self.push_pending() == 0:
            self.report_state()

    def report_state(self) -> bool:
        """Send the gateway's state (ReportState); False if there is nothing to send or the
        hub predates the call. Raises on transport failure so the caller backs off."""
        state = self.state_message()
        if not self.sync.hub or state is None:
            return False
        try:
            self.hub_stub().ReportState(
                sync_pb.ReportStateRequest(state=state),
                timeout=30,
                metadata=hub_metadata(self.sync),
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # an older hub: PushBatch carries it
                return False
            raise ConnectionError(f"{exc.code().name}: {exc.details()}") from exc
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                self.state.consecutive_failures = 0
                delay = self.sync.interval_seconds
            except Exception as exc:  # keep the agent alive; everything is in the outbox
                self.hub_failed()
                self.state.consecutive_failures += 1
                delay = backoff(
                    self.state.consecutive_failures,
                    self.sync.interval_seconds,
                    self.sync.max_backoff_seconds,
                )
                log.warning(
                    "sync.retry_later",
                    error=str(exc),
                    retry_in_seconds=round(delay, 1),
                    failures=self.state.consecutive_failures,
                )
            self._stop.wait(delay)


def backoff(failures: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter (AWS architecture blog): fleets don't stampede."""
    ceiling = min(cap, base * 2 ** min(failures, 30))
    return (rng or random).uniform(base / 2, max(base / 2, ceiling))
