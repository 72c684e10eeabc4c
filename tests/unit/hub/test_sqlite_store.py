"""The hub's SQLite store without a server: an old database migrates, a batch is stored once."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from fraudscreen.hub.sqlite_store import SQLiteHubStore
from fraudscreen.hub.storage import CellSum, ConflictError, StoredBatch
from tests.support.hub_records import SCHEMA, codes


def test_storage_migrates_a_database_from_before_release_kinds(tmp_path: Path) -> None:
    """Old hub databases have no kind column: their batches were all thresholded, and a
    thresholded batch resent by an upgraded gateway is still a duplicate, not a conflict."""
    path = tmp_path / "hub.sqlite3"
    SQLiteHubStore(path)
    with sqlite3.connect(path) as conn:  # make it look like a database from before kinds
        conn.execute("ALTER TABLE batches DROP COLUMN kind")
    old = StoredBatch(
        "s", "b" * 32, "2018-04-01", 1, SCHEMA.hash, 1.0, 1e-7, "m", ((tuple(codes(0)), 10, 1),)
    )
    document = {
        "site_id": "s",
        "batch_id": "b" * 32,
        "period": "2018-04-01",
        "period_days": 1,
        "schema_hash": SCHEMA.hash,
        "epsilon": 1.0,
        "delta": 1e-7,
        "mechanism": "m",
        "cells": [[codes(0), 10, 1]],
    }
    legacy_digest = hashlib.sha256(json.dumps(document, separators=(",", ":")).encode())
    assert old.content_sha256() == legacy_digest.hexdigest()  # the hash from before kinds
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO batches (site_id, batch_id, period, period_days, schema_hash, epsilon,"
            " delta, mechanism, cell_count, content_sha256, received_at)"
            " VALUES ('s', ?, '2018-04-01', 1, ?, 1.0, 1e-7, 'm', 1, ?, 0)",
            ("b" * 32, SCHEMA.hash, old.content_sha256()),
        )
    store = SQLiteHubStore(path)  # reopened by the new code
    [record] = store.batches()
    assert record.kind == "threshold"
    assert store.put_batch(old) is False  # the resend is a duplicate
    known = StoredBatch(**{**old.__dict__, "batch_id": "c" * 32, "kind": "known_domain"})
    assert (
        known.content_sha256()
        != StoredBatch(**{**known.__dict__, "kind": "threshold"}).content_sha256()
    )
    assert store.put_batch(known) is True
    assert {r.batch_id: r.kind for r in store.batches()} == {
        "b" * 32: "threshold",
        "c" * 32: "known_domain",
    }


def test_storage_put_batch_is_idempotent_and_refuses_conflicts(tmp_path: Path) -> None:
    store = SQLiteHubStore(tmp_path / "sub" / "hub.sqlite3")
    batch = StoredBatch(
        "s", "a" * 32, "2018-04-01", 1, SCHEMA.hash, 1.0, 1e-7, "m", ((tuple(codes(0)), 10, 1),)
    )
    assert store.put_batch(batch) is True
    assert store.put_batch(batch) is False
    changed = StoredBatch(**{**batch.__dict__, "epsilon": 2.0})
    with pytest.raises(ConflictError, match="already stored with different content"):
        store.put_batch(changed)
    assert store.summed_table(SCHEMA.hash) == {tuple(codes(0)): CellSum(10, 1, 1)}
    assert store.release_for("s") is None and store.releases() == []
    assert oct((tmp_path / "sub" / "hub.sqlite3").stat().st_mode & 0o777) == "0o600"
