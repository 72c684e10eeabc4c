"""Where the journal lives and how it trades durability, latency and memory; its errors."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Durability = Literal["normal", "full"]

_SYNCHRONOUS: dict[str, str] = {"normal": "NORMAL", "full": "FULL"}


class JournalBackpressureError(RuntimeError):
    """The write queue is full: answer UNAVAILABLE rather than accept what cannot be kept."""


class JournalClosedError(RuntimeError):
    """The journal was closed (or its writer stopped); nothing more can be written."""


class JournalOpenError(RuntimeError):
    """The journal file cannot be used: not SQLite, a newer schema, or no WAL support."""


@dataclass(frozen=True)
class JournalSettings:
    """Where the journal lives and how it trades durability, latency and memory."""

    path: Path
    durability: Durability = "normal"
    batch_max: int = 512
    flush_interval: float = 0.005
    max_queue: int = 200_000
    retention_seconds: int = 60 * 86400

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path):
            if not isinstance(self.path, str | os.PathLike):
                raise ValueError(f"path must be a file path, got {type(self.path).__name__}")
            object.__setattr__(self, "path", Path(self.path))
        if str(self.path) in ("", ".", ":memory:"):
            raise ValueError(f"path must name a journal file, got {str(self.path)!r}")
        if self.durability not in _SYNCHRONOUS:
            raise ValueError(f"durability must be 'normal' or 'full', got {self.durability!r}")
        _require_int("batch_max", self.batch_max, minimum=1)
        _require_int("max_queue", self.max_queue, minimum=1)
        _require_int("retention_seconds", self.retention_seconds, minimum=1)
        if (
            not isinstance(self.flush_interval, int | float)
            or isinstance(self.flush_interval, bool)
            or not math.isfinite(self.flush_interval)
            or not 0 <= self.flush_interval <= 10
        ):
            raise ValueError(
                f"flush_interval must be seconds between 0 and 10, got {self.flush_interval!r}"
            )


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
