"""The SLO suite's checks and settings, without running Locust."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudscreen.logs import luhn_valid
from fraudscreen.v1 import screening_pb2 as pb
from loadtests import checks, slo, traffic
from loadtests.locust_runner import RunError
from loadtests.run_slo import loopback_target

ROOT = Path(__file__).resolve().parents[3]


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
