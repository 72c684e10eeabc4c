"""A hub SQLite file from before versioned migrations is brought to the latest version on open."""

from __future__ import annotations

from pathlib import Path

from fraudscreen.hub.database import open_store
from fraudscreen.hub.migrations import LATEST
from tests.support.hub_records import batch, state


def test_a_sqlite_file_from_before_versioning_is_migrated_on_open(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "hub.sqlite3"
    open_store(path).put_batch(batch())
    with sqlite3.connect(path) as conn:  # as the hub left it before versioned migrations
        conn.executescript(
            "DROP TABLE schema_migrations; DROP TABLE site_states; DROP TABLE site_state_history;"
        )
    reopened = open_store(path)
    assert reopened.applied_migrations == [1, 2] and reopened.schema_version() == LATEST
    assert len(reopened.batches()) == 1
    assert reopened.put_site_state("s", state(), 1.0) is True
