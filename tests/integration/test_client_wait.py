"""Client verbs wait for SERVING through the health service instead of failing while a
gateway starts, and say in one line what to do when none comes up."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc

from fraudscreen.gateway.server import Gateway
from fraudscreen.gateway.servicer import SCREENING_SERVICE
from fraudscreen.rpc.readiness import FAST_RECONNECT, wait_until_serving
from tests.support.service_support import free_port, gateway_config


def _cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSCREEN_")}
    env["FRAUDSCREEN_CACHE_DIR"] = os.environ.get("FRAUDSCREEN_CACHE_DIR", str(cwd / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "fraudscreen", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_wait_returns_once_a_starting_gateway_is_serving(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    """Listening but NOT_SERVING (the model still loading): the client waits, shows what
    it waits for, and returns when the gateway turns SERVING."""
    gateway = Gateway(gateway_config(tmp_path, small_bundle_path))
    port = gateway.listen()
    progress = io.StringIO()
    result: list[str] = []
    shown_not_serving = threading.Event()

    class Progress(io.StringIO):
        def write(self, text: str) -> int:
            progress.write(text)
            if "NOT_SERVING" in text:
                shown_not_serving.set()
            return len(text)

    def client() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=FAST_RECONNECT) as channel:
            result.append(
                wait_until_serving(
                    channel,
                    f"127.0.0.1:{port}",
                    service=SCREENING_SERVICE,
                    wait_seconds=120,
                    what="gateway",
                    hint="start one",
                    progress=Progress(),
                )
            )

    waiter = threading.Thread(target=client)
    waiter.start()
    try:
        assert shown_not_serving.wait(60), progress.getvalue()
        assert not result  # still waiting while the gateway is not ready
        gateway.become_ready()
        waiter.join(120)
        assert result == ["SERVING"]
        assert "is SERVING" in progress.getvalue()
    finally:
        gateway.stop(grace=0)
        waiter.join(5)


def test_replay_without_a_gateway_says_what_to_do(tmp_path: Path) -> None:
    target = f"127.0.0.1:{free_port()}"
    done = _cli("replay", "--target", target, "--limit", "50", "--wait", "1", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fraudscreen replay: error: no gateway SERVING at " + target)
    assert "fraudscreen serve" in last and "--wait" in last
    assert f"waiting for the gateway at {target}: not reachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert "decisions:" not in done.stdout  # no empty decision table


def test_health_answers_in_one_line(tmp_path: Path) -> None:
    target = f"127.0.0.1:{free_port()}"
    done = _cli("health", "--target", target, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"no gateway SERVING at {target} now (last: not reachable)" in done.stderr


def test_publish_waits_for_the_hub(tmp_path: Path, small_bundle_path: Path) -> None:
    (tmp_path / "t.token").write_text("x\n")
    target = f"127.0.0.1:{free_port()}"
    done = _cli(
        "publish",
        str(small_bundle_path),
        "--hub",
        target,
        "--token-file",
        str(tmp_path / "t.token"),
        "--wait",
        "1",
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert f"error: no hub SERVING at {target} after 1 s" in done.stderr
