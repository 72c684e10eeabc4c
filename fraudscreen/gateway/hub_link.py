"""The gateway's link to the hub: the channel, the site's bearer token, and HubWorker,
the background thread both the sync agent and the model updater run on."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import grpc

from fraudscreen.config import SyncConfig
from fraudscreen.rpc.channels import client_channel
from fraudscreen.v1 import sync_pb2 as sync_pb
from fraudscreen.v1 import sync_pb2_grpc as sync_grpc

HUB_TOKEN_ENV = "FRAUDSCREEN_HUB_TOKEN"  # noqa: S105 - the variable name, not a secret


def hub_channel(sync: SyncConfig, address: str | None = None) -> grpc.Channel:
    """A channel to `address` (default: the first of sync.hub's addresses)."""
    return client_channel(
        address or sync.hub_addresses[0],
        ca_file=sync.ca_file,
        cert_file=sync.cert_file,
        key_file=sync.key_file,
    )


def hub_token(sync: SyncConfig) -> str | None:
    if sync.token_file is not None:
        return Path(sync.token_file).read_text().strip()
    return os.environ.get(HUB_TOKEN_ENV) or None


def hub_metadata(sync: SyncConfig) -> tuple[tuple[str, str], ...]:
    """The site's bearer token, read on every call so a rotated token file is picked up."""
    token = hub_token(sync)
    return (("authorization", f"Bearer {token}"),) if token else ()


class HubWorker:
    """A gateway thread that talks to the hub now and then (the sync agent, the model
    updater): a stop flag, the thread, and a channel opened on first use.

    With several hub addresses it starts at a random one (a fleet spreads over the hub
    processes) and `hub_failed()` moves it to the next, so a hub process that is down
    costs one failed round, not an outage."""

    def __init__(self, hub: SyncConfig, thread_name: str) -> None:
        self._hub = hub
        self._thread_name = thread_name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._channel: grpc.Channel | None = None
        self._addresses = hub.hub_addresses
        self._index = random.randrange(len(self._addresses)) if self._addresses else 0
        # The gateway's state sent with each call (gateway.state_report); None: not sent.
        self.gateway_state: Callable[[], sync_pb.GatewayState] | None = None

    def state_message(self) -> sync_pb.GatewayState | None:
        return self.gateway_state() if self.gateway_state is not None else None

    @property
    def hub_address(self) -> str:
        return self._addresses[self._index] if self._addresses else ""

    def hub_stub(self) -> sync_grpc.SyncStub:
        if self._channel is None:
            self._channel = hub_channel(self._hub, self.hub_address)
        return sync_grpc.SyncStub(self._channel)

    def hub_failed(self) -> None:
        """A round failed: next time, use the next hub address (and a fresh channel)."""
        if len(self._addresses) < 2:
            return
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self._index = (self._index + 1) % len(self._addresses)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._channel is not None:
            self._channel.close()

    def _run(self) -> None:
        raise NotImplementedError
