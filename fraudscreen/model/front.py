"""`fraudscreen bench --front`: model size against quality and native scoring cost.

For each leaf budget, the training recipe is run as shipped (prequential selection of the
tree count on the training week), the released model is compiled with TL2cgen and timed one
row at a time. Quality for the choice is the fold model's validation average precision on
the training week (time-ordered, never the test week); the test-week metrics are shown next
to it for information. The shipped size is the smallest (trees x leaves) whose validation
AP is within `AP_TOLERANCE` of the best.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from fraudscreen import history
from fraudscreen.model.bench import time_per_row
from fraudscreen.model.bundle import Thresholds, load_bundle, write_bundle
from fraudscreen.model.compile import CompileOptions, compile_bundle, load_native_call
from fraudscreen.model.evaluate import compute_metrics, evaluation_mask
from fraudscreen.model.predictor import NativePredictor
from fraudscreen.model.train import (
    TrainingConfig,
    branch_statistics,
    fit_prequential,
    make_golden_rows,
)

AP_TOLERANCE = 0.005
DEFAULT_LEAVES: tuple[int, ...] = (7, 15, 31, 63)


@dataclass(frozen=True)
class FrontPoint:
    num_leaves: int
    trees: int
    validation_ap: float
    test_ap: float
    test_auc: float
    test_cp100: float
    native_us: float

    @property
    def size(self) -> int:
        """Trees x leaf budget: what the compiled code and the per-row walk scale with."""
        return self.trees * self.num_leaves


def size_front(
    frame: pd.DataFrame,
    features: npt.NDArray[np.float64],
    base: TrainingConfig,
    *,
    leaves: Sequence[int] = DEFAULT_LEAVES,
    rows: int = 2000,
    repeats: int = 3,
) -> list[FrontPoint]:
    """One point per leaf budget, in the order given."""
    labels = frame[history.TX_FRAUD].to_numpy(dtype=np.int8)
    test = evaluation_mask(frame, base.periods())
    if not test.any() or len(np.unique(labels[test])) < 2:
        raise ValueError("the history must reach past the test week (train end + 14 days)")
    points = []
    with tempfile.TemporaryDirectory(prefix="fraudscreen-front-") as scratch:
        for n in leaves:
            config = dataclasses.replace(base, num_leaves=n)
            fit = fit_prequential(frame, features, config, progress=False)
            validation = fit.fold.predict(features[fit.fit_mask], num_iteration=fit.trees)
            val = compute_metrics(frame[fit.fit_mask], validation)
            tested = compute_metrics(frame[test], fit.final.predict(features[test]))
            text = fit.final.model_to_string()
            directory = Path(scratch) / f"leaves-{n}"
            write_bundle(
                directory,
                model_text=text,
                golden=make_golden_rows(
                    fit.final, features[fit.fit_mask], labels[fit.fit_mask], config.seed
                ),
                model_version=f"front-{n}",
                thresholds=Thresholds(0.5, 0.9),
                training={"front": True},
                metrics={},
                created_at="",
                branches=branch_statistics(text, features[fit.fit_mask]),
            )
            compiled = compile_bundle(
                load_bundle(directory), CompileOptions(cache_dir=Path(scratch) / "cache")
            )
            native = NativePredictor(
                compiled.library, features.shape[1], fast_call=load_native_call()
            )
            sample = [[float(v) for v in row] for row in features[test][:rows]]
            (timing,) = time_per_row({"native": native.predict_row}, sample, repeats)
            points.append(
                FrontPoint(
                    num_leaves=n,
                    trees=fit.trees,
                    validation_ap=val.average_precision,
                    test_ap=tested.average_precision,
                    test_auc=tested.auc_roc,
                    test_cp100=tested.card_precision_at_100,
                    native_us=timing.median_us,
                )
            )
    return points


def choose(points: Sequence[FrontPoint], tolerance: float = AP_TOLERANCE) -> FrontPoint:
    """The smallest model whose validation AP is within `tolerance` of the best."""
    best = max(p.validation_ap for p in points)
    return min((p for p in points if p.validation_ap >= best - tolerance), key=lambda p: p.size)


def format_front(points: Sequence[FrontPoint], chosen: FrontPoint) -> str:
    lines = [
        "| leaves | trees | size (trees x leaves) | validation AP | test AP | test AUC | "
        "test CP@100 | native µs/row (median) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in sorted(points, key=lambda p: p.size):
        mark = " **chosen**" if p == chosen else ""
        lines.append(
            f"| {p.num_leaves}{mark} | {p.trees} | {p.size:,} | {p.validation_ap:.4f} | "
            f"{p.test_ap:.4f} | {p.test_auc:.4f} | {p.test_cp100:.3f} | {p.native_us:.2f} |"
        )
    lines.append(
        f"\nchosen: the smallest model within {AP_TOLERANCE} validation AP of the best "
        f"({max(p.validation_ap for p in points):.4f}): {chosen.num_leaves} leaves x "
        f"{chosen.trees} trees"
    )
    return "\n".join(lines)
