"""HubStore on one SQLite file: the embedded default, one hub process on one machine.

hub.database opens it for a `--db` that is a file path; hub.postgres.PostgresHubStore is
the same interface for a fleet. The interface, its records and the row helpers both
backends share are in hub.storage.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.hub.fleet import GatewayState, SiteState, StateChange
from fraudscreen.hub.migrations import migrate_sqlite, sqlite_version
from fraudscreen.hub.storage import (
    PERIOD_TABLES_SQL,
    STATE_COLUMNS,
    STATE_FIELDS,
    BatchRecord,
    CellSum,
    ConflictError,
    ReleaseRecord,
    SiteSummary,
    StoredBatch,
    TargetedRelease,
    decode_codes,
    encode_codes,
    files_sha256,
    period_tables_from_rows,
    state_from_row,
    state_values,
)

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

_STATE_MARKS = ", ".join("?" for _ in STATE_FIELDS)
_STATE_UPDATES = ", ".join(f"{f} = excluded.{f}" for f in STATE_FIELDS)


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
                # epsilon is per card and day: a period of d days cost d times it
                "SELECT site_id, COUNT(*), COUNT(DISTINCT period), MAX(period),"
                " SUM(epsilon * period_days),"
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
