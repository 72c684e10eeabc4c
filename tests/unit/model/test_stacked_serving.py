"""Serving the hub's correction: `train --from-hub` on a score-band export writes a stacked
bundle (correction + the deployed model it corrects), the gateway compiles both with
parity checks, and online scoring equals the batch path used in training and evaluation."""

from __future__ import annotations

import shutil
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest

from fraudscreen import history
from fraudscreen.features.batch import compute_features
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.model.bundle import BASE_MODEL_FILE, BundleError, load_bundle
from fraudscreen.model.predictor import NativePredictor
from fraudscreen.model.retrain import retrain_from_export
from fraudscreen.model.stacked import StackedPredictor, score_feature_rows
from fraudscreen.policy import Policy, PolicyRules
from fraudscreen.screening import ActiveModel
from tests.support.stacked_bundle import write_export


def test_the_bundle_is_a_correction_of_the_deployed_model_and_ships_it(
    correction_path: Path, score_band_bundle_path: Path
) -> None:
    base = load_bundle(score_band_bundle_path)
    bundle = load_bundle(correction_path)
    assert bundle.is_stacked and bundle.base is not None
    assert bundle.model_version.startswith("corr-test-")
    assert bundle.manifest.base == {
        "model_version": base.model_version,
        "model_sha256": base.model_sha256,
    }
    assert bundle.bin_schema == base.bin_schema  # the score-band schema of that version
    assert bundle.base.model_text == base.model_text
    assert bundle.manifest.features == tuple(FEATURE_NAMES)
    assert bundle.correction.manifest.features == (*FEATURE_NAMES, "DEPLOYED_SCORE")
    report = (correction_path.parent / "correction.report.html").read_text()
    assert f"current ({base.model_version})" in report
    assert "drift weeks (scenario 4 from" in report


def test_a_tampered_base_model_is_refused(correction_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(correction_path, copy)
    with (copy / BASE_MODEL_FILE).open("a") as handle:
        handle.write("\n")
    with pytest.raises(BundleError, match=f"{BASE_MODEL_FILE} does not match its sha256"):
        load_bundle(copy)


def test_training_refuses_a_current_model_other_than_the_banded_one(
    tmp_path: Path,
    small_history: pd.DataFrame,
    score_band_bundle_path: Path,
    small_bundle_path: Path,
) -> None:
    export = write_export(
        tmp_path / "export.csv", load_bundle(score_band_bundle_path), small_history.head(5000)
    )
    with pytest.raises(ValueError, match="give that model's bundle as --current"):
        retrain_from_export(export, tmp_path / "out")
    with pytest.raises(ValueError, match=r"bands the scores of .* but --current is"):
        retrain_from_export(export, tmp_path / "out", current=small_bundle_path)


def test_online_scores_equal_the_batch_path(
    correction_path: Path, small_history: pd.DataFrame
) -> None:
    """Same rows, the gateway's native StackedPredictor vs the batch path the report and
    the evaluation use, to 1e-9; reason codes come from the base model's explainer."""
    bundle = load_bundle(correction_path)
    assert bundle.base is not None and bundle.bin_schema is not None
    model = ActiveModel.from_bundle(bundle, Policy(PolicyRules()), require_native=True)
    predictor = model.predictor
    assert isinstance(predictor, StackedPredictor)
    assert isinstance(predictor.base, NativePredictor)
    assert isinstance(predictor.correction, NativePredictor)
    features = compute_features(small_history)
    rng = np.random.default_rng(0)
    frauds = np.flatnonzero(small_history[history.TX_FRAUD].to_numpy() == 1)
    picked = np.concatenate([rng.choice(len(features), 3000, replace=False), frauds[:500]])
    rows = features[picked]
    batch = score_feature_rows(
        lightgbm.Booster(model_str=bundle.base.model_text),
        lightgbm.Booster(model_str=bundle.model_text),
        bundle.bin_schema,
        rows,
    )
    online = np.array([model.score(list(row))[0] for row in rows])
    assert np.max(np.abs(online - batch)) <= 1e-9
    assert len(set(np.round(batch, 12))) > 50  # ties inside a cell are broken: many scores
    reasons = model.explainer.contributions(list(rows[0]))
    assert len(reasons) == len(FEATURE_NAMES)  # the base model's features, not band codes
