"""Fleet load test of the hub: N simulated gateways (light clients speaking the real Sync
protocol, not full gateways) each push a day's batch with their state and poll for
releases, against real `fraudscreen hub serve` processes on one PostgreSQL database.
Loopback only, bounded (every gateway does a fixed amount of work, then it stops).

    python -m loadtests.fleet_sync --gateways 1000 --hubs 1,3

Without --db it starts a throwaway PostgreSQL (Debian's postgresql package, as the tests
do). Prints pushes/s, p50/p99 per RPC, hub CPU seconds and database growth per 1,000
site-days for each hub count, and checks every batch was stored exactly once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import psutil
import psycopg

from fraudscreen.binschema import BinSchema
from fraudscreen.hub.tokens import hash_token
from fraudscreen.privacy.release import ReleaseParameters, release_known_domain
from fraudscreen.v1 import sync_pb2 as pb
from fraudscreen.v1 import sync_pb2_grpc as pb_grpc
from loadtests.postgres_server import PostgresServer, started_server

PERIOD = "2018-04-01"
POLLS_PER_GATEWAY = 3  # release polls in the simulated day (a real one polls each minute)


@dataclass(frozen=True)
class FleetResult:
    hubs: int
    gateways: int
    cells_per_batch: int
    seconds: float
    pushes_per_second: float
    latency_ms: dict[str, dict[str, float]]  # rpc -> p50, p99
    hub_cpu_seconds_per_1000_site_days: float
    db_bytes_per_1000_site_days: float
    stored_once: bool
    errors: int


def batch_template() -> list[pb.AggregateCell]:
    """A real known-domain release of a small table: every cell of the default domain."""
    schema = BinSchema.default()
    exact = {(0,) * len(schema.binned): (400, 2)}
    table = release_known_domain(exact, schema, ReleaseParameters(1.0, max_contributions=2))
    return [
        pb.AggregateCell(codes=list(c), noisy_total=t, noisy_fraud=f)
        for c, (t, f) in table.cells.items()
    ]


def gateway_batch(site: str, cells: list[pb.AggregateCell]) -> pb.AggregateBatch:
    schema = BinSchema.default()
    return pb.AggregateBatch(
        site_id=site,
        batch_id=hashlib.sha256(f"{site}|{PERIOD}|{schema.hash}".encode()).hexdigest()[:32],
        period=PERIOD,
        period_days=1,
        schema_hash=schema.hash,
        epsilon=1.0,
        delta=0.0,
        mechanism="opendp known-domain laplace (load test)",
        cells=cells,
        kind=pb.RELEASE_KIND_KNOWN_DOMAIN,
    )


def gateway_state(pending: int) -> pb.GatewayState:
    return pb.GatewayState(
        model_version="default",
        predictor="native",
        last_update_result="swapped",
        last_update_at=time.time() - 3600,
        pending_batches=pending,
        epsilon_spent=1.0,
        epsilon_budget=365.0,
        software_version="0.1.0",
    )


@contextmanager
def hub_processes(directory: Path, url: str, count: int) -> Iterator[list[tuple[int, int]]]:
    """(port, pid) of `count` hub processes on one database."""
    processes, logs = [], []
    for index in range(count):
        log = directory / f"hub-{index}.log"
        with log.open("wb") as sink:
            processes.append(
                subprocess.Popen(
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
                        "--max-workers",
                        "16",
                    ],
                    stderr=sink,
                    stdout=subprocess.DEVNULL,
                )
            )
        logs.append(log)
    try:
        ports = []
        for process, log in zip(processes, logs, strict=True):
            ports.append((listening_port(process, log), process.pid))
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def listening_port(process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> int:
    """The port a hub bound, from its `hub.listening` log line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for line in log.read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "hub.listening":
                return int(json.loads(line)["port"])
        time.sleep(0.1)
    raise RuntimeError(f"hub did not start: {log.read_text()[-2000:]}")


def write_tokens(path: Path, sites: list[str]) -> dict[str, str]:
    """One token per simulated site, written at once (add_token rewrites the file per
    site, which is right for people and slow for a thousand)."""
    tokens = {site: secrets.token_urlsafe(24) for site in sites}
    path.write_text("".join(f"{site} {hash_token(t)}\n" for site, t in tokens.items()))
    path.chmod(0o600)
    return tokens


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def _db_size(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def run_fleet(
    url: str, directory: Path, gateways: int, hubs: int, workers: int, tokens: dict[str, str]
) -> FleetResult:
    cells = batch_template()
    latencies: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    errors = 0
    stored: dict[str, int] = defaultdict(int)
    with hub_processes(directory, url, hubs) as running:
        addresses = [f"127.0.0.1:{port}" for port, _ in running]
        pids = [pid for _, pid in running]
        channels = [grpc.insecure_channel(a) for a in addresses]
        stubs = [pb_grpc.SyncStub(c) for c in channels]
        size_before, cpu_before = _db_size(url), _cpu(pids)

        def timed(name: str, call: object, *args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            reply = call(*args, **kwargs)  # type: ignore[operator]
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies[name].append(elapsed)
            return reply

        def one_gateway(index: int) -> None:
            nonlocal errors
            site = f"site-{index:05d}"
            stub = stubs[index % len(stubs)]  # each gateway sticks to one hub, spread evenly
            metadata = (("authorization", f"Bearer {tokens[site]}"),)
            try:
                reply = timed(
                    "PushBatch",
                    stub.PushBatch,
                    pb.PushBatchRequest(batch=gateway_batch(site, cells), state=gateway_state(1)),
                    metadata=metadata,
                    timeout=120,
                )
                if reply.stored:  # type: ignore[attr-defined]
                    with lock:
                        stored[site] += 1
                for _ in range(POLLS_PER_GATEWAY):
                    timed(
                        "FetchRelease",
                        stub.FetchRelease,
                        pb.FetchReleaseRequest(current_version="default", state=gateway_state(0)),
                        metadata=metadata,
                        timeout=120,
                    )
                timed(
                    "ReportState",
                    stub.ReportState,
                    pb.ReportStateRequest(state=gateway_state(0)),
                    metadata=metadata,
                    timeout=120,
                )
            except grpc.RpcError:
                with lock:
                    errors += 1

        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one_gateway, range(gateways)))
        seconds = time.perf_counter() - started
        cpu = _cpu(pids) - cpu_before
        size = _db_size(url) - size_before
        for channel in channels:
            channel.close()
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT (site_id, batch_id)) FROM batches"
        ).fetchone()
    assert row is not None
    per_1000 = 1000 / gateways
    return FleetResult(
        hubs=hubs,
        gateways=gateways,
        cells_per_batch=len(cells),
        seconds=round(seconds, 2),
        pushes_per_second=round(len(latencies["PushBatch"]) / seconds, 1),
        latency_ms={
            name: {
                "p50": round(statistics.median(values), 2),
                "p99": round(statistics.quantiles(values, n=100)[98], 2)
                if len(values) > 1
                else values[0],
            }
            for name, values in sorted(latencies.items())
        },
        hub_cpu_seconds_per_1000_site_days=round(cpu * per_1000, 1),
        db_bytes_per_1000_site_days=round(size * per_1000),
        stored_once=(
            row[0] == row[1] == gateways and set(stored.values()) == {1} and len(stored) == gateways
        ),
        errors=errors,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gateways", type=int, default=1000, help="simulated gateways, each one site-day (1000)"
    )
    parser.add_argument("--hubs", default="1,3", help="hub process counts to run (1,3)")
    parser.add_argument("--workers", type=int, default=64, help="client threads (64)")
    parser.add_argument("--db", default="", help="postgresql:// URL (default: a throwaway server)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.hubs.split(",") if c]
    server: PostgresServer | None = None
    results = []
    with tempfile.TemporaryDirectory(prefix="fleet-sync-") as tmp:
        directory = Path(tmp)
        sites = [f"site-{i:05d}" for i in range(args.gateways)]
        tokens = write_tokens(directory / "sites.tokens", sites)
        try:
            if not args.db:
                server = started_server(lambda message: sys.exit(message))
            for hubs in counts:
                url = args.db or (server.database() if server else "")
                result = run_fleet(url, directory, args.gateways, hubs, args.workers, tokens)
                results.append(result)
                print(_line(result), flush=True)
        finally:
            if server is not None:
                server.stop()
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.stored_once and not r.errors for r in results) else 1


def _line(r: FleetResult) -> str:
    latency = ", ".join(f"{n} p50 {v['p50']} ms p99 {v['p99']} ms" for n, v in r.latency_ms.items())
    return (
        f"hubs={r.hubs} gateways={r.gateways} cells/batch={r.cells_per_batch}: "
        f"{r.seconds} s, {r.pushes_per_second} pushes/s; {latency}; hub CPU "
        f"{r.hub_cpu_seconds_per_1000_site_days} s and DB "
        f"+{r.db_bytes_per_1000_site_days / 1e6:.1f} MB per 1,000 site-days; "
        f"stored once: {r.stored_once}; errors: {r.errors}"
    )


if __name__ == "__main__":
    sys.exit(main())
