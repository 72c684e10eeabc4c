"""One store test-suite, run against both HubStore backends: the SQLite file and a real
PostgreSQL server (loadtests/postgres_server.py; never skipped). Plus what only one backend
has: versioned migrations of an old SQLite file, the `hub migrate` verb, concurrency
between several store instances (as several hub processes) on one PostgreSQL database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from fraudscreen.hub.database import describe, open_store
from fraudscreen.hub.migrations import LATEST
from fraudscreen.hub.storage import CellSum, ConflictError, HubStore
from loadtests.postgres_server import PostgresServer
from tests.support.hub_records import SCHEMA, batch, codes, state

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "hub.sqlite3")
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.database()


@pytest.fixture
def opened(db_url: str) -> Iterator[Callable[[], HubStore]]:
    """Open stores on one database (each like a hub process); all closed after the test."""
    stores: list[HubStore] = []

    def open_one() -> HubStore:
        stores.append(open_store(db_url, pool_size=8))
        return stores[-1]

    yield open_one
    for store in stores:
        store.close()


@pytest.fixture
def store(opened: Callable[[], HubStore]) -> HubStore:
    return opened()


both = pytest.mark.parametrize("db_url", BACKENDS, indirect=True)


@both
def test_put_batch_is_idempotent_and_refuses_conflicts(store: HubStore) -> None:
    assert store.put_batch(batch()) is True
    assert store.put_batch(batch()) is False
    # cell order does not matter: a set
    assert store.put_batch(batch(cells=((codes(3, 1), 5, -2), (codes(0), 10, 1)))) is False
    with pytest.raises(ConflictError, match="already stored with different content"):
        store.put_batch(batch(epsilon=2.0))
    assert store.summed_table(SCHEMA.hash) == {
        codes(0): CellSum(10, 1, 1),
        codes(3, 1): CellSum(5, -2, 1),
    }
    [record] = store.batches()
    assert (record.site_id, record.cells, record.epsilon, record.kind) == ("s", 2, 1.0, "threshold")


@both
def test_summed_table_batches_and_sites_summary_are_exact(store: HubStore) -> None:
    store.put_batch(batch("a", "1" * 32, "2018-04-01"))
    store.put_batch(batch("a", "2" * 32, "2018-04-02", cells=((codes(0), 7, 0),)))
    store.put_batch(batch("b", "3" * 32, "2018-04-01", epsilon=0.5, kind="known_domain"))
    store.put_batch(batch("b", "4" * 32, "2018-04-01", schema_hash="f" * 64))
    store.put_batch(batch("c", "5" * 32, "2018-04-01", period_days=7))  # a week: 7 x epsilon
    assert store.summed_table(SCHEMA.hash) == {
        codes(0): CellSum(37, 3, 4),
        codes(3, 1): CellSum(15, -6, 3),
    }
    assert store.summed_table("f" * 64) == {
        codes(0): CellSum(10, 1, 1),
        codes(3, 1): CellSum(5, -2, 1),
    }
    assert [(r.site_id, r.batch_id, r.kind) for r in store.batches(SCHEMA.hash)] == [
        ("a", "1" * 32, "threshold"),
        ("a", "2" * 32, "threshold"),
        ("b", "3" * 32, "known_domain"),
        ("c", "5" * 32, "threshold"),
    ]
    assert store.period_tables(SCHEMA.hash) == {
        "2018-04-01": {codes(0): CellSum(30, 3, 3), codes(3, 1): CellSum(15, -6, 3)},
        "2018-04-02": {codes(0): CellSum(7, 0, 1)},
    }
    summary = {s.site_id: s for s in store.sites_summary()}
    assert summary["a"].batches == 2 and summary["a"].periods == 2
    assert summary["a"].last_period == "2018-04-02" and summary["a"].epsilon == 2.0
    assert summary["b"].epsilon == 1.5 and summary["b"].periods == 1
    assert summary["b"].schema_hashes == tuple(sorted((SCHEMA.hash, "f" * 64)))
    assert summary["c"].epsilon == 7.0


@both
def test_schemas_are_remembered_and_acceptance_only_grows(store: HubStore) -> None:
    assert store.schema(SCHEMA.hash) is None
    store.put_schema(SCHEMA)
    assert store.schema(SCHEMA.hash) == SCHEMA
    assert store.schemas() == [SCHEMA] and store.schemas(accepted_only=True) == []
    store.put_schema(SCHEMA, accept=True)
    store.put_schema(SCHEMA)  # a later non-accepting put does not revoke it
    assert store.schemas(accepted_only=True) == [SCHEMA]


@both
def test_releases_canary_promotion_and_conflicts(store: HubStore) -> None:
    files = {"model.txt": b"tree", "manifest.json": b"{}"}
    assert store.release_for("a") is None and store.releases() == []
    canary = store.put_release("v1", files, ["b", "a", "a"], "2026-01-01T00:00:00+00:00")
    assert canary.sites == ("a", "b") and canary.size == 6
    found = store.release_for("a")
    assert found is not None and found.model_version == "v1" and found.files == files
    assert store.release_for("c") is None  # not in the canary
    assert store.release_for("a", current_version="v1") is None
    promoted = store.put_release("v1", files, None, "2026-01-02T00:00:00+00:00")
    assert promoted.seq > canary.seq and promoted.sites is None
    assert store.release_for("c") is not None
    with pytest.raises(ConflictError, match="already published with different files"):
        store.put_release("v1", {"model.txt": b"other"}, None, "2026-01-03T00:00:00+00:00")
    store.put_release("v2", {"model.txt": b"v2"}, ["c"], "2026-01-04T00:00:00+00:00")
    newest_c = store.release_for("c")
    assert newest_c is not None and newest_c.model_version == "v2"
    newest_a = store.release_for("a")
    assert newest_a is not None and newest_a.model_version == "v1"
    assert [(r.model_version, r.sites) for r in store.releases()] == [
        ("v1", ("a", "b")),
        ("v1", None),
        ("v2", ("c",)),
    ]
    assert store.release_file("v1", "manifest.json") == b"{}"
    assert store.release_file("v2", "model.txt") == b"v2"
    assert store.release_file("v2", "manifest.json") is None
    assert store.release_file("v3", "model.txt") is None


@both
def test_site_states_keep_the_latest_and_a_history_of_changes(store: HubStore) -> None:
    assert store.site_states() == [] and store.state_history() == []
    assert store.put_site_state("a", state(), 100.0) is True  # new site: a history row
    assert store.put_site_state("a", state(pending_batches=3, epsilon_spent=2.0), 160.0) is False
    [latest] = store.site_states()
    assert latest.site_id == "a" and latest.first_seen == 100.0 and latest.last_seen == 160.0
    assert latest.changed_at == 100.0
    assert latest.state.pending_batches == 3 and latest.state.epsilon_spent == 2.0
    assert store.put_site_state("a", state(model_version="v2", stand_in=True), 220.0) is True
    store.put_site_state("b", state(), 230.0)
    history = store.state_history("a")
    assert [(c.changed_at, c.state.model_version, c.state.stand_in) for c in history] == [
        (100.0, "v1", False),
        (220.0, "v2", True),
    ]
    assert [c.site_id for c in store.state_history()] == ["a", "a", "b"]
    states = {s.site_id: s for s in store.site_states()}
    assert states["a"].changed_at == 220.0 and states["a"].state.model_version == "v2"
    assert states["a"].stale(now=500.0, stale_after=200.0)
    assert not states["b"].stale(now=400.0, stale_after=200.0)


@both
def test_the_database_is_at_the_latest_schema_version(store: HubStore, db_url: str) -> None:
    assert store.schema_version() == LATEST
    assert store.applied_migrations == list(range(1, LATEST + 1))
    again = open_store(db_url)
    try:
        assert again.applied_migrations == [] and again.schema_version() == LATEST
    finally:
        again.close()


@both
def test_two_stores_on_one_database_store_each_concurrent_batch_once(
    opened: Callable[[], HubStore],
) -> None:
    """Two store instances (as two hub processes) racing to put the same 40 batches."""
    first, second = opened(), opened()
    batches = [batch("s", f"{i:032d}", f"2018-04-{1 + i % 28:02d}") for i in range(40)]
    barrier = threading.Barrier(8)

    def push(worker: int) -> list[bool]:
        barrier.wait()
        target = first if worker % 2 else second
        return [target.put_batch(b) for b in batches]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(push, range(8)))
    stored_per_batch = [sum(r[i] for r in results) for i in range(len(batches))]
    assert stored_per_batch == [1] * len(batches)  # exactly one caller stored each
    assert len(first.batches()) == 40
    assert first.summed_table(SCHEMA.hash)[codes(0)] == CellSum(400, 40, 40)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgres_concurrent_publications_of_one_version_agree(
    opened: Callable[[], HubStore],
) -> None:
    """Same version, different files, from two stores at once: exactly one wins."""
    first, second = opened(), opened()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def publish(target: HubStore, content: bytes) -> None:
        barrier.wait()
        try:
            target.put_release("v9", {"model.txt": content}, None, "2026-01-01T00:00:00+00:00")
            outcomes.append("stored")
        except ConflictError:
            outcomes.append("conflict")

    threads = [
        threading.Thread(target=publish, args=(first, b"one")),
        threading.Thread(target=publish, args=(second, b"two")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "stored"]
    assert len({r.content_sha256 for r in second.releases()}) == 1


def test_describe_hides_the_password(postgres: PostgresServer) -> None:
    text = describe("postgresql://hub:s3cret-pw@db.example:5432/fleet?sslmode=require")
    assert "s3cret-pw" not in text and "db.example" in text and "fleet" in text


def test_a_postgres_database_that_cannot_be_reached_is_a_clear_error(
    postgres: PostgresServer,
) -> None:
    missing = postgres.admin_dsn("no_such_database")
    with pytest.raises(ValueError, match="cannot connect to the hub database"):
        open_store(missing)


def test_migrate_verb_on_both_backends(
    tmp_path: Path, postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.hub_support import run_cli

    url = postgres.database()
    assert run_cli(["hub", "migrate", "--db", url]) == 0
    out = capsys.readouterr().out
    assert f"schema version {LATEST}" in out and "applied 1, 2" in out
    assert run_cli(["hub", "migrate", "--db", url]) == 0
    assert "nothing to apply" in capsys.readouterr().out
    with psycopg.connect(url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == list(range(1, LATEST + 1))
    sqlite_path = tmp_path / "hub.sqlite3"
    assert run_cli(["hub", "migrate", "--db", str(sqlite_path)]) == 0
    assert f"schema version {LATEST}" in capsys.readouterr().out
