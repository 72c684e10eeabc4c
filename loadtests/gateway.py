"""Start a throwaway gateway on loopback for a load test, and always stop it again.

Temp dirs for the site key and journal, ephemeral ports, request logging limited to
non-approvals (as a busy site would run it). Its JSON log goes to a file in the report
directory; ``gateway.listening`` gives the port and ``gateway.ready`` means it is serving.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families

READY_TIMEOUT_S = 120.0  # a cold compile cache costs a few seconds per 100 trees
STOP_TIMEOUT_S = 15.0
LATENCY_METRIC = "fraudscreen_request_latency_seconds"


class GatewayError(RuntimeError):
    """The gateway could not be started; the message says what to check."""


@dataclass(frozen=True)
class RunningGateway:
    address: str
    pid: int
    metrics_port: int | None


def _pump(stream: IO[str], log: IO[str], ports: dict[str, int], ready: threading.Event) -> None:
    """Copy the gateway's stderr to its log file, noting its ports and readiness."""
    for line in stream:
        log.write(line)
        log.flush()
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") in ("gateway.listening", "metrics.listening"):
                ports[event["event"]] = int(event["port"])
            elif event.get("event") == "gateway.ready":
                ready.set()
    ready.set()  # stream closed: the process ended; the caller checks why


def tail_log(path: Path, count: int = 15) -> str:
    """The last ``count`` lines of a log file, for an error message."""
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-count:])
    except OSError:
        return "(no log)"


def stop_process(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (the gateway drains and exits 0), SIGKILL if it does not within the timeout."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def gateway_env(directory: Path, **extra: str) -> dict[str, str]:
    """FRAUDSCREEN_* settings of every throwaway gateway: loopback, ephemeral ports, its own
    site key and journal in ``directory``, requests logged as a busy site would. ``extra``
    adds or overrides settings (``FRAUDSCREEN_...="value"``)."""
    return {
        "FRAUDSCREEN_SERVER_LISTEN": "127.0.0.1:0",
        "FRAUDSCREEN_METRICS_LISTEN": "127.0.0.1:0",  # on by default in production
        "FRAUDSCREEN_SITE_KEY_FILE": str(directory / "site.key"),
        "FRAUDSCREEN_JOURNAL_PATH": str(directory / "journal.sqlite3"),
        "FRAUDSCREEN_LOGGING_REQUESTS": "non_approve",
        "FRAUDSCREEN_SERVER_GRACE_SECONDS": "2",
        **extra,
    }


def process_env(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus ``settings``, for a gateway started from it (or
    for ``load_config`` to see what that gateway will see). FRAUDSCREEN_CONFIG is
    dropped: the gateway is configured by ``settings`` alone, so a developer's config
    file cannot leak in."""
    env = {**os.environ, **settings}
    env.pop("FRAUDSCREEN_CONFIG", None)
    return env


@contextmanager
def local_gateway(log_path: Path, cpus: set[int] | None = None) -> Iterator[RunningGateway]:
    """A gateway on 127.0.0.1 with an ephemeral port, stopped on exit whatever happens."""
    with tempfile.TemporaryDirectory(prefix="fraudscreen-loadtest-") as workdir:
        env = process_env(gateway_env(Path(workdir)))
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "fraudscreen", "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # Ctrl-C reaches us; we stop it in order
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
            )
            try:
                yield _await_ready(process, log, log_path)
            finally:
                stop_process(process)


def _await_ready(process: subprocess.Popen[str], log: IO[str], log_path: Path) -> RunningGateway:
    assert process.stderr is not None
    ports: dict[str, int] = {}
    ready = threading.Event()
    threading.Thread(
        target=_pump, args=(process.stderr, log, ports, ready), name="gateway-log", daemon=True
    ).start()
    started = time.monotonic()
    ready.wait(READY_TIMEOUT_S)
    if process.poll() is not None or "gateway.listening" not in ports or not ready.is_set():
        state = (
            f"exited with code {process.returncode}"
            if process.poll() is not None
            else f"not ready after {time.monotonic() - started:.0f} s"
        )
        raise GatewayError(
            f"the gateway {state}; see {log_path} (last lines below). Check that "
            "`fraudscreen serve` starts by hand and that the model bundle compiles.\n"
            + tail_log(log_path)
        )
    return RunningGateway(
        f"127.0.0.1:{ports['gateway.listening']}",
        process.pid,
        ports.get("metrics.listening"),
    )


def handler_means_us(metrics_port: int | None) -> dict[str, float]:
    """Mean server-side time per screened item by method, from the gateway's own metrics.

    Set beside the client-side percentiles it shows how much of a call is the gateway's
    work and how much is gRPC transport plus the client. Empty if metrics are unreachable.
    """
    if metrics_port is None:
        return {}
    try:
        totals = latency_totals(metrics_port)
    except OSError:
        return {}
    return {m: 1e6 * seconds / count for m, (seconds, count) in sorted(totals.items()) if count}


def latency_totals(metrics_port: int, timeout: float = 5.0) -> dict[str, tuple[float, float]]:
    """{method: (seconds, items)} the gateway has spent screening so far, by method (a
    batch observes each transaction), from its own latency histogram's _sum and _count.
    Raises OSError if the metrics endpoint cannot be read."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
        text = response.read().decode()
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != LATENCY_METRIC:
            continue
        for sample in family.samples:
            method = sample.labels.get("method", "")
            if sample.name.endswith("_sum"):
                sums[method] = sample.value
            elif sample.name.endswith("_count"):
                counts[method] = sample.value
    return {method: (seconds, counts.get(method, 0.0)) for method, seconds in sums.items()}
