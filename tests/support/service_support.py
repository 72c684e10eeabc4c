"""Start real gateways on loopback for tests, and build valid requests."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from fraudscreen.config import GatewayConfig, load_config
from fraudscreen.gateway.server import Gateway
from fraudscreen.hub.server import HubServer, HubSettings
from fraudscreen.v1 import screening_pb2 as pb
from fraudscreen.v1 import screening_pb2_grpc as pb_grpc

# Luhn-valid test card numbers; tests scan every artefact for them.
PANS = ("4000000000000002", "4000001234567899", "5555555555554444", "4111111111111111")


def gateway_env(
    directory: Path, bundle: Path | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """FRAUDSCREEN_* settings for a gateway keeping its files in `directory`."""
    return {
        "FRAUDSCREEN_SERVER_LISTEN": "127.0.0.1:0",
        "FRAUDSCREEN_METRICS_LISTEN": "127.0.0.1:0",
        "FRAUDSCREEN_SITE_KEY_FILE": str(directory / "site.key"),
        "FRAUDSCREEN_JOURNAL_PATH": str(directory / "journal.sqlite3"),
        "FRAUDSCREEN_MODEL_RELEASES_DIR": str(directory / "releases"),
        "FRAUDSCREEN_SERVER_GRACE_SECONDS": "2",
        "FRAUDSCREEN_LOGGING_FORMAT": "json",
        **({"FRAUDSCREEN_MODEL_BUNDLE": str(bundle)} if bundle is not None else {}),
        **(extra or {}),
    }


def gateway_config(
    directory: Path, bundle: Path | None, extra: Mapping[str, str] | None = None
) -> GatewayConfig:
    return load_config(None, gateway_env(directory, bundle, extra))


@contextmanager
def running_gateway(config: GatewayConfig) -> Iterator[Gateway]:
    gateway = Gateway(config)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop(grace=1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_hub(directory: Path, *, port: int = 0, **overrides: object) -> Iterator[HubServer]:
    """A hub keeping its files in `directory`; `overrides` replace HubSettings fields."""
    values: dict[str, object] = {
        "db": directory / "hub.sqlite3",
        "site_tokens": directory / "sites.tokens",
        "publisher_tokens": directory / "publishers.tokens",
        "listen": f"127.0.0.1:{port}",
        "grace_seconds": 0.5,
        **overrides,
    }
    server = HubServer(HubSettings(**values))  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=0)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m fraudscreen ARGS` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "fraudscreen", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def read_log_until(
    process: subprocess.Popen[str], event: str, timeout: float
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Read the child's stderr JSON log up to `event` (or EOF, or `timeout` seconds).

    Returns the lines read and the last record of each event seen."""
    assert process.stderr is not None
    lines: list[str] = []
    events: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        record = json.loads(line) if line.startswith("{") else {}
        name = record.get("event")
        if isinstance(name, str):
            events[name] = record
        if name == event:
            break
    return lines, events


def drain_log(process: subprocess.Popen[str], lines: list[str]) -> str:
    """Everything the child logged: `lines` already read, then the rest of stderr."""
    assert process.stderr is not None
    lines.extend(process.stderr.readlines())
    return "".join(lines)


def stub_for(gateway: Gateway) -> tuple[grpc.Channel, pb_grpc.ScreeningStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{gateway.port}")
    return channel, pb_grpc.ScreeningStub(channel)


def screen_request(
    transaction_id: str = "tx-1",
    *,
    terminal_id: str = "T1",
    pan: str = PANS[0],
    amount_minor: int = 1250,
    currency: str = "EUR",
    seconds: int | None = None,
    mcc: int | None = 5411,
    entry_mode: int = pb.ENTRY_MODE_CHIP,
) -> pb.ScreenRequest:
    request = pb.ScreenRequest(
        transaction_id=transaction_id,
        terminal_id=terminal_id,
        pan=pan,
        amount_minor=amount_minor,
        currency=currency,
        timestamp=Timestamp(seconds=int(time.time()) - 60 if seconds is None else seconds),
        entry_mode=entry_mode,  # type: ignore[arg-type]
    )
    if mcc is not None:
        request.merchant_category_code = mcc
    return request
