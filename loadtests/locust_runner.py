"""Run Locust headless as a child process group and collect what it measured.

Locust runs in its own session so that Ctrl-C or a timeout here stops it and every worker
it forked, and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtests import slo
from loadtests.cpu import LOAD_GENERATOR, CpuSampler

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCUSTFILE = HERE / "locustfile.py"


class RunError(RuntimeError):
    """The load test could not produce results; the message says what to do."""


def locust_command(profile: slo.Profile, target: str, out: Path, summary: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(profile.users),
        "--spawn-rate",
        str(profile.spawn_rate),
        "--run-time",
        f"{profile.run_time_s}s",
        "--host",
        target,
        "--csv",
        str(out / "locust"),
        "--html",
        str(out / "report.html"),
        "--only-summary",
        "--fs-mix",
        profile.mix,
        "--fs-stream-batch",
        profile.stream_batch,
        "--fs-retry-share",
        str(profile.retry_share),
        "--fs-traffic-days",
        str(profile.traffic_days),
        "--fs-traffic-limit",
        str(profile.traffic_limit),
        "--fs-pace",
        str(profile.pace),
        "--fs-summary-out",
        str(summary),
    ]
    if profile.processes > 1:
        command += ["--processes", str(profile.processes)]
    return command


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop Locust's process group: SIGTERM (Locust shuts down and writes its CSVs and the
    exact latencies, not the HTML), SIGKILL if it lingers. Not SIGINT: under gevent the
    KeyboardInterrupt can land in gRPC's request-streaming greenlet and hang Locust."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def cpu_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(Locust CPUs, gateway CPUs): apart when pinning, so neither steals the other's core."""
    if not pin or not hasattr(os, "sched_getaffinity"):  # Linux only
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return set(cpus[:-1]), {cpus[-1]}


@contextmanager
def locust_process(
    command: list[str], log_path: Path, cpus: set[int] | None
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        try:
            yield process
        finally:
            _stop_group(process)


def run_locust(
    command: list[str],
    log_path: Path,
    sampler: CpuSampler,
    limit_s: float,
    cpus: set[int] | None,
) -> int:
    with locust_process(command, log_path, cpus) as process:
        sampler.watch(LOAD_GENERATOR, process.pid)
        try:
            return process.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            raise RunError(
                f"Locust did not finish within {limit_s:.0f} s and was stopped; read {log_path} "
                "for where it hung (a target that stopped answering, a stuck stream)"
            ) from None


def read_summary(
    path: Path, locust_code: int, log_path: Path
) -> tuple[slo.Measured, tuple[float, float]]:
    """The exact-latency summary and its (first, last) sample times."""
    if locust_code not in (0, 1) or not path.exists():  # 1 = some requests failed
        raise RunError(
            f"Locust exited with code {locust_code} without exact latencies in {path}; "
            f"read {log_path} for the traceback"
        )
    data = json.loads(path.read_text())
    if data["first"] is None:
        raise RunError(f"no request was made; read {log_path} (is the target serving?)")
    first, last = float(data["first"]), float(data["last"])
    return slo.Measured(data["names"], last - first), (first, last)
