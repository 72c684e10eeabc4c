"""Gateway lifecycle and security: health transitions, SIGTERM drain, TLS/mTLS, no PAN
anywhere on disk, in logs or in metrics."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fraudscreen.gateway.server import Gateway
from fraudscreen.v1 import screening_pb2 as pb
from fraudscreen.v1 import screening_pb2_grpc as pb_grpc
from tests.support.service_support import (
    PANS,
    drain_log,
    gateway_config,
    gateway_env,
    read_log_until,
    running_gateway,
    screen_request,
)
from tests.support.tls_material import TLSFiles, secure_channel
from tests.unit.test_logs import SHAPES

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_goes_not_serving_ready_serving_then_draining(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    gateway = Gateway(gateway_config(tmp_path, small_bundle_path))
    port = gateway.listen()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    health = health_pb2_grpc.HealthStub(channel)
    stub = pb_grpc.ScreeningStub(channel)
    check = health_pb2.HealthCheckRequest(service="fraudscreen.v1.Screening")
    assert health.Check(check, timeout=5).status == NOT_SERVING
    with pytest.raises(grpc.RpcError) as caught:
        stub.Screen(screen_request(), timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    gateway.become_ready()
    assert health.Check(check, timeout=5).status == SERVING
    seen: list[int] = []
    first = threading.Event()
    watch = health.Watch(check, timeout=30)

    def follow() -> None:
        with contextlib.suppress(grpc.RpcError):  # the server closes it when it stops
            for response in watch:
                seen.append(response.status)
                first.set()

    watcher = threading.Thread(target=follow)
    watcher.start()
    assert first.wait(30), "the Watch stream delivered nothing"  # SERVING, before we stop
    gateway.stop(grace=0.5)
    watcher.join(timeout=10)
    assert seen[:2] == [SERVING, NOT_SERVING]
    channel.close()


def _start_process(
    tmp_path: Path, bundle: Path, extra: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int, int, list[str]]:
    env = {
        **os.environ,
        **gateway_env(tmp_path, bundle, {"FRAUDSCREEN_SERVER_GRACE_SECONDS": "5", **(extra or {})}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "fraudscreen", "serve"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines, events = read_log_until(process, "gateway.ready", timeout=60)
    port = events.get("gateway.listening", {}).get("port", 0)
    metrics_port = events.get("metrics.listening", {}).get("port", 0)
    assert port, "".join(lines)
    return process, port, metrics_port, lines


def test_sigterm_drains_in_flight_calls(tmp_path: Path, small_bundle_path: Path) -> None:
    process, port, _, lines = _start_process(tmp_path, small_bundle_path)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.ScreeningStub(channel)
        signalled = threading.Event()

        def requests() -> Iterator[pb.ScreenRequest]:
            yield screen_request("d-0")
            signalled.wait(30)  # the server has logged that it refuses new calls
            for i in range(1, 20):
                yield screen_request(f"d-{i}")

        stream = stub.ScreenStream(requests(), timeout=30)
        first = next(iter(stream))
        process.send_signal(signal.SIGTERM)
        drained_lines, events = read_log_until(process, "gateway.draining", timeout=20)
        lines.extend(drained_lines)
        assert "gateway.draining" in events, "".join(drained_lines)
        signalled.set()
        rest = list(stream)
        assert first.HasField("response")
        assert len(rest) == 19
        assert all(r.HasField("response") for r in rest)
        with pytest.raises(grpc.RpcError) as caught:  # no new calls while draining
            stub.Screen(screen_request("late"), timeout=2)
        assert caught.value.code() in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        )
        assert process.wait(timeout=30) == 0
        channel.close()
    finally:
        if process.poll() is None:
            process.kill()
    logs = drain_log(process, lines)
    assert '"gateway.draining"' in logs
    assert '"gateway.stopped"' in logs


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_serve_runs_every_thread_on_one_cpu_by_default(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    process, port, _, lines = _start_process(tmp_path, small_bundle_path)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            pb_grpc.ScreeningStub(channel).Screen(screen_request("pin-1"), timeout=10)
        tasks = list(Path(f"/proc/{process.pid}/task").iterdir())
        cpus = {frozenset(os.sched_getaffinity(int(task.name))) for task in tasks}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    pinned = [json.loads(line) for line in lines if '"cpu.pinned"' in line]
    assert len(pinned) == 1
    assert len(tasks) > 5  # gRPC, journal writer, maintenance, metrics threads among them
    assert cpus == {frozenset({pinned[0]["cpu"]})}


def test_no_pan_in_journal_logs_or_metrics(tmp_path: Path, small_bundle_path: Path) -> None:
    process, port, metrics_port, lines = _start_process(
        tmp_path,
        small_bundle_path,
        {"FRAUDSCREEN_POLICY_REVIEW_THRESHOLD": "0", "FRAUDSCREEN_LOGGING_REQUESTS": "all"},
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ScreeningStub(channel)
            for i, pan in enumerate(PANS * 5):
                stub.Screen(screen_request(f"p-{i}", pan=pan), timeout=5)
            for bad in ("4000000000000001", "40000000000000021234"):  # bad Luhn, too long
                with pytest.raises(grpc.RpcError):
                    stub.Screen(screen_request("bad", pan=bad), timeout=5)
            with pytest.raises(grpc.RpcError):  # a PAN where an id belongs still isn't logged
                stub.Screen(screen_request(PANS[1] + "!", pan=PANS[1]), timeout=5)
            stub.ReportOutcome(
                pb.ReportOutcomeRequest(
                    transaction_id="p-1", terminal_id="T1", outcome=pb.OUTCOME_CHARGEBACK
                ),
                timeout=5,
            )
            metrics = (
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
                .read()
                .decode()
            )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    logs = drain_log(process, lines)
    assert '"screened"' in logs  # request logging was on
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("journal.sqlite3*"))
    assert len(stored) > 10_000
    for pan in (*PANS, "4000000000000001", "40000000000000021234"):
        assert pan not in logs
        assert pan not in metrics
        assert pan.encode() not in stored
    assert oct((tmp_path / "site.key").stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "journal.sqlite3").stat().st_mode & 0o777) == "0o600"


def test_card_numbers_sent_in_ids_are_masked_in_every_log_line(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    """Each shape of card number (12-19 digits, dashed, spaced) where an id belongs: in
    accepted requests' `screened` lines, in `outcome` lines, in rejected requests' lines and
    in error messages (a duplicate transaction)."""
    pan_12, dashed, spaced = SHAPES[0][1], SHAPES[3][1], SHAPES[4][1]
    process, port, _, lines = _start_process(
        tmp_path, small_bundle_path, {"FRAUDSCREEN_LOGGING_REQUESTS": "all"}
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ScreeningStub(channel)
            stub.Screen(screen_request(pan_12, terminal_id=SHAPES[1][1]), timeout=5)
            stub.Screen(screen_request(dashed, terminal_id=SHAPES[2][1]), timeout=5)
            stub.ReportOutcome(
                pb.ReportOutcomeRequest(
                    transaction_id=pan_12, terminal_id=SHAPES[1][1], outcome=pb.OUTCOME_CHARGEBACK
                ),
                timeout=5,
            )
            with pytest.raises(grpc.RpcError):  # rejected: a space is no id character
                stub.Screen(screen_request(spaced, terminal_id=spaced), timeout=5)
            with pytest.raises(grpc.RpcError):  # mixed separators, rejected
                stub.Screen(screen_request("ok-1", terminal_id=SHAPES[6][1]), timeout=5)
            with pytest.raises(grpc.RpcError):  # error: same ids, other content
                stub.Screen(
                    screen_request(pan_12, terminal_id=SHAPES[1][1], amount_minor=999), timeout=5
                )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    logs = drain_log(process, lines)
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    kinds = {e["event"] for e in events if "[PAN REDACTED]" in json.dumps(e)}
    assert {"screened", "outcome", "rejected"} <= kinds, kinds
    for shape, number in SHAPES:
        assert number not in logs, shape
        assert number.replace(" ", "").replace("-", "") not in logs, shape


def test_tls(tmp_path: Path, small_bundle_path: Path, tls: TLSFiles) -> None:
    config = gateway_config(
        tmp_path,
        small_bundle_path,
        {
            "FRAUDSCREEN_SERVER_TLS_CERT_FILE": str(tls.server_cert),
            "FRAUDSCREEN_SERVER_TLS_KEY_FILE": str(tls.server_key),
        },
    )
    with running_gateway(config) as gw:
        with secure_channel(gw.port, tls.ca_cert) as channel:
            assert pb_grpc.ScreeningStub(channel).Screen(screen_request(), timeout=5).decision
        with grpc.insecure_channel(f"127.0.0.1:{gw.port}") as plain:
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.ScreeningStub(plain).Screen(screen_request("x"), timeout=3)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls(tmp_path: Path, small_bundle_path: Path, tls: TLSFiles) -> None:
    config = gateway_config(
        tmp_path,
        small_bundle_path,
        {
            "FRAUDSCREEN_SERVER_TLS_CERT_FILE": str(tls.server_cert),
            "FRAUDSCREEN_SERVER_TLS_KEY_FILE": str(tls.server_key),
            "FRAUDSCREEN_SERVER_TLS_CLIENT_CA_FILE": str(tls.ca_cert),
            "FRAUDSCREEN_METRICS_TLS_CERT_FILE": str(tls.server_cert),
            "FRAUDSCREEN_METRICS_TLS_KEY_FILE": str(tls.server_key),
        },
    )
    with running_gateway(config) as gw:
        with secure_channel(gw.port, tls.ca_cert, tls.client_cert, tls.client_key) as channel:
            assert pb_grpc.ScreeningStub(channel).Screen(screen_request(), timeout=5).decision
        for cert, key in ((None, None), (tls.other_client_cert, tls.other_client_key)):
            with secure_channel(gw.port, tls.ca_cert, cert, key) as channel:
                stub = pb_grpc.ScreeningStub(channel)
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Screen(screen_request("y"), timeout=3)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        import ssl

        context = ssl.create_default_context(cafile=str(tls.ca_cert))
        page = urllib.request.urlopen(
            f"https://localhost:{gw.metrics_port}/metrics", timeout=5, context=context
        )
        assert b"fraudscreen_requests_total" in page.read()
