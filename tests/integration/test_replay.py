"""`fraudscreen replay` drives a real gateway and reports against the simulator's labels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.service_support import gateway_config, running_gateway


@pytest.mark.parametrize("mode", ["unary", "stream", "batch"])
def test_replay_reports_decisions_latency_and_fraud(
    tmp_path: Path, small_bundle_path: Path, mode: str
) -> None:
    config = gateway_config(
        tmp_path, small_bundle_path, {"FRAUDSCREEN_LOGGING_REQUESTS": "non_approve"}
    )
    with running_gateway(config) as gw:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "fraudscreen",
                "replay",
                "--target",
                f"127.0.0.1:{gw.port}",
                "--limit",
                "600",
                "--mode",
                mode,
                "--batch-size",
                "50",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        gw.journal.flush()
        journaled = sum(1 for _ in gw.journal.iter_transactions(0))
        outcomes = gw.journal.latest_outcomes()
    assert out.returncode == 0, out.stderr
    assert "replayed 600 simulated transactions" in out.stdout
    assert "errors: none" in out.stdout
    assert "client latency µs" in out.stdout
    assert "fraud caught (REVIEW/DECLINE)" in out.stdout
    assert journaled == 600
    assert outcomes  # the simulated frauds were reported back as chargebacks
    assert all(o.outcome == "CONFIRMED_FRAUD" for o in outcomes.values())
    assert "replay (" in out.stderr  # the live progress line
