"""The load-test command works end to end (CI's short smoke profile) and its SLO gate bites.

The two end-to-end tests start a real gateway on loopback and run Locust for a few seconds
with 2 users (about 20 s together); the rest are fast unit tests of the SLO arithmetic.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fraudscreen.logs import luhn_valid
from fraudscreen.v1 import screening_pb2 as pb
from loadtests import checks, slo, traffic
from loadtests.locust_runner import RunError
from loadtests.run_slo import loopback_target

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


def _measured(p50: float, p99: float, failures: int = 0, seconds: float = 10.0) -> slo.Measured:
    stats = {
        "calls": 1000,
        "failures": failures,
        "transactions": 1000,
        "p50_us": p50,
        "p90_us": p50,
        "p99_us": p99,
        "p999_us": p99,
        "max_us": p99,
        "histogram": None,
    }
    return slo.Measured({"Screen": stats}, seconds)  # type: ignore[dict-item]


def test_breach_message_names_the_check_and_the_margin() -> None:
    thresholds = slo.Thresholds(
        0.001, 500.0, {"p50_us": {"Screen": 250}, "p99_us": {"Screen": 1000}}
    )
    results = slo.evaluate(thresholds, _measured(p50=200, p99=1430, failures=5, seconds=4.0))
    failed = [c.text for c in results if not c.passed]
    assert "p99 Screen 1,430 µs > 1,000 µs (+43%)" in failed
    assert "throughput 250 tx/s < 500 tx/s (-50%)" in failed
    assert any(text.startswith("error ratio 0.500% > 0.100%") for text in failed)
    assert not any(text.startswith("p50") for text in failed)


def test_override_and_profile_come_from_one_file() -> None:
    profile, thresholds = slo.load(ROOT / "loadtests" / "slo.toml", "smoke", ["p50_us.Screen=1"])
    assert profile.users <= 5 and profile.run_time_s <= 15
    assert thresholds.latency_us["p50_us"]["Screen"] == 1
    with pytest.raises(slo.SloFileError, match="KEY is one of"):
        slo.load(ROOT / "loadtests" / "slo.toml", "smoke", ["p99.Screen=5"])
    with pytest.raises(slo.SloFileError, match="choose one of"):
        slo.load(ROOT / "loadtests" / "slo.toml", "no-such-profile", [])


def test_only_loopback_targets_are_accepted() -> None:
    assert loopback_target("127.0.0.1:50051") == "127.0.0.1:50051"
    assert loopback_target("[::1]:50051") == "[::1]:50051"
    with pytest.raises(RunError, match="loopback"):
        loopback_target("10.1.2.3:50051")


def test_a_missing_decision_is_a_failure() -> None:
    request = pb.ScreenRequest(transaction_id="t1", terminal_id="T1")
    answer = pb.ScreenResponse(transaction_id="t1", terminal_id="T1", model_version="m", score=0.1)
    assert "DECISION_UNSPECIFIED" in (checks.screen_problem(request, answer) or "")
    answer.decision = pb.DECISION_REVIEW
    assert "without reasons" in (checks.screen_problem(request, answer) or "")
    answer.reasons.add(code="AMOUNT")
    assert checks.screen_problem(request, answer) is None


def test_rebranded_cards_stay_luhn_valid_and_distinct() -> None:
    pan = "4000009551332177"
    assert luhn_valid(pan)
    other = traffic.rebrand_pan(pan, "12345")
    assert other == "4123459551332176" and luhn_valid(other)
    assert traffic.rebrand_pan(pan, "00000") == pan  # the simulator's own population


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
