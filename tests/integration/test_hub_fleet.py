"""Several hub processes on one PostgreSQL database: real `fraudscreen hub serve`
subprocesses on 127.0.0.1, many concurrent pushers resending the same batches to all of
them, releases published through one process and fetched through the others; and a
gateway's hub link rotating through a list of hub addresses."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest

from fraudscreen.config import SyncConfig
from fraudscreen.gateway.hub_link import HubWorker
from fraudscreen.hub.tokens import add_token
from fraudscreen.model.signing import generate_keypair
from fraudscreen.v1 import sync_pb2 as pb
from fraudscreen.v1 import sync_pb2_grpc as pb_grpc
from loadtests.postgres_server import PostgresServer
from tests.support.hub_support import (
    bearer,
    bundle_files,
    bundle_version,
    codes,
    make_batch,
    signed_bundle,
)

SITES = tuple(f"shop-{i:02d}" for i in range(12))


@dataclass
class HubFleet:
    ports: list[int]
    tokens: dict[str, str]
    publisher: str
    url: str

    @contextmanager
    def stub(self, index: int) -> Iterator[pb_grpc.SyncStub]:
        with grpc.insecure_channel(f"127.0.0.1:{self.ports[index]}") as channel:
            yield pb_grpc.SyncStub(channel)


def hub_process(directory: Path, url: str, public_key: Path, log: Path) -> subprocess.Popen[bytes]:
    """One `fraudscreen hub serve`; its log goes to a file (a pipe nobody reads would fill
    and block the hub under load)."""
    with log.open("wb") as sink:
        return subprocess.Popen(
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
                url,
                "--tokens",
                str(directory / "sites.tokens"),
                "--publisher-token-file",
                str(directory / "publishers.tokens"),
                "--trusted-key",
                str(public_key),
                "--grace-seconds",
                "2",
                "--max-workers",
                "8",
            ],
            stderr=sink,
            stdout=subprocess.DEVNULL,
        )


def listening_port(process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "hub.listening":
                return int(json.loads(line)["port"])
        time.sleep(0.1)
    raise AssertionError(f"hub did not start: {log.read_text()[-3000:]}")


@contextmanager
def hub_fleet(directory: Path, url: str, public_key: Path, count: int) -> Iterator[HubFleet]:
    tokens = {site: add_token(directory / "sites.tokens", site) for site in SITES}
    publisher = add_token(directory / "publishers.tokens", "alice")
    logs = [directory / f"hub-{i}.log" for i in range(count)]
    processes = [hub_process(directory, url, public_key, log) for log in logs]
    try:
        ports = [listening_port(p, log) for p, log in zip(processes, logs, strict=True)]
        yield HubFleet(ports, tokens, publisher, url)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for log in logs:
        text = log.read_text()
        assert "s3cret" not in text  # the DSN's password is never logged
        assert '"hub.stopped"' in text, text[-2000:]


@pytest.fixture(scope="module")
def analyst_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("fleet-keys")
    generate_keypair(directory / "analyst.key", directory / "analyst.pub")
    return directory / "analyst.key", directory / "analyst.pub"


def test_three_hub_processes_store_every_concurrent_batch_once_and_agree_on_releases(
    tmp_path: Path, postgres: PostgresServer, analyst_key: tuple[Path, Path]
) -> None:
    url = postgres.database() + "&password=s3cret"  # trust auth ignores it; must not be logged
    private, public = analyst_key
    batches = [
        (site, make_batch(site, f"2018-04-{day:02d}", [(codes(0), 10 + day, 1), (codes(2), 3, -1)]))
        for site in SITES
        for day in range(1, 6)
    ]
    with hub_fleet(tmp_path, url, public, count=3) as fleet:
        barrier = threading.Barrier(12)

        def pusher(worker: int) -> list[tuple[str, bool]]:
            """Each pusher sends every batch once, to a random hub, in its own order."""
            rng = random.Random(worker)
            order = batches[:]
            rng.shuffle(order)
            channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in fleet.ports]
            stubs = [pb_grpc.SyncStub(c) for c in channels]
            barrier.wait()
            results = []
            try:
                for site, batch in order:
                    reply = rng.choice(stubs).PushBatch(
                        pb.PushBatchRequest(batch=batch),
                        metadata=bearer(fleet.tokens[site]),
                        timeout=60,
                    )
                    assert reply.stored != reply.duplicate
                    results.append((batch.batch_id, reply.stored))
            finally:
                for channel in channels:
                    channel.close()
            return results

        with ThreadPoolExecutor(12) as pool:
            results = [r for rs in pool.map(pusher, range(12)) for r in rs]
        stored = Counter(batch_id for batch_id, was_stored in results if was_stored)
        acknowledged = Counter(batch_id for batch_id, _ in results)
        assert set(acknowledged.values()) == {12}  # every pusher got an answer for every batch
        assert stored == Counter({b.batch_id: 1 for _, b in batches})  # one writer each
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT COUNT(*), COUNT(DISTINCT batch_id) FROM batches").fetchone()
            cells = conn.execute(
                "SELECT SUM(noisy_total), COUNT(*) FROM cells WHERE codes = %s",
                (",".join(map(str, codes(0))),),
            ).fetchone()
        assert rows == (len(batches), len(batches))
        assert cells == (sum(10 + day for day in range(1, 6)) * len(SITES), len(batches))

        # Releases: a canary published through hub 0 is what hubs 1 and 2 serve.
        bundle = signed_bundle(tmp_path / "v-fleet", private, version="fleet-v1")
        files, version = bundle_files(bundle), bundle_version(bundle)
        canary = pb.PublishReleaseRequest(
            release=pb.ModelRelease(
                model_version=version,
                files=[pb.ReleaseFile(name=n, content=c) for n, c in files.items()],
            ),
            sites=["shop-00", "shop-01"],
        )
        with fleet.stub(0) as stub:
            stub.PublishRelease(canary, metadata=bearer(fleet.publisher), timeout=30)

        def available(index: int, site: str) -> bool:
            with fleet.stub(index) as stub:
                reply = stub.FetchRelease(
                    pb.FetchReleaseRequest(), metadata=bearer(fleet.tokens[site]), timeout=30
                )
            if reply.available:
                assert reply.release.model_version == version
                assert {f.name: f.content for f in reply.release.files} == files
            return reply.available

        assert [available(i, "shop-00") for i in (1, 2)] == [True, True]
        assert [available(i, "shop-05") for i in (0, 1, 2)] == [False, False, False]
        del canary.sites[:]  # promotion to everyone, through hub 2
        with fleet.stub(2) as stub:
            stub.PublishRelease(canary, metadata=bearer(fleet.publisher), timeout=30)
        assert [available(i, "shop-05") for i in (0, 1, 2)] == [True, True, True]


class _Probe(HubWorker):
    def _run(self) -> None:  # never started: the test drives it
        raise AssertionError


def test_a_gateway_rotates_through_its_hub_addresses(
    tmp_path: Path, postgres: PostgresServer, analyst_key: tuple[Path, Path]
) -> None:
    """One address is dead: a push fails there once, then goes to the next hub."""
    url = postgres.database()
    with hub_fleet(tmp_path, url, analyst_key[1], count=1) as fleet:
        dead = _free_port()
        config = SyncConfig(hub=f"127.0.0.1:{dead}, 127.0.0.1:{fleet.ports[0]}")
        assert config.hub_addresses == (f"127.0.0.1:{dead}", f"127.0.0.1:{fleet.ports[0]}")
        worker = _Probe(config, "probe")
        visited: list[str] = []
        failures: list[grpc.StatusCode] = []
        for _ in range(3):
            visited.append(worker.hub_address)
            try:
                reply = worker.hub_stub().PushBatch(
                    pb.PushBatchRequest(batch=make_batch("shop-03")),
                    metadata=bearer(fleet.tokens["shop-03"]),
                    timeout=5,
                )
                break
            except grpc.RpcError as exc:
                failures.append(exc.code())
                worker.hub_failed()
        assert reply.stored and failures in ([], [grpc.StatusCode.UNAVAILABLE])
        assert visited[-1] == f"127.0.0.1:{fleet.ports[0]}"
        first = worker.hub_address  # each failed round moves on, and the list wraps around
        worker.hub_failed()
        second = worker.hub_address
        worker.hub_failed()
        assert {first, second} == set(config.hub_addresses) and worker.hub_address == first
        worker.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
