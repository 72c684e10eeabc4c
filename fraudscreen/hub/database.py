"""Which HubStore a `--db` names: a postgresql:// URL (a fleet's shared database) or a
SQLite file path (the embedded default, one hub process on one machine)."""

from __future__ import annotations

from pathlib import Path

from fraudscreen.hub.sqlite_store import SQLiteHubStore
from fraudscreen.hub.storage import HubStore


def is_postgres(db: str | Path) -> bool:
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def open_store(db: str | Path, *, pool_size: int = 16, must_exist: bool = False) -> HubStore:
    """Open (and migrate) the store. `must_exist`: a SQLite path that is not a file is an
    error (read-only verbs must not create an empty database by a typo)."""
    if is_postgres(db):
        from fraudscreen.hub.postgres import PostgresHubStore

        return PostgresHubStore(str(db), pool_size=pool_size)
    path = Path(db)
    if must_exist and not path.is_file():
        raise ValueError(f"no hub database at {path}; give the --db the hub serves with")
    return SQLiteHubStore(path)


def describe(db: str | Path) -> str:
    """The database for a log line: a URL without its password, or the file path."""
    if is_postgres(db):
        from fraudscreen.hub.postgres import redacted

        return redacted(str(db))
    return str(db)
