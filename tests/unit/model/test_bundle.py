"""A bundle is served only if every file matches its hash and the model fits the code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightgbm
import numpy as np
import pytest

from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.model.bundle import (
    GOLDEN_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    BundleError,
    GoldenRows,
    Thresholds,
    load_bundle,
    write_bundle,
)


@pytest.fixture
def bundle_copy(small_bundle_path: Path, tmp_path: Path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(small_bundle_path, target)
    return target


def test_trained_bundle_loads(small_bundle_path: Path) -> None:
    bundle = load_bundle(small_bundle_path)
    assert bundle.manifest.features == FEATURE_NAMES
    assert bundle.model_version.startswith("test-20180520-")
    assert 0 <= bundle.manifest.thresholds.review <= bundle.manifest.thresholds.decline <= 1
    assert any(any(v != v for v in row) for row in bundle.golden.rows)  # has missing values


@pytest.mark.parametrize("name", [MODEL_FILE, GOLDEN_FILE])
def test_one_flipped_byte_is_refused(bundle_copy: Path, name: str) -> None:
    path = bundle_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name} does not match its sha256"):
        load_bundle(bundle_copy)


def test_missing_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / GOLDEN_FILE).unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(bundle_copy)


def test_manifest_edit_that_changes_features_is_refused(bundle_copy: Path) -> None:
    manifest = json.loads((bundle_copy / MANIFEST_FILE).read_text())
    manifest["features"] = list(reversed(manifest["features"]))
    (bundle_copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="different order"):
        load_bundle(bundle_copy)


def test_bundle_for_other_features_is_refused(small_bundle_path: Path) -> None:
    with pytest.raises(BundleError, match=r"does not compute.*retrain"):
        load_bundle(small_bundle_path, expected_features=[*FEATURE_NAMES[:-1], "OTHER"])


def _bundle_from_params(path: Path, **params: object) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, len(FEATURE_NAMES)))
    x[x < -1] = 0.0
    y = (x[:, 0] > 0).astype(int)
    booster = lightgbm.train(
        {"objective": "binary", "verbosity": -1, **params},
        lightgbm.Dataset(x, y),
        num_boost_round=5,
    )
    write_bundle(
        path,
        model_text=booster.model_to_string(),
        golden=GoldenRows([list(x[0])], [float(booster.predict(x[:1])[0])]),
        model_version="t",
        thresholds=Thresholds(0.5, 0.9),
        training={},
        metrics={},
        created_at="",
    )


def test_zero_as_missing_model_is_refused(tmp_path: Path) -> None:
    _bundle_from_params(tmp_path, zero_as_missing=True)
    with pytest.raises(BundleError, match="zero_as_missing"):
        load_bundle(tmp_path)


def test_regression_model_is_refused(tmp_path: Path) -> None:
    _bundle_from_params(tmp_path, objective="regression")
    with pytest.raises(BundleError, match="binary classifier"):
        load_bundle(tmp_path)


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(BundleError, match="review <= decline"):
        Thresholds(review=0.9, decline=0.5)
