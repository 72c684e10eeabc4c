"""The hub as a service, over real gRPC on loopback with a real SQLite file: health and
reflection, the bin schemas it starts with, the CLI verbs, SIGTERM drain.

The other tests/test_hub_*.py modules cover one concern each: push (idempotency,
validation by field, known-domain batches), auth (tokens, TLS and mTLS), database (exact
sums, export and status, no raw data at rest, migrations), releases (signed, canary
targeting); tests/hub_support.py builds the hub they run against."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fraudscreen.binschema import BinSchema
from fraudscreen.hub.server import HubServer
from fraudscreen.hub.tokens import add_token, hash_token
from fraudscreen.model.bundle import load_bundle
from fraudscreen.v1 import sync_pb2 as pb
from fraudscreen.v1 import sync_pb2_grpc as pb_grpc
from tests.support.hub_support import (
    DEFAULT_BUNDLE,
    SCHEMA,
    Hub,
    Keys,
    bearer,
    hub_settings,
    make_batch,
    run_cli,
    running_hub,
)
from tests.support.service_support import drain_log, read_log_until


def test_health_and_reflection_name_the_sync_service(hub: Hub) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{hub.server.port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="fraudscreen.v1.Sync"), timeout=5
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in replies for s in r.list_services_response.service}
    assert "fraudscreen.v1.Sync" in names


def test_schemas_come_from_bundles_and_json_files(tmp_path: Path, keys: Keys) -> None:
    other = BinSchema.from_edges({"TX_AMOUNT": (10.0, 100.0)})
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(other.to_json()))
    # the shipped bundle's schema (it may predate nullable lists: then its legacy hash)
    bundled = load_bundle(DEFAULT_BUNDLE).bin_schema
    assert bundled is not None and bundled.edges == SCHEMA.edges
    with running_hub(tmp_path / "hub", keys, schemas=(DEFAULT_BUNDLE, schema_file)) as hub:
        assert set(hub.server.schemas.hashes()) == {bundled.hash, other.hash}
        assert hub.push(make_batch(cells=[([2], 60, 1)], schema_hash=other.hash)).stored
        assert hub.push(make_batch(period="2018-04-02", schema_hash=bundled.hash)).stored
    broken = tmp_path / "broken.json"
    broken.write_text('{"features": ["TX_AMOUNT"]}')
    with pytest.raises(ValueError, match="not a valid bin schema"):
        HubServer(hub_settings(tmp_path / "hub", keys, schemas=(broken,)))


# -- CLI ----------------------------------------------------------------------------------


def test_add_site_cli_prints_the_token_once_and_stores_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "var" / "sites.tokens"
    assert run_cli(["hub", "add-site", "shop-9", "--tokens", str(path)]) == 0
    captured = capsys.readouterr()
    token = captured.out.strip()
    assert len(token) >= 40 and "\n" not in token
    assert "shown this once" in captured.err and token not in captured.err
    assert token not in path.read_text() and hash_token(token) in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert run_cli(["hub", "add-site", "shop-9", "--tokens", str(path)]) == 2
    assert "--rotate" in capsys.readouterr().err
    assert run_cli(["hub", "add-site", "bad/name", "--tokens", str(path)]) == 2
    assert (
        run_cli(["hub", "add-publisher", "alice", "--publisher-token-file", str(path.parent / "p")])
        == 0
    )
    assert capsys.readouterr().out.strip()


def test_hub_serve_process_drains_on_sigterm(tmp_path: Path) -> None:
    tokens = tmp_path / "sites.tokens"
    token = add_token(tokens, "shop-a")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fraudscreen",
            "--log-format",
            "json",
            "hub",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            str(tmp_path / "hub.sqlite3"),
            "--tokens",
            str(tokens),
            "--publisher-token-file",
            str(tmp_path / "publishers.tokens"),
            "--grace-seconds",
            "5",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    try:
        lines, events = read_log_until(process, "hub.listening", timeout=30)
        port = events.get("hub.listening", {}).get("port", 0)
        assert port, "".join(lines)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="fraudscreen.v1.Sync"), timeout=5
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            reply = pb_grpc.SyncStub(channel).PushBatch(
                pb.PushBatchRequest(batch=make_batch()), metadata=bearer(token), timeout=5
            )
            assert reply.stored
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    logs = drain_log(process, lines)
    assert '"hub.draining"' in logs and '"hub.stopped"' in logs
    assert token not in logs
    assert "hub.no_publishers" in logs  # publishing disabled is said, not silent
