"""Versioned schema of the hub database, for both backends.

Each migration has a version, a name and the SQL for SQLite and for PostgreSQL. A store
applies the ones its database has not recorded in `schema_migrations` when it opens
(`fraudscreen hub serve`), and `fraudscreen hub migrate` does it on its own (before a
rolling upgrade of several hub processes). Migrations only ever add: a hub of the
previous version keeps working on a migrated database while the others restart.

Version 1 on SQLite is the base schema `SQLiteHubStore` has always created on open
(sqlite_store._DDL), so a database from before versioning is recorded as version 1.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: str
    postgres: str


_POSTGRES_BASE = """
CREATE TABLE IF NOT EXISTS batches (
    site_id text NOT NULL,
    batch_id text NOT NULL,
    period text NOT NULL,
    period_days integer NOT NULL,
    schema_hash text NOT NULL,
    epsilon double precision NOT NULL,
    delta double precision NOT NULL,
    mechanism text NOT NULL,
    cell_count integer NOT NULL,
    content_sha256 text NOT NULL,
    received_at double precision NOT NULL,
    kind text NOT NULL DEFAULT 'threshold',
    PRIMARY KEY (site_id, batch_id)
);
CREATE INDEX IF NOT EXISTS batches_by_schema ON batches (schema_hash);
CREATE TABLE IF NOT EXISTS cells (
    site_id text NOT NULL,
    batch_id text NOT NULL,
    codes text NOT NULL,
    noisy_total bigint NOT NULL,
    noisy_fraud bigint NOT NULL,
    PRIMARY KEY (site_id, batch_id, codes),
    FOREIGN KEY (site_id, batch_id) REFERENCES batches (site_id, batch_id)
);
CREATE TABLE IF NOT EXISTS bin_schemas (
    schema_hash text PRIMARY KEY,
    definition text NOT NULL,
    accepted boolean NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS releases (
    seq bigserial PRIMARY KEY,
    model_version text NOT NULL,
    content_sha256 text NOT NULL,
    everyone boolean NOT NULL,
    published_at text NOT NULL
);
CREATE INDEX IF NOT EXISTS releases_by_version ON releases (model_version);
CREATE TABLE IF NOT EXISTS release_targets (
    seq bigint NOT NULL REFERENCES releases (seq),
    site_id text NOT NULL,
    PRIMARY KEY (seq, site_id)
);
CREATE INDEX IF NOT EXISTS release_targets_by_site ON release_targets (site_id);
CREATE TABLE IF NOT EXISTS release_files (
    seq bigint NOT NULL REFERENCES releases (seq),
    name text NOT NULL,
    content bytea NOT NULL,
    PRIMARY KEY (seq, name)
);
"""

# What gateways report about themselves (no transaction data): the latest per site, and a
# row in the history whenever a tracked field changed (see hub.fleet.GatewayState).
_STATES_COLUMNS = """
    model_version {text} NOT NULL,
    predictor {text} NOT NULL,
    stand_in {bool} NOT NULL,
    last_update_result {text} NOT NULL,
    last_update_at {real} NOT NULL,
    pending_batches integer NOT NULL,
    epsilon_spent {real} NOT NULL,
    epsilon_budget {real} NOT NULL,
    software_version {text} NOT NULL"""


def _states_ddl(text: str, boolean: str, real: str, serial: str) -> str:
    columns = _STATES_COLUMNS.format(text=text, bool=boolean, real=real)
    return f"""
CREATE TABLE IF NOT EXISTS site_states (
    site_id {text} PRIMARY KEY,
    first_seen {real} NOT NULL,
    last_seen {real} NOT NULL,
    changed_at {real} NOT NULL,{columns}
);
CREATE TABLE IF NOT EXISTS site_state_history (
    id {serial},
    site_id {text} NOT NULL,
    changed_at {real} NOT NULL,{columns}
);
CREATE INDEX IF NOT EXISTS site_state_history_by_site ON site_state_history (site_id, changed_at);
"""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "batches, cells, bin schemas, releases", sqlite="", postgres=_POSTGRES_BASE),
    Migration(
        2,
        "gateway states and their history",
        sqlite=_states_ddl("TEXT", "INTEGER", "REAL", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        postgres=_states_ddl("text", "boolean", "double precision", "bigserial PRIMARY KEY"),
    ),
)
LATEST = MIGRATIONS[-1].version

_SQLITE_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)
"""


def migrate_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Apply what the SQLite database lacks, each migration in its own transaction (the
    connection is in autocommit mode); returns the versions applied now."""
    conn.execute(_SQLITE_VERSIONS)
    applied_now = []
    for migration in MIGRATIONS:
        conn.execute("BEGIN IMMEDIATE")  # one writer: concurrent openers apply it once
        try:
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            ).fetchone()
            if done is None:
                for statement in _statements(migration.sqlite):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                    (migration.version, migration.name),
                )
                applied_now.append(migration.version)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return applied_now


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def sqlite_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)
