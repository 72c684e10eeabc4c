"""Client side of start-up: wait until a server's gRPC health service says SERVING.

A gateway answers UNAVAILABLE while it compiles its model (seconds on first start); a
client that starts right after `fraudscreen serve` waits here instead of failing every
call, shows what it is waiting for, and gives up after `--wait` seconds with one line
that says what to do.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fraudscreen.rpc.channels import client_channel

# Reconnect quickly while waiting: gRPC's default backoff grows to two minutes, so a
# server that comes up after a few failed attempts would be noticed far too late.
FAST_RECONNECT: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
POLL_SECONDS = 0.5
PROGRESS_EVERY_SECONDS = 5.0


class NotServingError(RuntimeError):
    """The server did not report SERVING within the wait."""


def _state(code: grpc.StatusCode) -> str:
    if code == grpc.StatusCode.UNAVAILABLE:
        return "not reachable"
    return code.name


def wait_until_serving(
    channel: grpc.Channel,
    target: str,
    *,
    service: str,
    wait_seconds: float,
    what: str,
    hint: str,
    call_timeout: float = 3.0,
    progress: TextIO | None = None,
) -> str:
    """Poll `grpc.health.v1.Health/Check` until SERVING; returns the last status name.

    Raises NotServingError after `wait_seconds` (0: ask once). A server without a health
    service (UNIMPLEMENTED) cannot be waited for; the caller's own call will tell.
    """
    out = sys.stderr if progress is None else progress
    stub = health_pb2_grpc.HealthStub(channel)
    started = time.monotonic()
    deadline = started + wait_seconds
    last, shown_at = "", -PROGRESS_EVERY_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=service),
                timeout=call_timeout if remaining <= 0 else max(0.5, min(call_timeout, remaining)),
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return "UNKNOWN"
            state = _state(exc.code())
        else:
            state = str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                if shown_at >= 0:
                    print(f"{what} at {target} is SERVING", file=out, flush=True)
                return state
        now = time.monotonic()
        if now >= deadline:
            waited = f"after {wait_seconds:g} s" if wait_seconds else "now"
            raise NotServingError(f"no {what} SERVING at {target} {waited} (last: {state}); {hint}")
        if state != last or now - started - shown_at >= PROGRESS_EVERY_SECONDS:
            shown_at = now - started
            print(
                f"waiting for the {what} at {target}: {state} "
                f"({shown_at:.0f} s of up to {wait_seconds:g} s)",
                file=out,
                flush=True,
            )
            last = state
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - now)))


def check_serving(
    target: str,
    *,
    service: str,
    wait_seconds: float,
    what: str,
    hint: str,
    call_timeout: float = 3.0,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> str:
    """One health check of `target` on its own channel (`fraudscreen health`, the Docker
    HEALTHCHECK): the status name once SERVING, else NotServingError."""
    channel = client_channel(
        target, ca_file=ca_file, cert_file=cert_file, key_file=key_file, options=FAST_RECONNECT
    )
    with channel:
        return wait_until_serving(
            channel,
            target,
            service=service,
            wait_seconds=wait_seconds,
            what=what,
            hint=hint,
            call_timeout=call_timeout,
        )
