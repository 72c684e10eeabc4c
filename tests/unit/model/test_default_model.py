"""The shipped bundle: loads, compiles, meets the quality bar, and is reproducible."""

from __future__ import annotations

from pathlib import Path

import lightgbm
import pytest

from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.history import validate_history
from fraudscreen.model.bundle import load_bundle
from fraudscreen.model.compile import compile_bundle
from fraudscreen.model.train import TrainingConfig, train_bundle
from fraudscreen.simulate import SimulationConfig, simulate

DEFAULT = Path(__file__).resolve().parents[3] / "models" / "default"

# What the issue asks of the default model on the handbook protocol.
MIN_AUC, MIN_AP, MIN_CP100 = 0.87, 0.65, 0.29


def test_default_bundle_loads_and_compiles() -> None:
    bundle = load_bundle(DEFAULT)
    assert bundle.manifest.features == FEATURE_NAMES
    assert compile_bundle(bundle).max_abs_diff <= 1e-6


def test_default_bundle_metrics_meet_the_bar() -> None:
    metrics = load_bundle(DEFAULT).manifest.metrics
    assert metrics["auc_roc"] >= MIN_AUC
    assert metrics["average_precision"] >= MIN_AP
    assert metrics["card_precision_at_100"] >= MIN_CP100


@pytest.mark.slow
def test_documented_command_reproduces_the_default_model(tmp_path: Path) -> None:
    """`fraudscreen simulate` + `fraudscreen train --name default` (README) on seed 0."""
    shipped = load_bundle(DEFAULT)
    if shipped.manifest.training["lightgbm_version"] != lightgbm.__version__:
        pytest.skip("LightGBM version differs from the one that trained the shipped model")
    frame = validate_history(simulate(SimulationConfig(), progress=False))
    result = train_bundle(frame, tmp_path, TrainingConfig(name="default"), progress=False)
    assert result.manifest.model_version == shipped.model_version
    assert result.manifest.metrics["auc_roc"] >= MIN_AUC
    assert result.manifest.metrics["average_precision"] >= MIN_AP
    assert result.manifest.metrics["card_precision_at_100"] >= MIN_CP100
