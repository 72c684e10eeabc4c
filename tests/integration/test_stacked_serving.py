"""A score-band correction compiled by the CLI and served by a real gateway."""

from __future__ import annotations

from pathlib import Path

from fraudscreen.model.bundle import load_bundle
from fraudscreen.model.compile import compile_bundle
from fraudscreen.model.stacked import StackedPredictor
from tests.support.service_support import (
    gateway_config,
    run_cli,
    running_gateway,
    screen_request,
    stub_for,
)


def test_both_models_compile_natively_with_parity(correction_path: Path) -> None:
    bundle = load_bundle(correction_path)
    assert bundle.base is not None
    assert compile_bundle(bundle.base).max_abs_diff <= 1e-6
    assert compile_bundle(bundle.correction).max_abs_diff <= 1e-6
    done = run_cli("compile", str(correction_path))  # the operator's verb compiles both
    assert done.returncode == 0, done.stderr
    assert f"base {bundle.base.model_version}: " in done.stdout
    assert f"correction {bundle.model_version}: " in done.stdout
    assert done.stdout.count("parity max |diff|") == 2


def test_a_gateway_serves_the_correction(correction_path: Path, tmp_path: Path) -> None:
    bundle = load_bundle(correction_path)
    with running_gateway(gateway_config(tmp_path / "gw", correction_path)) as gw:
        channel, stub = stub_for(gw)
        with channel:
            reply = stub.Screen(screen_request(amount_minor=99_000), timeout=5)
        assert reply.model_version == bundle.model_version
        model = gw.slot.current
        assert model is not None and isinstance(model.predictor, StackedPredictor)
