"""HubStore on PostgreSQL (psycopg 3 + a connection pool), for a fleet: several hub
processes share one database, each call one short transaction on a pooled connection.

What makes several processes safe:
- put_batch: `INSERT ... ON CONFLICT (site_id, batch_id) DO NOTHING RETURNING`; a
  concurrent insert of the same key waits for the first to commit, then inserts nothing,
  and the stored hash decides duplicate or conflict. Cells go in by COPY, same transaction.
- put_release: a transaction-scoped advisory lock serializes publications, so "one version
  names one bundle" holds across processes, and `seq` orders them.
- put_site_state: an advisory lock per site, so a state change is recorded once.
- migrations: a session advisory lock; the first process to start applies them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import psycopg
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.hub.fleet import GatewayState, SiteState, StateChange
from fraudscreen.hub.migrations import MIGRATIONS
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

_MIGRATION_LOCK = 0x46534D49  # "FSMI": any constant both hub versions agree on
_RELEASE_LOCK = 0x4653524C  # "FSRL"
_STATE_MARKS = ", ".join("%s" for _ in STATE_FIELDS)
_STATE_UPDATES = ", ".join(f"{f} = excluded.{f}" for f in STATE_FIELDS)


def redacted(dsn: str) -> str:
    """The DSN without its password, for logs and messages."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable)"
    parts.pop("password", None)
    return conninfo.make_conninfo(**{k: str(v) for k, v in parts.items() if v is not None})


def migrate_postgres(dsn: str, *, connect_timeout: float = 30.0) -> list[int]:
    """Apply the migrations the database lacks (each in its own transaction, under an
    advisory lock so concurrent starters wait); returns the versions applied now."""
    with _connect(dsn, connect_timeout) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
            applied = []
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.postgres.encode())  # several statements, no params
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied.append(migration.version)
            return applied
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))


def _connect(dsn: str, timeout: float) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, int(timeout)))
    except psycopg.OperationalError as exc:
        raise ValueError(f"cannot connect to the hub database {redacted(dsn)}: {exc}") from exc


class PostgresHubStore:
    """HubStore on PostgreSQL; migrates the database on open."""

    def __init__(self, dsn: str, *, pool_size: int = 16, connect_timeout: float = 30.0) -> None:
        self.dsn = dsn
        self.applied_migrations = migrate_postgres(dsn, connect_timeout=connect_timeout)
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max(1, pool_size),
            open=False,
            name="hub",
            timeout=connect_timeout,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout as exc:
            raise ValueError(f"cannot connect to the hub database {redacted(dsn)}") from exc

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A pooled connection in one transaction: committed on exit, rolled back on error."""
        with self._pool.connection() as conn:
            yield conn

    # -- batches ---------------------------------------------------------------------------

    def put_batch(self, batch: StoredBatch) -> bool:
        digest = batch.content_sha256()
        with self._transaction() as conn:
            inserted = conn.execute(
                "INSERT INTO batches (site_id, batch_id, period, period_days, schema_hash,"
                " epsilon, delta, mechanism, cell_count, content_sha256, received_at, kind)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (site_id, batch_id) DO NOTHING RETURNING 1",
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
            ).fetchone()
            if inserted is None:
                row = conn.execute(
                    "SELECT content_sha256 FROM batches WHERE site_id = %s AND batch_id = %s",
                    (batch.site_id, batch.batch_id),
                ).fetchone()
                assert row is not None  # the conflicting row is committed and never deleted
                stored = str(row[0])
                if stored == digest:
                    return False
                raise ConflictError(
                    f"batch {batch.batch_id} of site {batch.site_id} is already stored with "
                    f"different content (stored sha256 {stored[:12]}, received {digest[:12]}); "
                    "the hub keeps the first version and never overwrites it. A batch is "
                    "noised once and a retry must resend the stored payload unchanged: check "
                    "whether this site's outbox or privacy ledger was reset (that spends its "
                    "privacy budget twice) before deleting anything"
                )
            with (
                conn.cursor() as cursor,
                cursor.copy(
                    "COPY cells (site_id, batch_id, codes, noisy_total, noisy_fraud) FROM STDIN"
                ) as copy,
            ):
                for codes, total, fraud in batch.cells:
                    copy.write_row(
                        (batch.site_id, batch.batch_id, encode_codes(codes), total, fraud)
                    )
        return True

    def batches(self, schema_hash: str | None = None) -> list[BatchRecord]:
        query = (
            "SELECT site_id, batch_id, period, period_days, schema_hash, epsilon, delta,"
            " mechanism, cell_count, received_at, kind FROM batches"
        )
        params: tuple[str, ...] = ()
        if schema_hash is not None:
            query += " WHERE schema_hash = %s"
            params = (schema_hash,)
        with self._transaction() as conn:
            rows = conn.execute(
                query + ' ORDER BY site_id, period, batch_id COLLATE "C"', params
            ).fetchall()
        return [BatchRecord(*row) for row in rows]  # type: ignore[arg-type]

    def summed_table(self, schema_hash: str) -> dict[Cell, CellSum]:
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT c.codes, SUM(c.noisy_total), SUM(c.noisy_fraud), COUNT(*)"
                " FROM cells AS c JOIN batches AS b"
                " ON b.site_id = c.site_id AND b.batch_id = c.batch_id"
                " WHERE b.schema_hash = %s GROUP BY c.codes",
                (schema_hash,),
            ).fetchall()
        table = {
            decode_codes(str(codes)): CellSum(int(total), int(fraud), int(n))  # type: ignore[call-overload]
            for codes, total, fraud, n in rows
        }
        return dict(sorted(table.items()))

    def sites_summary(self) -> list[SiteSummary]:
        with self._transaction() as conn:
            rows = conn.execute(
                # epsilon is per card and day: a period of d days cost d times it
                "SELECT site_id, COUNT(*), COUNT(DISTINCT period), MAX(period),"
                " SUM(epsilon * period_days),"
                " string_agg(DISTINCT schema_hash, ','), MAX(received_at)"
                ' FROM batches GROUP BY site_id ORDER BY site_id COLLATE "C"'
            ).fetchall()
        return [
            SiteSummary(
                site_id=str(site),
                batches=int(count),  # type: ignore[call-overload]
                periods=int(periods),  # type: ignore[call-overload]
                last_period=str(last),
                epsilon=float(epsilon),  # type: ignore[arg-type]
                schema_hashes=tuple(sorted(str(hashes).split(","))),
                last_received_at=float(received),  # type: ignore[arg-type]
            )
            for site, count, periods, last, epsilon, hashes, received in rows
        ]

    def period_tables(self, schema_hash: str) -> dict[str, dict[Cell, CellSum]]:
        with self._transaction() as conn:
            rows = conn.execute(PERIOD_TABLES_SQL, (schema_hash,)).fetchall()
        return period_tables_from_rows(rows)

    # -- schemas ---------------------------------------------------------------------------

    def put_schema(self, schema: BinSchema, *, accept: bool = False) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO bin_schemas (schema_hash, definition, accepted) VALUES (%s, %s, %s)"
                " ON CONFLICT (schema_hash)"
                " DO UPDATE SET accepted = bin_schemas.accepted OR excluded.accepted",
                (schema.hash, json.dumps(schema.to_json()), accept),
            )

    def schema(self, schema_hash: str) -> BinSchema | None:
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT definition FROM bin_schemas WHERE schema_hash = %s", (schema_hash,)
            ).fetchone()
        return None if row is None else BinSchema.from_json(json.loads(str(row[0])))

    def schemas(self, *, accepted_only: bool = False) -> list[BinSchema]:
        query = "SELECT definition FROM bin_schemas"
        if accepted_only:
            query += " WHERE accepted"
        with self._transaction() as conn:
            rows = conn.execute(query + ' ORDER BY schema_hash COLLATE "C"').fetchall()
        return [BinSchema.from_json(json.loads(str(definition))) for (definition,) in rows]

    # -- releases --------------------------------------------------------------------------

    def put_release(
        self,
        model_version: str,
        files: Mapping[str, bytes],
        sites: Sequence[str] | None,
        published_at: str,
    ) -> ReleaseRecord:
        digest = files_sha256(files)
        targets = sorted(set(sites or ()))
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_RELEASE_LOCK,))
            row = conn.execute(
                "SELECT content_sha256 FROM releases WHERE model_version = %s LIMIT 1",
                (model_version,),
            ).fetchone()
            if row is not None and row[0] != digest:
                raise ConflictError(
                    f"model version {model_version} is already published with different "
                    "files; a version names one exact bundle. Give the new bundle a new "
                    "model version, or publish the original files again to re-target it"
                )
            inserted = conn.execute(
                "INSERT INTO releases (model_version, content_sha256, everyone, published_at)"
                " VALUES (%s, %s, %s, %s) RETURNING seq",
                (model_version, digest, sites is None, published_at),
            ).fetchone()
            assert inserted is not None
            seq = int(inserted[0])  # type: ignore[call-overload]
            with conn.cursor() as cursor:
                if targets:
                    cursor.executemany(
                        "INSERT INTO release_targets (seq, site_id) VALUES (%s, %s)",
                        [(seq, site) for site in targets],
                    )
                cursor.executemany(
                    "INSERT INTO release_files (seq, name, content) VALUES (%s, %s, %s)",
                    [(seq, name, bytes(files[name])) for name in sorted(files)],
                )
        return ReleaseRecord(
            seq=seq,
            model_version=model_version,
            published_at=published_at,
            sites=None if sites is None else tuple(targets),
            content_sha256=digest,
            size=sum(len(content) for content in files.values()),
        )

    def release_for(self, site_id: str, current_version: str = "") -> TargetedRelease | None:
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT seq, model_version, published_at FROM releases AS r"
                " WHERE r.everyone OR EXISTS"
                " (SELECT 1 FROM release_targets AS t WHERE t.seq = r.seq AND t.site_id = %s)"
                " ORDER BY seq DESC LIMIT 1",
                (site_id,),
            ).fetchone()
            if row is None or row[1] == current_version:
                return None
            seq, version, published_at = row
            files = conn.execute(
                'SELECT name, content FROM release_files WHERE seq = %s ORDER BY name COLLATE "C"',
                (seq,),
            ).fetchall()
        return TargetedRelease(
            str(version),
            {str(name): bytes(content) for name, content in files},  # type: ignore[call-overload]
            str(published_at),
        )

    def releases(self) -> list[ReleaseRecord]:
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT r.seq, r.model_version, r.published_at, r.everyone, r.content_sha256,"
                " (SELECT COALESCE(SUM(LENGTH(content)), 0) FROM release_files AS f"
                "  WHERE f.seq = r.seq)"
                " FROM releases AS r ORDER BY r.seq"
            ).fetchall()
            targets: dict[int, list[str]] = {}
            for seq, site in conn.execute(
                'SELECT seq, site_id FROM release_targets ORDER BY seq, site_id COLLATE "C"'
            ):
                targets.setdefault(int(seq), []).append(str(site))  # type: ignore[call-overload]
        return [
            ReleaseRecord(
                seq=int(seq),  # type: ignore[call-overload]
                model_version=str(version),
                published_at=str(published_at),
                sites=None if everyone else tuple(targets.get(int(seq), ())),  # type: ignore[call-overload]
                content_sha256=str(digest),
                size=int(size),  # type: ignore[call-overload]
            )
            for seq, version, published_at, everyone, digest, size in rows
        ]

    def release_file(self, model_version: str, name: str) -> bytes | None:
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT f.content FROM release_files AS f JOIN releases AS r ON r.seq = f.seq"
                " WHERE r.model_version = %s AND f.name = %s ORDER BY r.seq LIMIT 1",
                (model_version, name),
            ).fetchone()
        return None if row is None else bytes(row[0])  # type: ignore[call-overload]

    # -- gateway states --------------------------------------------------------------------

    def put_site_state(self, site_id: str, state: GatewayState, seen_at: float) -> bool:
        values = state_values(state)
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("site-state:" + site_id,))
            row = conn.execute(
                f"SELECT {STATE_COLUMNS} FROM site_states WHERE site_id = %s",  # noqa: S608
                (site_id,),
            ).fetchone()
            changed = row is None or state_from_row(row).tracked() != state.tracked()
            conn.execute(
                f"INSERT INTO site_states (site_id, first_seen, last_seen, changed_at,"  # noqa: S608 - column names are constants
                f" {STATE_COLUMNS}) VALUES (%s, %s, %s, %s, {_STATE_MARKS})"
                " ON CONFLICT (site_id) DO UPDATE SET last_seen = excluded.last_seen,"
                " changed_at = CASE WHEN %s THEN excluded.changed_at"
                " ELSE site_states.changed_at END,"
                f" {_STATE_UPDATES}",
                (site_id, seen_at, seen_at, seen_at, *values, changed),
            )
            if changed:
                conn.execute(
                    f"INSERT INTO site_state_history (site_id, changed_at, {STATE_COLUMNS})"  # noqa: S608 - column names are constants
                    f" VALUES (%s, %s, {_STATE_MARKS})",
                    (site_id, seen_at, *values),
                )
        return changed

    def site_states(self) -> list[SiteState]:
        with self._transaction() as conn:
            rows = conn.execute(
                f"SELECT site_id, first_seen, last_seen, changed_at, {STATE_COLUMNS}"  # noqa: S608 - column names are constants
                ' FROM site_states ORDER BY site_id COLLATE "C"'
            ).fetchall()
        return [
            SiteState(str(site), state_from_row(rest), float(first), float(last), float(changed))  # type: ignore[arg-type]
            for site, first, last, changed, *rest in rows
        ]

    def state_history(self, site_id: str | None = None) -> list[StateChange]:
        query = f"SELECT site_id, changed_at, {STATE_COLUMNS} FROM site_state_history"  # noqa: S608 - column names are constants
        params: tuple[str, ...] = ()
        if site_id is not None:
            query += " WHERE site_id = %s"
            params = (site_id,)
        with self._transaction() as conn:
            rows = conn.execute(query + " ORDER BY changed_at, id", params).fetchall()
        return [StateChange(str(site), float(at), state_from_row(rest)) for site, at, *rest in rows]  # type: ignore[arg-type]

    def schema_version(self) -> int:
        with self._transaction() as conn:
            row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0) if row else 0  # type: ignore[call-overload]
