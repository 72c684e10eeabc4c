"""What the hub's database holds: exact sums and the export and status verbs over them,
nothing but codes, counts and batch metadata at rest, and migrations of older files."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from fraudscreen.binschema import BinSchema
from fraudscreen.hub.storage import STATE_FIELDS, CellSum
from fraudscreen.logs import luhn_valid
from tests.support.hub_support import (
    MECHANISM,
    SCHEMA,
    Bundles,
    Hub,
    bundle_files,
    bundle_version,
    codes,
    make_batch,
    publish,
    run_cli,
)
from tests.support.service_support import PANS

# -- export and status --------------------------------------------------------------------

SUMS = {
    # cell: sums over shop-a 2018-04-01, shop-a 2018-04-02 and shop-b 2018-04-01
    tuple(codes(0)): CellSum(100 + 120 + 30, 3 + 5 + 1, 3),
    tuple(codes(4, 1)): CellSum(50, -2, 1),
    tuple(codes(1, 0, 2, 0, 0, -1)): CellSum(40 + 25, 0 - 4, 2),
}


def _push_fleet(hub: Hub) -> None:
    hub.push(make_batch("shop-a", "2018-04-01", [(codes(0), 100, 3), (codes(4, 1), 50, -2)]))
    hub.push(
        make_batch("shop-a", "2018-04-02", [(codes(0), 120, 5), (codes(1, 0, 2, 0, 0, -1), 25, -4)])
    )
    shop_b = make_batch(
        "shop-b", "2018-04-01", [(codes(0), 30, 1), (codes(1, 0, 2, 0, 0, -1), 40, 0)]
    )
    hub.push(shop_b, "shop-b")
    assert hub.push(shop_b, "shop-b").duplicate  # a resend must not count twice
    other = BinSchema.from_edges({"TX_AMOUNT": (100.0,)})
    hub.server.store.put_schema(other)
    hub.server.schemas.add(other)
    hub.push(make_batch("shop-a", "2018-04-01", [([1], 999, 9)], schema_hash=other.hash))
    # ^ another schema's batch: never summed into the default schema's table


def test_summed_table_and_sites_summary_are_exact(hub: Hub) -> None:
    _push_fleet(hub)
    assert hub.server.store.summed_table(SCHEMA.hash) == SUMS
    summary = {s.site_id: s for s in hub.server.store.sites_summary()}
    a, b = summary["shop-a"], summary["shop-b"]
    assert (a.batches, a.periods, a.last_period, a.epsilon) == (3, 2, "2018-04-02", 3.0)
    assert (b.batches, b.periods, b.last_period, b.epsilon) == (1, 1, "2018-04-01", 1.0)
    assert len(a.schema_hashes) == 2 and b.schema_hashes == (SCHEMA.hash,)
    assert len(hub.server.store.batches(SCHEMA.hash)) == 3


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_cli_writes_the_summed_table_and_a_schema_sidecar(
    hub: Hub, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _push_fleet(hub)
    out = hub.directory / f"table{suffix}"
    argv = ["hub", "export", "--db", str(hub.db), "--schema-hash", SCHEMA.hash, "--out", str(out)]
    assert run_cli(argv) == 0
    assert "3 cells summed over 3 batches from 2 sites" in capsys.readouterr().out
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    names = [SCHEMA.features[i] for i in SCHEMA.binned]
    assert list(frame.columns) == [*names, "noisy_total", "noisy_fraud", "batches"]
    got = {
        tuple(int(v) for v in row[: len(names)]): CellSum(*(int(v) for v in row[len(names) :]))
        for row in frame.itertuples(index=False)
    }
    assert got == SUMS
    sidecar = json.loads(out.with_suffix(".schema.json").read_text())
    assert sidecar["schema_hash"] == SCHEMA.hash
    assert BinSchema.from_json(sidecar["bin_schema"]) == SCHEMA
    assert sidecar["binned_features"] == names
    assert (sidecar["batches"], sidecar["sites"], sidecar["cells"]) == (3, 2, 3)
    assert sidecar["periods"] == {"first": "2018-04-01", "last": "2018-04-02"}


def test_export_refuses_an_unknown_schema_or_missing_db(
    hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(hub.directory / "t.csv")
    assert (
        run_cli(["hub", "export", "--db", str(hub.db), "--schema-hash", "0" * 64, "--out", out])
        == 2
    )
    assert "fraudscreen hub status" in capsys.readouterr().err
    missing = str(hub.directory / "nope.sqlite3")
    assert (
        run_cli(["hub", "export", "--db", missing, "--schema-hash", SCHEMA.hash, "--out", out]) == 2
    )
    assert "no hub database" in capsys.readouterr().err
    assert not Path(missing).exists()


def test_status_cli_lists_sites_schemas_and_releases(
    hub: Hub, capsys: pytest.CaptureFixture[str]
) -> None:
    _push_fleet(hub)
    assert run_cli(["hub", "status", "--db", str(hub.db)]) == 0
    out = capsys.readouterr().out
    assert "2 sites" in out and "0 releases" in out
    line_a = next(line for line in out.splitlines() if line.startswith("shop-a"))
    # site, (unreported) version, predictor -, last seen date + time, ago, pending -,
    # epsilon spent (summed over its batches)/budget unknown, batches, canary -, status
    fields = line_a.split()
    assert fields[1:3] == ["(unreported)", "-"] and fields[6:10] == ["-", "3/?", "3", "-"]
    assert fields[10] == "ok"
    assert f"schema {SCHEMA.hash}" in out
    with pytest.raises(SystemExit) as usage:  # argparse: one usage line, exit 2
        run_cli(["hub", "status", "--db", str(hub.db), "--stale-after", "soon"])
    assert usage.value.code == 2
    assert "not a duration like 90s" in capsys.readouterr().err


# -- no raw data at rest ------------------------------------------------------------------

# Every column of every aggregate table, and what its values may be: codes, counts and
# batch metadata. Nothing else has a place to be.
_INTEGER = re.compile(r"-?\d+")
ALLOWED_COLUMNS = {
    "batches": {
        "site_id",
        "batch_id",
        "period",
        "period_days",
        "schema_hash",
        "epsilon",
        "delta",
        "mechanism",
        "cell_count",
        "content_sha256",
        "received_at",
        "kind",
    },
    "cells": {"site_id", "batch_id", "codes", "noisy_total", "noisy_fraud"},
    "bin_schemas": {"schema_hash", "definition", "accepted"},
    "releases": {"seq", "model_version", "content_sha256", "everyone", "published_at"},
    "release_targets": {"seq", "site_id"},
    "release_files": {"seq", "name", "content"},
    "schema_migrations": {"version", "name", "applied_at"},
    "site_states": {"site_id", "first_seen", "last_seen", "changed_at", *STATE_FIELDS},
    "site_state_history": {"id", "site_id", "changed_at", *STATE_FIELDS},
}
_LUHN_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
_HASH = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")


def test_the_database_holds_only_codes_counts_and_metadata(hub: Hub, bundles: Bundles) -> None:
    _push_fleet(hub)
    publish(hub, bundle_files(bundles.v1), bundle_version(bundles.v1), sites=("shop-a",))
    pushed = hub.server.store.batches()
    allowed_text = {
        "site_id": {b.site_id for b in pushed},
        "batch_id": {b.batch_id for b in pushed},
        "period": {b.period for b in pushed},
        "schema_hash": {b.schema_hash for b in pushed},
        "mechanism": {MECHANISM},
        "kind": {"threshold", "known_domain"},
    }
    with sqlite3.connect(hub.db) as conn:
        tables = {
            name
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("sqlite_")
        }
        assert tables == set(ALLOWED_COLUMNS)
        for table in ("batches", "cells"):
            cursor = conn.execute(f"SELECT * FROM {table}")  # noqa: S608 - fixed names
            columns = [d[0] for d in cursor.description]
            assert set(columns) == ALLOWED_COLUMNS[table]
            for row in cursor:
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, int | float):
                        continue  # counts, codes' metadata, epsilon, the hub's receive time
                    assert isinstance(value, str), (table, column, value)
                    if column == "codes":
                        assert all(
                            _INTEGER.fullmatch(c) and -1 <= int(c) <= 4 for c in value.split(",")
                        )
                    elif column == "content_sha256":
                        assert re.fullmatch(r"[0-9a-f]{64}", value)
                    else:
                        assert value in allowed_text[column], (table, column, value)
        definitions = [json.loads(d) for (d,) in conn.execute("SELECT definition FROM bin_schemas")]
        assert all(set(d) == {"features", "edges", "nullable", "sha256"} for d in definitions)
        # Nothing anywhere (release files excepted: analysts' signed model, not site data)
        # looks like a card number.
        for table in tables - {"release_files"}:
            for row in conn.execute(f"SELECT * FROM {table}"):  # noqa: S608 - fixed names
                for value in row:
                    text = str(value)
                    assert not any(pan in text for pan in PANS)
                    if _HASH.fullmatch(text):
                        continue  # ids and hashes, checked per column above
                    runs = _LUHN_RUN.findall(text.replace(".", " "))
                    assert not [r for r in runs if luhn_valid(r)], (table, value)
    assert oct(hub.db.stat().st_mode & 0o777) == "0o600"
    assert hub.rows("PRAGMA journal_mode") == [("wal",)]
