"""The installed grpcio in a child process: every experiment we set is known, and it serves."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from fraudscreen.rpc.runtime import (
    GRPC_EXPERIMENTS_ENV,
    IOMGR_POLLING,
)


def test_installed_grpcio_knows_every_experiment_and_still_serves() -> None:
    # A renamed or retired experiment would be ignored with only a log line: catch it here.
    script = textwrap.dedent(
        """
        from concurrent import futures
        import grpc
        def echo(request, context):
            return request
        server = grpc.server(futures.ThreadPoolExecutor(2))
        handler = grpc.method_handlers_generic_handler(
            "t.T", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert channel.unary_unary("/t.T/Echo")(b"ping", timeout=10) == b"ping"
        server.stop(0)
        print("ok")
        """
    )
    env = {**os.environ, GRPC_EXPERIMENTS_ENV: IOMGR_POLLING, "GRPC_VERBOSITY": "INFO"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "Unknown experiment" not in done.stderr
    bogus = {**env, GRPC_EXPERIMENTS_ENV: IOMGR_POLLING + ",-no_such_experiment"}
    control = subprocess.run(
        [sys.executable, "-c", script], env=bogus, capture_output=True, text=True, timeout=60
    )
    assert "Unknown experiment: no_such_experiment" in control.stderr  # the check can fail
