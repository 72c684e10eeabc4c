"""What `fraudscreen hub ...` does besides serving: issue tokens, migrate, export the DP
table, print the fleet, write the report. The CLI (cli/hub.py) parses the flags and calls
these; heavy imports wait for the verb."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fraudscreen.hub.storage import HubStore


def issue_token(path: Path, name: str, *, rotate: bool, what: str) -> int:
    """A new site or publisher token: the hash into `path`, the token once on stdout."""
    from fraudscreen.hub.tokens import add_token

    token = add_token(path, name, rotate=rotate)
    print(
        f"{what} token for {name} below, shown this once: the hub keeps only its SHA-256 "
        f"in {path}. Hand it over securely; a lost token is replaced with --rotate.",
        file=sys.stderr,
    )
    print(token)
    return 0


def _open_store(db: str) -> HubStore:
    from fraudscreen.hub.database import open_store

    return open_store(db, pool_size=2, must_exist=True)


def migrate(db: str) -> int:
    from fraudscreen.hub.database import describe, open_store

    store = open_store(db, pool_size=1)
    try:
        applied = store.applied_migrations
        version = store.schema_version()
    finally:
        store.close()
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
    print(f"{describe(db)}: schema version {version} ({done})")
    return 0


def export(db: str, schema_hash: str, out: Path) -> int:
    from fraudscreen.hub.export import export_table

    store = _open_store(db)
    summary = export_table(store, schema_hash, out)
    print(
        f"wrote {summary.cells} cells summed over {summary.batches} batches from "
        f"{summary.sites} sites to {summary.table} (schema: {summary.sidecar})"
    )
    return 0


def status(db: str, *, stale_after: float, stale_only: bool) -> int:
    from fraudscreen.hub.fleet_view import age, fleet_rows, format_table

    store = _open_store(db)
    try:
        now = time.time()
        rows = fleet_rows(store, now, stale_after)
        stale = [r for r in rows if r.stale]
        if stale_only:
            rows = stale
        print(
            f"{len(rows)} sites"
            + (f", {len(stale)} silent for more than {age(stale_after)}" if stale else "")
        )
        if rows:
            print("\n".join(format_table(rows, now)))
        hashes = sorted({h for s in store.sites_summary() for h in s.schema_hashes})
        for schema_hash in hashes:
            print(f"schema {schema_hash}")
        releases = store.releases()
    finally:
        store.close()
    print(f"{len(releases)} releases (newest last)")
    for r in releases:
        audience = "all sites" if r.sites is None else ", ".join(r.sites)
        print(f"  #{r.seq} {r.model_version} {r.published_at} -> {audience}")
    return 0


def report(db: str, out: Path, *, stale_after: float) -> int:
    from fraudscreen.hub.report import write_fleet_report

    store = _open_store(db)
    try:
        summary = write_fleet_report(store, out, time.time(), stale_after)
    finally:
        store.close()
    print(
        f"wrote {out}: {summary.sites} sites ({summary.stale} stale), "
        f"{summary.periods} periods of drift, {summary.images} plots"
    )
    return 0
