"""`fraudscreen compile`, `bench` and `health`, run as the real CLI in child processes."""

from __future__ import annotations

from pathlib import Path

from tests.support.service_support import (
    free_port,
    gateway_config,
    run_cli,
    running_gateway,
)


def test_compile_builds_then_reuses_the_cache_and_explains_natively(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = run_cli("compile", str(small_bundle_path), "--cache-dir", str(cache))
    assert first.returncode == 0, first.stderr
    assert "reason codes: native-saabas explainer" in first.stdout
    assert "(fresh build," in first.stdout and "parity max |diff| = " in first.stdout
    assert any(cache.rglob("*.so"))
    again = run_cli("compile", str(small_bundle_path), "--cache-dir", str(cache))
    assert again.returncode == 0 and "(cache," in again.stdout, again.stderr
    missing = run_cli("compile", str(tmp_path / "no-such-bundle"))
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("fraudscreen compile: error:")
    assert "Traceback" not in missing.stderr


def test_bench_compares_native_tl2cgen_and_lightgbm(small_bundle_path: Path) -> None:
    done = run_cli(
        "bench", str(small_bundle_path), "--rows", "50", "--repeats", "1", "--trees", "0"
    )
    assert done.returncode == 0, done.stderr
    assert "max |native - LightGBM| = " in done.stdout
    for row in ("| native (direct C call) |", "| tl2cgen.Predictor + DMatrix |", "| LightGBM"):
        assert row in done.stdout


def test_health_exits_0_when_serving_and_1_when_unreachable(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    with running_gateway(gateway_config(tmp_path, small_bundle_path)) as gateway:
        target = f"127.0.0.1:{gateway.port}"
        serving = run_cli("health", "--target", target)
        unknown = run_cli("health", "--target", target, "--service", "no.such.Service")
    assert serving.returncode == 0, serving.stderr
    assert serving.stdout.strip() == f"{target} fraudscreen.v1.Screening: SERVING"
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    closed = f"127.0.0.1:{free_port()}"
    down = run_cli("health", "--target", closed, "--timeout", "1")
    assert down.returncode == 1
    assert down.stderr.strip().startswith(f"fraudscreen health: no gateway SERVING at {closed}")
