"""CPU used by the load generator and by the gateway, so a reader can tell who was the limit.

A background thread samples, every quarter second, the CPU seconds of each watched process
tree (the process and all its children, e.g. Locust workers) and of the whole machine.
``usage(start, end)`` turns the samples inside a window into percentages of ONE core
(200 % = both cores of a 2-core machine busy).
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass

import psutil

# Roles: the process trees watched, and the whole machine.
LOAD_GENERATOR = "load generator"
GATEWAY = "gateway"
MACHINE = "machine"


@dataclass(frozen=True)
class Usage:
    percent_of_core: dict[str, float]  # role -> % of one core; MACHINE = all cores together
    cores: int
    seconds: float


def machine_busy_seconds(*, include_steal: bool = False) -> float:
    """CPU seconds the whole machine has been busy so far, all cores together.

    Steal (time the hypervisor gave this VM's cores to others) is left out by default, as
    CpuSampler's MACHINE row has always been; bench_service's ForeignLoad counts it as
    busy (``include_steal=True``), so another tenant shows up there as foreign load.
    """
    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system + times.irq + times.softirq
    if include_steal:
        busy += getattr(times, "steal", 0.0)
    return float(busy)


def process_seconds(process: psutil.Process) -> float:
    """CPU seconds (user + system) one process has used so far; raises psutil.Error."""
    times = process.cpu_times()
    return float(times.user + times.system)


class CpuSampler:
    """Samples cumulative CPU seconds of process trees (by root pid) and of the machine."""

    def __init__(self, interval: float = 0.25) -> None:
        self._interval = interval
        self._roots: dict[str, int] = {}
        self._seen: dict[str, dict[int, float]] = {}  # role -> pid -> last CPU seconds
        self._times: list[float] = []
        self._samples: list[dict[str, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def watch(self, role: str, pid: int) -> None:
        with self._lock:
            self._roots[role] = pid
            self._seen.setdefault(role, {})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _tree_seconds(self, role: str, pid: int) -> float:
        seen = self._seen[role]
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            processes = []
        for process in processes:
            try:
                seen[process.pid] = process_seconds(process)
            except psutil.Error:
                continue  # ended between listing and reading: keep its last value
        return sum(seen.values())

    def sample(self) -> None:
        with self._lock:
            now = time.time()
            values = {role: self._tree_seconds(role, pid) for role, pid in self._roots.items()}
            values[MACHINE] = machine_busy_seconds()
            self._times.append(now)
            self._samples.append(values)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def usage(self, start: float, end: float) -> Usage:
        """CPU % of one core per role between the samples nearest to `start` and `end`."""
        with self._lock:
            times, samples = list(self._times), list(self._samples)
        cores = psutil.cpu_count() or 1
        if len(times) < 2:
            return Usage({}, cores, 0.0)
        first = min(bisect.bisect_left(times, start), len(times) - 2)
        last = max(min(bisect.bisect_right(times, end) - 1, len(times) - 1), first + 1)
        wall = times[last] - times[first]
        percent = {
            role: 100.0 * (samples[last][role] - samples[first].get(role, 0.0)) / wall
            for role in samples[last]
            if role in samples[first]
        }
        return Usage(percent, cores, wall)
