"""The load-test command works end to end (CI's short smoke profile) and its SLO gate bites.

The two end-to-end tests start a real gateway on loopback and run Locust for a few seconds
with 2 users (about 20 s together); the SLO arithmetic is unit-tested in
tests/unit/loadtests/test_slo_checks.py.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 150


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.run_slo",
            "--profile",
            "smoke",
            "--out",
            str(out),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


def _explain(result: subprocess.CompletedProcess[str], out: Path) -> str:
    logs = "".join(
        f"\n--- {p.name} (tail) ---\n" + "\n".join(p.read_text().splitlines()[-25:])
        for p in (out / "locust.log", out / "gateway.log")
        if p.exists()
    )
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}{logs}"


def test_smoke_profile_meets_its_slo_with_reports(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = _run(out)
    assert result.returncode == 0, _explain(result, out)

    summary = json.loads((out / "latency_us.json").read_text())["names"]
    assert summary["Screen"]["calls"] > 0, "no Screen calls were made"
    assert summary["ScreenStream"]["transactions"] > 0, "no ScreenStream items were screened"
    assert sum(s["failures"] for s in summary.values()) == 0, _explain(result, out)
    with (out / "locust_stats.csv").open() as handle:
        aggregated = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    assert aggregated and int(aggregated[0]["Failure Count"]) == 0

    for name in ("locust_stats.csv", "latency_us.csv", "report.html", "slo.txt"):
        assert (out / name).stat().st_size > 0, f"{name} is missing or empty"

    table = result.stdout
    assert "p50 µs" in table and "p99.9 µs" in table, table
    screen_row = next(line for line in table.splitlines() if line.startswith("Screen "))
    assert any(cell.replace(",", "").isdigit() for cell in screen_row.split()[5:]), screen_row
    assert "CPU (100% = one core): load generator" in table
    assert "all SLOs met" in table


def test_threshold_below_what_the_server_can_do_fails_the_run(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = _run(out, "--run-time", "3", "--set", "p50_us.Screen=1")
    assert result.returncode == 1, _explain(result, out)
    assert "FAIL p50 Screen" in result.stdout and "> 1 µs" in result.stdout, result.stdout
    assert "What to do" in result.stdout


def test_idle_benchmark_runs_with_idle_callers_at_the_stream_limit() -> None:
    """`python -m loadtests.bench_idle`, tiny: both rows come out; no time is asserted."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.bench_idle",
            "--calls",
            "20",
            "--rounds",
            "1",
            "--streams",
            "4",
            "--half-open",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| no idle callers |" in done.stdout
    assert "| 4 idle streams + 2 half-open Screen calls |" in done.stdout
