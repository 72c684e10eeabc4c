"""Start real gateways on loopback for tests, and build valid requests."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from fraudscreen.config import GatewayConfig, load_config
from fraudscreen.transport.server import Gateway
from fraudscreen.v1 import screening_pb2 as pb
from fraudscreen.v1 import screening_pb2_grpc as pb_grpc

# Luhn-valid test card numbers; tests scan every artefact for them.
PANS = ("4000000000000002", "4000001234567899", "5555555555554444", "4111111111111111")


def gateway_config(
    directory: Path, bundle: Path | None, extra: Mapping[str, str] | None = None
) -> GatewayConfig:
    env = {
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
    return load_config(None, env)


@contextmanager
def running_gateway(config: GatewayConfig) -> Iterator[Gateway]:
    gateway = Gateway(config)
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop(grace=1)


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
