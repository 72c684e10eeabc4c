"""The score-band schema: edges from the deployed model's training scores, the model
version in the schema's hash, and bundles that carry it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fraudscreen.binschema import BinSchema
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.model.bundle import MANIFEST_FILE, BundleError, load_bundle
from fraudscreen.model.retrain import retrain_from_export
from fraudscreen.score_bands import (
    DEPLOYED_SCORE,
    band_edges,
    band_shares,
    nominal_band_shares,
    reads_score,
    score_band_schema,
    with_score,
)

# main's default schema hash: the field added for score bands must not move it
DEFAULT_SCHEMA_HASH = "baae6a6c72035ff473dd7c26990ff87c39886fc97eb93abd4635cf8e7fb3bf50"


def test_band_edges_are_quantiles_of_the_training_scores_finer_at_the_top() -> None:
    scores = np.random.default_rng(0).beta(0.3, 8.0, 100_000)
    edges = band_edges(scores)
    assert len(edges) == 7 and list(edges) == sorted(set(edges))
    # most bands sit in the top 2 % of training scores, where fraud lives
    assert sum(e > np.quantile(scores, 0.975) for e in edges) >= 5
    assert band_edges([0.5] * 100) == (0.5,)  # equal quantiles merge
    with pytest.raises(ValueError, match="finite"):
        band_edges([0.1, float("nan")])


def test_the_schema_names_its_model_version_and_hashes_it() -> None:
    a = score_band_schema((0.1, 0.5), model_version="model-a")
    b = score_band_schema((0.1, 0.5), model_version="model-b")
    assert reads_score(a) and a.features[-1] == DEPLOYED_SCORE
    assert a.hash != b.hash  # the hub sums per schema hash: never two versions together
    assert BinSchema.from_json(json.loads(json.dumps(a.to_json()))) == a
    assert a.domain_size() == 3 * 3 * 2 * 3 * 2 * 2 * 2  # bands x amount x risk x entry x burst
    row = with_score([30.0] + [0.0] * (len(FEATURE_NAMES) - 1), 0.7)
    assert a.cell(row)[-1] == 2  # the score's band is the last code
    assert BinSchema.default().hash == DEFAULT_SCHEMA_HASH
    assert "model_version" not in BinSchema.default().to_json()


def test_a_bundle_refuses_bands_of_another_model(
    score_band_bundle_path: Path, tmp_path: Path
) -> None:
    bundle = load_bundle(score_band_bundle_path)
    assert bundle.bin_schema is not None and reads_score(bundle.bin_schema)
    assert bundle.bin_schema.model_version == bundle.model_version
    copy = tmp_path / "bundle"
    shutil.copytree(score_band_bundle_path, copy)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    schema = dict(manifest["bin_schema"], model_version="someone-else")
    del schema["sha256"]
    manifest["bin_schema"] = BinSchema.from_json(schema).to_json()
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="bands the scores of someone-else"):
        load_bundle(copy)


def test_band_shares_bin_scores_as_the_schema_does() -> None:
    scores = np.random.default_rng(1).beta(0.3, 8.0, 20_000)
    edges = band_edges(scores)
    schema = score_band_schema(edges, model_version="m")
    row = [0.0] * len(FEATURE_NAMES)
    codes = np.array([schema.cell(with_score(row, s))[-1] for s in scores])
    expected = np.bincount(codes, minlength=len(edges) + 1) / len(scores)
    assert band_shares(edges, scores) == pytest.approx(tuple(expected), abs=1e-9)
    assert band_shares((0.5,), [0.5, 0.5, 0.7, 0.1]) == (0.75, 0.25)  # upper-inclusive
    nominal = nominal_band_shares(edges)
    assert nominal is not None and band_shares(edges, scores) == pytest.approx(nominal, abs=1e-3)
    assert nominal_band_shares(edges[:3]) is None  # merged quantiles: levels unknown


def test_training_stores_the_bands_reference_shares_in_the_manifest(
    score_band_bundle_path: Path, small_bundle_path: Path
) -> None:
    bundle = load_bundle(score_band_bundle_path)
    assert bundle.bin_schema is not None
    reference = bundle.manifest.training["score_band_reference"]
    edges = bundle.bin_schema.edges[-1]
    assert reference["bin_schema_sha256"] == bundle.bin_schema.hash
    assert reference["rows"] == bundle.manifest.training["rows"]
    shares = reference["shares"]
    assert len(shares) == len(edges) + 1 and sum(shares) == pytest.approx(1.0, abs=1e-6)
    # the edges are quantiles of the same training scores: the first is their 80th percentile (the
    # small model's top quantiles tie and merge, so its other bands are not the nominal gaps)
    assert shares[0] == pytest.approx(0.8, abs=0.01)
    plain = load_bundle(small_bundle_path)  # no score bands: no reference, manifest as before
    assert "score_band_reference" not in plain.manifest.training


def test_train_from_hub_needs_the_banded_model_for_score_band_tables(tmp_path: Path) -> None:
    schema = score_band_schema((0.1, 0.5), model_version="model-a")
    names = [schema.features[i] for i in schema.binned]
    frame = pd.DataFrame(
        [[0] * len(names) + [100, 3]], columns=[*names, "noisy_total", "noisy_fraud"]
    )
    export = tmp_path / "export.csv"
    frame.to_csv(export, index=False)
    export.with_suffix(".schema.json").write_text(json.dumps({"bin_schema": schema.to_json()}))
    with pytest.raises(ValueError, match=r"score-band tables of model-a: give that model's"):
        retrain_from_export(export, tmp_path / "out")
