"""Keep the whole gateway process on one CPU.

A unary call passes through several threads (gRPC's poller, the Python poller loop, a
worker, the journal writer), and the GIL lets only one of them run Python at a time
anyway. On the 2-core gateway VM a wake-up of a thread sleeping on the *other* core costs
~35 µs, against ~5 µs on the same core (loopback ping-pong), so spreading those threads
over both cores buys hand-off latency, not throughput. Measured side by side (both on
gRPC's iomgr path, see rpc/runtime.py): pinned, `fraudscreen serve` answered a lone
caller in ~500 µs instead of ~650 µs (p50) and 8 concurrent callers at ~3,600 instead of
~1,900 TPS; moving only the journal writer to the other core was slower again (~3,100
TPS). The other core is left to the kernel's network stack and whatever else runs on the
gateway. `python -m loadtests.bench_service` keeps measuring it (section 7, README).

Linux only (`os.sched_setaffinity`); elsewhere "auto" does nothing, with a log line.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

AUTO = "auto"
OFF = "off"


def choose_cpu(setting: str, allowed: frozenset[int] | None = None) -> int | None:
    """Resolve `server.pin_cpu` ("auto", "off" or a CPU number) against the allowed CPUs.

    "auto" picks the lowest allowed CPU when there are at least two (with one there is
    nothing to choose). A number outside the allowed set is a configuration error.
    """
    if setting == OFF:
        return None
    if allowed is None:
        if not hasattr(os, "sched_getaffinity"):
            log.warning("cpu.pinning_unsupported", setting=setting, platform=os.name)
            return None
        allowed = frozenset(os.sched_getaffinity(0))
    if setting == AUTO:
        return min(allowed) if len(allowed) >= 2 else None
    cpu = int(setting)
    if cpu not in allowed:
        raise ValueError(
            f"server.pin_cpu: CPU {cpu} is not available to this process "
            f"(allowed: {sorted(allowed)}); set one of them, 'auto' or 'off'"
        )
    return cpu


def apply_pinning(setting: str) -> int | None:
    """Pin this process as `server.pin_cpu` says; returns the CPU, or None if unpinned.

    Pinning is a latency optimization, so an OS refusal (a CPU taken offline, a container
    runtime that forbids it) is logged and the gateway runs unpinned rather than not at all.
    """
    cpu = choose_cpu(setting)
    if cpu is None:
        return None
    try:
        threads = pin_process(cpu)
    except OSError as exc:
        log.warning(
            "cpu.pinning_failed",
            cpu=cpu,
            error=str(exc),
            action="running unpinned; set server.pin_cpu to an allowed CPU or 'off'",
        )
        return None
    log.info("cpu.pinned", cpu=cpu, threads=threads)
    return cpu


def pin_process(cpu: int) -> int:
    """Move every thread of this process to `cpu`; threads started later inherit it.

    Returns how many threads were moved; threads that exit meanwhile are skipped.
    """
    moved = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {cpu})
        except (ProcessLookupError, FileNotFoundError):
            continue
        moved += 1
    return moved
