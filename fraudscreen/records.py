"""What the gateway remembers of a screened transaction and a reported outcome, and the
journal as the screening engine sees it: small Protocols, as it sees a Predictor, so the
domain imports no storage (fraudscreen.storage.journal implements them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class ScreenedRecord(NamedTuple):
    """One screened transaction as journaled; the card is a token, never a PAN."""

    terminal_id: str
    transaction_id: str
    card_token: str
    timestamp: int
    amount_minor: int
    currency: str
    mcc: int | None
    entry_mode: int | None
    local_weekday: int
    local_hour: int
    features: tuple[float, ...]
    fingerprint: str
    decision: str
    score: float | None
    reasons_json: str
    model_version: str
    stand_in: bool
    received_at: float


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """A label reported later for a transaction (chargeback, confirmed fraud or genuine)."""

    terminal_id: str
    transaction_id: str
    outcome: str
    is_fraud: bool
    reported_at: int


class RecordSink(Protocol):
    """Where screened records and outcomes are written."""

    @property
    def queue_room(self) -> int:
        """How many more records `submit` would take now: checked before deciding anything
        (0: the queue is full; a batch counts its own records not yet submitted)."""
        ...

    def submit(self, record: ScreenedRecord) -> None:
        """Enqueue without blocking; raises when the record cannot be kept."""
        ...

    def submit_many(self, records: Sequence[ScreenedRecord]) -> int:
        """Enqueue a batch's records in order, in one step, as many as the queue takes now;
        returns how many. Never raises: `submit` the rest to get each one's error."""
        ...

    def record_outcome(self, outcome: OutcomeRecord, timeout: float = 5.0) -> None:
        """Durable before it returns: labels must not be lost."""
        ...


class RecordSource(Protocol):
    """Committed records, read back (idempotency after a restart, state rebuild)."""

    def find_transaction(self, terminal_id: str, transaction_id: str) -> ScreenedRecord | None: ...

    def latest_timestamp(self) -> int | None: ...

    def latest_outcomes(
        self, since_timestamp: int | None = None
    ) -> dict[tuple[str, str], OutcomeRecord]: ...

    def iter_transactions(
        self, since_timestamp: int, until_timestamp: int = ...
    ) -> Iterator[ScreenedRecord]: ...


class ScreeningJournal(RecordSink, RecordSource, Protocol):
    """The journal the screening engine writes to and restores from."""
