"""Where the hub keeps what sites send and what analysts publish. No gRPC in here.

Only differentially private aggregates reach this store: per batch its metadata (site,
period, schema hash, epsilon, delta, mechanism, release kind) and per cell the bin codes
with two noisy counts. There is nowhere to put a card number, a card token, a terminal, an
amount or the time of a transaction, and the tests scan the database to keep it that way.

`HubStore` is the interface; `SQLiteHubStore` is the default backend, and
hub.postgres.PostgresHubStore the one for a fleet (several hub processes, one database).
Both apply hub.migrations on open; tests/test_hub_store.py runs the same suite on both.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.hub.fleet import GatewayState, SiteState, StateChange
from fraudscreen.hub.migrations import migrate_sqlite, sqlite_version

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


_DDL = """
CREATE TABLE IF NOT EXISTS batches (
    site_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    period TEXT NOT NULL,
    period_days INTEGER NOT NULL,
    schema_hash TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    mechanism TEXT NOT NULL,
    cell_count INTEGER NOT NULL,
    content_sha256 TEXT NOT NULL,
    received_at REAL NOT NULL,
    kind TEXT NOT NULL DEFAULT 'threshold',
    PRIMARY KEY (site_id, batch_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batches_by_schema ON batches (schema_hash);
CREATE TABLE IF NOT EXISTS cells (
    site_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    codes TEXT NOT NULL,
    noisy_total INTEGER NOT NULL,
    noisy_fraud INTEGER NOT NULL,
    PRIMARY KEY (site_id, batch_id, codes),
    FOREIGN KEY (site_id, batch_id) REFERENCES batches (site_id, batch_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bin_schemas (
    schema_hash TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    accepted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS releases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    model_version TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    everyone INTEGER NOT NULL,
    published_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS releases_by_version ON releases (model_version);
CREATE TABLE IF NOT EXISTS release_targets (
    seq INTEGER NOT NULL REFERENCES releases (seq),
    site_id TEXT NOT NULL,
    PRIMARY KEY (seq, site_id)
);
CREATE TABLE IF NOT EXISTS release_files (
    seq INTEGER NOT NULL REFERENCES releases (seq),
    name TEXT NOT NULL,
    content BLOB NOT NULL,
    PRIMARY KEY (seq, name)
);
"""


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


class SQLiteHubStore:
    """HubStore on one SQLite file: WAL, synchronous=FULL (an acknowledged batch is never
    lost: the gateway will not send it again), file mode 0600, a connection per call."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)  # WAL and shared-memory files inherit this mode
        finally:
            os.close(fd)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(f"BEGIN;{_DDL}COMMIT;")  # one transaction: one fsync
            columns = {row[1] for row in conn.execute("PRAGMA table_info(batches)")}
            if "kind" not in columns:  # a database from before release kinds: all thresholded
                conn.execute(
                    "ALTER TABLE batches ADD COLUMN kind TEXT NOT NULL DEFAULT 'threshold'"
                )
            self.applied_migrations = migrate_sqlite(conn)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- batches ---------------------------------------------------------------------------

    def put_batch(self, batch: StoredBatch) -> bool:
        digest = batch.content_sha256()
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT content_sha256 FROM batches WHERE site_id = ? AND batch_id = ?",
                (batch.site_id, batch.batch_id),
            ).fetchone()
            if row is not None:
                if row[0] == digest:
                    return False
                raise ConflictError(
                    f"batch {batch.batch_id} of site {batch.site_id} is already stored with "
                    f"different content (stored sha256 {row[0][:12]}, received {digest[:12]}); "
                    "the hub keeps the first version and never overwrites it. A batch is "
                    "noised once and a retry must resend the stored payload unchanged: check "
                    "whether this site's outbox or privacy ledger was reset (that spends its "
                    "privacy budget twice) before deleting anything"
                )
            conn.execute(
                "INSERT INTO batches (site_id, batch_id, period, period_days, schema_hash,"
                " epsilon, delta, mechanism, cell_count, content_sha256, received_at, kind)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch.site_id,
                    batch.batch_id,
                    batch.period,
                    batch.period_days,
                    batch.schema_hash,
                    batch.epsilon,
                    batch.delta,
                    batch.mechanism,
                    len(batch.cells),
                    digest,
                    time.time(),
                    batch.kind,
                ),
            )
            conn.executemany(
                "INSERT INTO cells (site_id, batch_id, codes, noisy_total, noisy_fraud)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    (batch.site_id, batch.batch_id, encode_codes(codes), total, fraud)
                    for codes, total, fraud in batch.cells
                ),
            )
        return True

    def batches(self, schema_hash: str | None = None) -> list[BatchRecord]:
        query = (
            "SELECT site_id, batch_id, period, period_days, schema_hash, epsilon, delta,"
            " mechanism, cell_count, received_at, kind FROM batches"
        )
        params: tuple[str, ...] = ()
        if schema_hash is not None:
            query += " WHERE schema_hash = ?"
            params = (schema_hash,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY site_id, period, batch_id", params).fetchall()
        return [BatchRecord(*row) for row in rows]

    def summed_table(self, schema_hash: str) -> dict[Cell, CellSum]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT c.codes, SUM(c.noisy_total), SUM(c.noisy_fraud), COUNT(*)"
                " FROM cells AS c JOIN batches AS b"
                " ON b.site_id = c.site_id AND b.batch_id = c.batch_id"
                " WHERE b.schema_hash = ? GROUP BY c.codes",
                (schema_hash,),
            ).fetchall()
        table = {decode_codes(codes): CellSum(total, fraud, n) for codes, total, fraud, n in rows}
        return dict(sorted(table.items()))

    def sites_summary(self) -> list[SiteSummary]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT site_id, COUNT(*), COUNT(DISTINCT period), MAX(period), SUM(epsilon),"
                " GROUP_CONCAT(DISTINCT schema_hash), MAX(received_at)"
                " FROM batches GROUP BY site_id ORDER BY site_id"
            ).fetchall()
        return [
            SiteSummary(
                site_id=site,
                batches=count,
                periods=periods,
                last_period=last,
                epsilon=float(epsilon),
                schema_hashes=tuple(sorted(hashes.split(","))),
                last_received_at=float(received),
            )
            for site, count, periods, last, epsilon, hashes, received in rows
        ]

    # -- schemas ---------------------------------------------------------------------------

    def put_schema(self, schema: BinSchema, *, accept: bool = False) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO bin_schemas (schema_hash, definition, accepted) VALUES (?, ?, ?)"
                " ON CONFLICT (schema_hash)"
                " DO UPDATE SET accepted = MAX(accepted, excluded.accepted)",
                (schema.hash, json.dumps(schema.to_json()), int(accept)),
            )

    def schema(self, schema_hash: str) -> BinSchema | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT definition FROM bin_schemas WHERE schema_hash = ?", (schema_hash,)
            ).fetchone()
        return None if row is None else BinSchema.from_json(json.loads(row[0]))

    def schemas(self, *, accepted_only: bool = False) -> list[BinSchema]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT definition FROM bin_schemas WHERE accepted >= ? ORDER BY schema_hash",
                (int(accepted_only),),
            )
            return [BinSchema.from_json(json.loads(definition)) for (definition,) in rows]

    # -- releases --------------------------------------------------------------------------

    def put_release(
        self,
        model_version: str,
        files: Mapping[str, bytes],
        sites: Sequence[str] | None,
        published_at: str,
    ) -> ReleaseRecord:
        digest = files_sha256(files)
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT content_sha256 FROM releases WHERE model_version = ? LIMIT 1",
                (model_version,),
            ).fetchone()
            if row is not None and row[0] != digest:
                raise ConflictError(
                    f"model version {model_version} is already published with different "
                    "files; a version names one exact bundle. Give the new bundle a new "
                    "model version, or publish the original files again to re-target it"
                )
            cursor = conn.execute(
                "INSERT INTO releases (model_version, content_sha256, everyone, published_at)"
                " VALUES (?, ?, ?, ?)",
                (model_version, digest, int(sites is None), published_at),
            )
            seq = cursor.lastrowid
            assert seq is not None
            conn.executemany(
                "INSERT INTO release_targets (seq, site_id) VALUES (?, ?)",
                ((seq, site) for site in sorted(set(sites or ()))),
            )
            conn.executemany(
                "INSERT INTO release_files (seq, name, content) VALUES (?, ?, ?)",
                ((seq, name, bytes(files[name])) for name in sorted(files)),
            )
        return ReleaseRecord(
            seq=seq,
            model_version=model_version,
            published_at=published_at,
            sites=None if sites is None else tuple(sorted(set(sites))),
            content_sha256=digest,
            size=sum(len(content) for content in files.values()),
        )

    def release_for(self, site_id: str, current_version: str = "") -> TargetedRelease | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT seq, model_version, published_at FROM releases AS r"
                " WHERE r.everyone = 1 OR EXISTS"
                " (SELECT 1 FROM release_targets AS t WHERE t.seq = r.seq AND t.site_id = ?)"
                " ORDER BY seq DESC LIMIT 1",
                (site_id,),
            ).fetchone()
            if row is None or row[1] == current_version:
                return None  # a gateway already running it polls often: skip reading the files
            seq, version, published_at = row
            files = conn.execute(
                "SELECT name, content FROM release_files WHERE seq = ? ORDER BY name", (seq,)
            ).fetchall()
        return TargetedRelease(
            version, {name: bytes(content) for name, content in files}, published_at
        )

    def releases(self) -> list[ReleaseRecord]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT r.seq, r.model_version, r.published_at, r.everyone, r.content_sha256,"
                " (SELECT COALESCE(SUM(LENGTH(content)), 0) FROM release_files AS f"
                "  WHERE f.seq = r.seq)"
                " FROM releases AS r ORDER BY r.seq"
            ).fetchall()
            targets: dict[int, list[str]] = {}
            for seq, site in conn.execute(
                "SELECT seq, site_id FROM release_targets ORDER BY seq, site_id"
            ):
                targets.setdefault(seq, []).append(site)
        return [
            ReleaseRecord(
                seq=seq,
                model_version=version,
                published_at=published_at,
                sites=None if everyone else tuple(targets.get(seq, ())),
                content_sha256=digest,
                size=size,
            )
            for seq, version, published_at, everyone, digest, size in rows
        ]

    def release_file(self, model_version: str, name: str) -> bytes | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT f.content FROM release_files AS f JOIN releases AS r ON r.seq = f.seq"
                " WHERE r.model_version = ? AND f.name = ? ORDER BY r.seq LIMIT 1",
                (model_version, name),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def period_tables(self, schema_hash: str) -> dict[str, dict[Cell, CellSum]]:
        with self._connect() as conn:
            rows = conn.execute(PERIOD_TABLES_SQL.replace("%s", "?"), (schema_hash,)).fetchall()
        return period_tables_from_rows(rows)

    # -- gateway states --------------------------------------------------------------------

    def put_site_state(self, site_id: str, state: GatewayState, seen_at: float) -> bool:
        values = state_values(state)
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT {STATE_COLUMNS} FROM site_states WHERE site_id = ?",  # noqa: S608
                (site_id,),
            ).fetchone()
            changed = row is None or state_from_row(row).tracked() != state.tracked()
            conn.execute(
                f"INSERT INTO site_states (site_id, first_seen, last_seen, changed_at,"  # noqa: S608 - column names are constants
                f" {STATE_COLUMNS}) VALUES (?, ?, ?, ?, {_STATE_MARKS})"
                " ON CONFLICT (site_id) DO UPDATE SET last_seen = excluded.last_seen,"
                " changed_at = CASE WHEN ? THEN excluded.changed_at ELSE changed_at END,"
                f" {_STATE_UPDATES}",
                (site_id, seen_at, seen_at, seen_at, *values, int(changed)),
            )
            if changed:
                conn.execute(
                    f"INSERT INTO site_state_history (site_id, changed_at, {STATE_COLUMNS})"  # noqa: S608 - column names are constants
                    f" VALUES (?, ?, {_STATE_MARKS})",
                    (site_id, seen_at, *values),
                )
        return changed

    def site_states(self) -> list[SiteState]:
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT site_id, first_seen, last_seen, changed_at, {STATE_COLUMNS}"  # noqa: S608 - column names are constants
                " FROM site_states ORDER BY site_id"
            ).fetchall()
        return [
            SiteState(site, state_from_row(rest), first, last, changed)
            for site, first, last, changed, *rest in rows
        ]

    def state_history(self, site_id: str | None = None) -> list[StateChange]:
        query = f"SELECT site_id, changed_at, {STATE_COLUMNS} FROM site_state_history"  # noqa: S608 - column names are constants
        params: tuple[str, ...] = ()
        if site_id is not None:
            query += " WHERE site_id = ?"
            params = (site_id,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY changed_at, id", params).fetchall()
        return [StateChange(site, at, state_from_row(rest)) for site, at, *rest in rows]

    def schema_version(self) -> int:
        with self._connect() as conn:
            return sqlite_version(conn)

    def close(self) -> None:
        """Nothing held open: a connection per call."""


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
_STATE_MARKS = ", ".join("?" for _ in STATE_FIELDS)
_STATE_UPDATES = ", ".join(f"{f} = excluded.{f}" for f in STATE_FIELDS)


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
