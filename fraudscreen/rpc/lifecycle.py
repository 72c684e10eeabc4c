"""Run a server process until SIGTERM/SIGINT, then stop it gently (gateway and hub)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)


class Stoppable(Protocol):
    def start(self) -> int: ...

    def stop(self, grace: float | None = None) -> None: ...


def run_until_signalled(server: Stoppable, name: str) -> int:
    """Start, wait for SIGTERM/SIGINT, drain; returns the process exit code."""
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info(f"{name}.signal", signal=signal.Signals(signum).name)
        stop_requested.set()

    handler: Callable[[int, FrameType | None], None] = on_signal
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    try:
        server.start()
    except Exception:
        server.stop(grace=0)
        raise
    while not stop_requested.wait(1.0):
        pass
    server.stop()
    return 0
