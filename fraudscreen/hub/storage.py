"""Where the hub keeps what sites send and what analysts publish. No gRPC in here.

Only differentially private aggregates reach this store: per batch its metadata (site,
period, schema hash, epsilon, delta, mechanism, release kind) and per cell the bin codes
with two noisy counts. There is nowhere to put a card number, a card token, a terminal, an
amount or the time of a transaction, and the tests scan the database to keep it that way.

`HubStore` is the interface, with the records it takes and returns and the row helpers
both backends share; hub.sqlite_store.SQLiteHubStore is the default backend, and
hub.postgres.PostgresHubStore the one for a fleet (several hub processes, one database).
Both apply hub.migrations on open; tests/test_hub_store.py runs the same suite on both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.hub.fleet import GatewayState, SiteState, StateChange

StoredCell = tuple[Cell, int, int]  # codes, noisy_total, noisy_fraud
# How a batch was released (privacy.release.Mechanism). Batches stored before the hub knew
# kinds were all "threshold".
ReleaseKind = Literal["known_domain", "threshold"]


class ConflictError(ValueError):
    """An id that is already stored with different content; the store keeps the first."""


@dataclass(frozen=True)
class StoredBatch:
    """One (site, period) aggregate batch as validated by the hub."""

    site_id: str
    batch_id: str
    period: str
    period_days: int
    schema_hash: str
    epsilon: float
    delta: float
    mechanism: str
    cells: tuple[StoredCell, ...]
    kind: ReleaseKind = "threshold"

    def content_sha256(self) -> str:
        """Hash of everything the site sent; cell order does not matter (cells are a set).

        "kind" is hashed only when it is not "threshold", so a thresholded batch stored
        before kinds existed and resent by an upgraded gateway is still a duplicate.
        """
        document: dict[str, object] = {
            "site_id": self.site_id,
            "batch_id": self.batch_id,
            "period": self.period,
            "period_days": self.period_days,
            "schema_hash": self.schema_hash,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "mechanism": self.mechanism,
            "cells": sorted([list(codes), total, fraud] for codes, total, fraud in self.cells),
        }
        if self.kind != "threshold":
            document["kind"] = self.kind
        return hashlib.sha256(json.dumps(document, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class BatchRecord:
    """A stored batch without its cells."""

    site_id: str
    batch_id: str
    period: str
    period_days: int
    schema_hash: str
    epsilon: float
    delta: float
    mechanism: str
    cells: int
    received_at: float
    kind: ReleaseKind = "threshold"


class CellSum(NamedTuple):
    """Sums of noisy counts over every batch holding the cell; fraud may be negative."""

    total: int
    fraud: int
    batches: int


@dataclass(frozen=True)
class SiteSummary:
    site_id: str
    batches: int
    periods: int
    last_period: str
    epsilon: float  # sum over the site's batches
    schema_hashes: tuple[str, ...]
    last_received_at: float


class TargetedRelease(NamedTuple):
    """The release a site should run: its version, files by name, publication time."""

    model_version: str
    files: dict[str, bytes]
    published_at: str


@dataclass(frozen=True)
class ReleaseRecord:
    """A published release without its file contents. `sites` None: every site."""

    seq: int
    model_version: str
    published_at: str
    sites: tuple[str, ...] | None
    content_sha256: str
    size: int


class HubStore(Protocol):
    """What the hub needs from a database. Implementations must be safe to call from many
    threads at once (one gRPC worker per call).

    A PostgreSQL backend maps this one to one: `batches` with primary key
    (site_id, batch_id), a content hash column and a `kind` column (default
    'threshold'); `put_batch` in one transaction as
    `INSERT ... ON CONFLICT (site_id, batch_id) DO NOTHING`, then, when nothing was
    inserted, compare the stored content hash (equal: duplicate, else ConflictError) and
    insert the cells in the same transaction; `summed_table` a `GROUP BY codes` over cells
    joined to batches (codes as `smallint[]` or the same comma text); releases append-only
    with a serial `seq`, targets in their own table, `release_for` the highest `seq`
    addressed to everyone or to the site. That backend is hub.postgres.PostgresHubStore;
    both apply hub.migrations when they open.
    """

    applied_migrations: list[int]  # versions this open applied (hub.migrations)

    def put_batch(self, batch: StoredBatch) -> bool:
        """Store a batch atomically. True if stored now, False if an identical copy was
        already there; raises ConflictError if the id is stored with other content."""
        ...

    def batches(self, schema_hash: str | None = None) -> list[BatchRecord]:
        """Stored batches (all, or one schema's), ordered by site, period and id."""
        ...

    def summed_table(self, schema_hash: str) -> dict[Cell, CellSum]:
        """Per cell, the sums of noisy counts across all sites and periods of a schema."""
        ...

    def sites_summary(self) -> list[SiteSummary]:
        """Per site: batch count, distinct periods, last period, epsilon sum."""
        ...

    def period_tables(self, schema_hash: str) -> dict[str, dict[Cell, CellSum]]:
        """summed_table per period (first day, YYYY-MM-DD), periods in order: the fleet's
        released counts of each period, for drift."""
        ...

    def put_schema(self, schema: BinSchema, *, accept: bool = False) -> None:
        """Remember a bin schema so an export can name its columns without the bundle;
        `accept` (schemas of verified releases) keeps it accepted across restarts."""
        ...

    def schema(self, schema_hash: str) -> BinSchema | None: ...

    def schemas(self, *, accepted_only: bool = False) -> list[BinSchema]: ...

    def put_release(
        self,
        model_version: str,
        files: Mapping[str, bytes],
        sites: Sequence[str] | None,
        published_at: str,
    ) -> ReleaseRecord:
        """Append a release for some sites (canary) or all (None). Publishing the same
        version with the same files again re-targets it (promotion, rollback); the same
        version with other files raises ConflictError."""
        ...

    def release_for(self, site_id: str, current_version: str = "") -> TargetedRelease | None:
        """The newest release addressed to the site or to all sites; None if there is none
        or it is `current_version` (what the asking gateway already runs)."""
        ...

    def releases(self) -> list[ReleaseRecord]:
        """Every publication, oldest first."""
        ...

    def release_file(self, model_version: str, name: str) -> bytes | None:
        """One file of a published version (every publication of a version holds the same
        files), e.g. its manifest for the report's drift references; None if absent."""
        ...

    def put_site_state(self, site_id: str, state: GatewayState, seen_at: float) -> bool:
        """Record what a site reported now: the latest state and last-seen time; appends to
        the history when a tracked field changed (or the site is new). True if it did."""
        ...

    def site_states(self) -> list[SiteState]:
        """The latest state of every site that ever reported, by site id."""
        ...

    def state_history(self, site_id: str | None = None) -> list[StateChange]:
        """Recorded changes (all sites, or one), oldest first."""
        ...

    def schema_version(self) -> int:
        """The highest migration applied to the database (hub.migrations)."""
        ...

    def close(self) -> None: ...


def encode_codes(codes: Cell) -> str:
    return ",".join(str(c) for c in codes)


def decode_codes(text: str) -> Cell:
    return tuple(int(c) for c in text.split(",")) if text else ()


def files_sha256(files: Mapping[str, bytes]) -> str:
    """One hash over names and contents, independent of order."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return digest.hexdigest()


PERIOD_TABLES_SQL = (
    "SELECT b.period, c.codes, SUM(c.noisy_total), SUM(c.noisy_fraud), COUNT(*)"
    " FROM cells AS c JOIN batches AS b ON b.site_id = c.site_id AND b.batch_id = c.batch_id"
    " WHERE b.schema_hash = %s GROUP BY b.period, c.codes"
)


def period_tables_from_rows(rows: Sequence[Sequence[Any]]) -> dict[str, dict[Cell, CellSum]]:
    tables: dict[str, dict[Cell, CellSum]] = {}
    for period, codes, total, fraud, n in rows:
        cell = CellSum(int(total), int(fraud), int(n))
        tables.setdefault(str(period), {})[decode_codes(str(codes))] = cell
    return {p: dict(sorted(t.items())) for p, t in sorted(tables.items())}


# The columns of GatewayState, in field order, shared by both backends' SQL.
STATE_FIELDS = (
    "model_version",
    "predictor",
    "stand_in",
    "last_update_result",
    "last_update_at",
    "pending_batches",
    "epsilon_spent",
    "epsilon_budget",
    "software_version",
)
STATE_COLUMNS = ", ".join(STATE_FIELDS)


def state_values(state: GatewayState) -> tuple[object, ...]:
    return tuple(getattr(state, f) for f in STATE_FIELDS)


def state_from_row(row: Sequence[object]) -> GatewayState:
    (model, predictor, stand_in, result, update_at, pending, spent, budget, software) = row
    return GatewayState(
        model_version=str(model),
        predictor=str(predictor),
        stand_in=bool(stand_in),
        last_update_result=str(result),
        last_update_at=float(update_at),  # type: ignore[arg-type]
        pending_batches=int(pending),  # type: ignore[call-overload]
        epsilon_spent=float(spent),  # type: ignore[arg-type]
        epsilon_budget=float(budget),  # type: ignore[arg-type]
        software_version=str(software),
    )
