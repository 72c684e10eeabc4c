"""The fleet load test (loadtests/fleet_sync.py) in small: 30 light gateways speaking the
real Sync protocol against 1 and then 3 real hub processes on PostgreSQL. Checks that it
runs end to end, every batch is stored exactly once and the report has its figures; the
figures themselves are printed, never asserted (shared machine)."""

from __future__ import annotations

from pathlib import Path

from loadtests.fleet_sync import run_fleet, write_tokens
from loadtests.postgres_server import PostgresServer


def test_small_fleet_against_one_and_three_hubs(tmp_path: Path, postgres: PostgresServer) -> None:
    sites = [f"site-{i:05d}" for i in range(30)]
    tokens = write_tokens(tmp_path / "sites.tokens", sites)
    for hubs in (1, 3):
        result = run_fleet(postgres.database(), tmp_path, 30, hubs, 8, tokens)
        print(result)
        assert result.errors == 0 and result.stored_once
        assert set(result.latency_ms) == {"PushBatch", "FetchRelease", "ReportState"}
        assert result.pushes_per_second > 0 and result.db_bytes_per_1000_site_days > 0
        assert result.cells_per_batch > 1000  # a real known-domain batch of the default schema
