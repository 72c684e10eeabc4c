"""A stacked bundle for tests: the hub's correction of the score-band model, trained from
an exact (noise-free) export of the small history, with the last 10 days' frauds relabelled
as the drift so its report has drift weeks."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd

from fraudscreen import history
from fraudscreen.features.batch import compute_features
from fraudscreen.model.bundle import Bundle, load_bundle
from fraudscreen.model.retrain import retrain_from_export
from fraudscreen.score_bands import with_scores


def write_export(path: Path, base: Bundle, frame: pd.DataFrame) -> Path:
    """A hub-export-shaped table (csv + schema sidecar) of the base model's score bands,
    exact counts: what `fraudscreen hub export` writes, without the noise."""
    schema = base.bin_schema
    assert schema is not None
    features = compute_features(frame)
    scores = lightgbm.Booster(model_str=base.model_text).predict(features, num_threads=1)
    codes = schema.transform_matrix(with_scores(features, scores))[:, list(schema.binned)]
    names = [schema.features[i] for i in schema.binned]
    cells = pd.DataFrame(codes.astype(np.int64), columns=names)
    cells["fraud"] = frame[history.TX_FRAUD].to_numpy()
    table = cells.groupby(names).agg(noisy_total=("fraud", "size"), noisy_fraud=("fraud", "sum"))
    table.reset_index().to_csv(path, index=False)
    path.with_suffix(".schema.json").write_text(json.dumps({"bin_schema": schema.to_json()}))
    return path


def build_correction(root: Path, small_history: pd.DataFrame, score_band_bundle_path: Path) -> Path:
    """`train --from-hub` on the export, as the analyst would; returns the bundle's directory."""
    export = write_export(root / "export.csv", load_bundle(score_band_bundle_path), small_history)
    labelled = small_history.copy()  # the last 10 days' frauds relabelled as the drift
    late = labelled[history.TX_DATETIME] >= labelled[history.TX_DATETIME].max() - pd.Timedelta(
        days=10
    )
    labelled[history.TX_FRAUD_SCENARIO] = np.where(
        late & (labelled[history.TX_FRAUD] == 1), 4, labelled[history.TX_FRAUD_SCENARIO]
    )
    labelled.to_parquet(root / "history.parquet")
    retrain_from_export(
        export,
        root / "correction",
        name="corr-test",
        current=score_band_bundle_path,
        history=root / "history.parquet",
    )
    return root / "correction"
