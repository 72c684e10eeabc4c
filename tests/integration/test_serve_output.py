"""What `fraudscreen serve` writes: a quiet, parseable log by default, the global flags
honoured, third-party output kept out, and a taken port named by its setting."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc

from fraudscreen.v1 import screening_pb2_grpc as pb_grpc
from tests.support.service_support import gateway_env, screen_request


def _serve(
    tmp_path: Path, bundle: Path, *flags: str, extra: dict[str, str] | None = None
) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Start a gateway process, screen 30 transactions, stop it; returns (calls, output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSCREEN_")}
    env.update(gateway_env(tmp_path, bundle, extra))
    env.pop("FRAUDSCREEN_LOGGING_FORMAT")  # the default: auto
    env["FRAUDSCREEN_METRICS_LISTEN"] = ""
    env["FRAUDSCREEN_CACHE_DIR"] = str(tmp_path / "fresh-cache")  # TL2cgen runs
    process = subprocess.Popen(
        [sys.executable, "-m", "fraudscreen", *flags, "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    lines: list[str] = []
    port = 0
    for line in process.stderr:
        lines.append(line)
        if "gateway.listening" in line and line.startswith("{"):
            port = json.loads(line)["port"]
        elif "gateway.listening" in line:
            port = int(line.split("port=")[1].split()[0])
        if "gateway.ready" in line or process.poll() is not None:
            break
    assert port, "".join(lines)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ScreeningStub(channel)
        for i in range(30):
            stub.Screen(screen_request(f"q-{i}"), timeout=10)
    process.send_signal(signal.SIGTERM)
    stdout, rest = process.communicate(timeout=60)
    done = subprocess.CompletedProcess(
        process.args, process.returncode, stdout, "".join(lines) + rest
    )
    return 30, done


def test_default_log_is_json_without_request_lines_or_config_dump(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    _, done = _serve(tmp_path, small_bundle_path, "--log-level", "debug")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # TL2cgen's own prints do not land here
    events = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    names = [event["event"] for event in events]
    assert "gateway.ready" in names
    assert "screened" not in names  # per-transaction lines only when asked
    starting = next(e for e in events if e["event"] == "gateway.starting")
    assert "config" not in starting
    assert len(json.dumps(starting)) < 400
    third_party = [e for e in events if e["event"] == "third_party.output"]
    assert third_party, "the compile's native log was expected at debug level"
    assert all(e["level"] == "debug" for e in third_party)


def test_request_lines_when_asked(tmp_path: Path, small_bundle_path: Path) -> None:
    calls, done = _serve(tmp_path, small_bundle_path, extra={"FRAUDSCREEN_LOGGING_REQUESTS": "all"})
    screened = [line for line in done.stderr.splitlines() if '"screened"' in line]
    assert len(screened) == calls


def test_global_log_format_reaches_serve(tmp_path: Path, small_bundle_path: Path) -> None:
    _, done = _serve(tmp_path, small_bundle_path, "--log-format", "console")
    assert done.returncode == 0, done.stderr
    ready = [line for line in done.stderr.splitlines() if "gateway.ready" in line]
    assert ready and not ready[0].startswith("{")


def _serve_with_port_taken(tmp_path: Path, bundle: Path, setting: str) -> str:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSCREEN_")}
        env.update(gateway_env(tmp_path, bundle, {setting: address}))
        done = subprocess.run(
            [sys.executable, "-m", "fraudscreen", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(errors) == 1, done.stderr  # the JSON log lines of the start, then one line
    return errors[0] + f" [{address}]"


def test_ports_in_use_name_the_setting(tmp_path: Path, small_bundle_path: Path) -> None:
    grpc_error = _serve_with_port_taken(
        tmp_path / "grpc", small_bundle_path, "FRAUDSCREEN_SERVER_LISTEN"
    )
    address = grpc_error.rsplit("[", 1)[1].rstrip("]")
    assert f"server.listen = {address}: the address is already in use" in grpc_error
    assert "add_port" not in grpc_error
    metrics_error = _serve_with_port_taken(
        tmp_path / "metrics", small_bundle_path, "FRAUDSCREEN_METRICS_LISTEN"
    )
    address = metrics_error.rsplit("[", 1)[1].rstrip("]")
    assert f"metrics.listen = {address}: the address is already in use" in metrics_error
    assert "Errno" not in metrics_error
