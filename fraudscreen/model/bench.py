"""`fraudscreen bench`: one-row scoring latency of the native predictor against the
baselines it replaces, on the same rows in the same process, plus batch throughput.

Timings are medians and p99 of individual calls, taken in interleaved blocks so a noisy
neighbour hurts every contender alike; the ratios are what to read, not absolute µs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightgbm
import numpy as np
import numpy.typing as npt

from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.model.bundle import Bundle, GoldenRows, Thresholds, load_bundle, write_bundle
from fraudscreen.model.compile import compile_bundle, load_native_call
from fraudscreen.model.predictor import NativePredictor
from fraudscreen.model.train import branch_statistics

BLOCK = 200


@dataclass(frozen=True)
class Timing:
    name: str
    median_us: float
    p99_us: float


def time_per_row(
    contenders: dict[str, Callable[[Sequence[float]], float]],
    rows: list[list[float]],
    repeats: int,
) -> list[Timing]:
    """Per-call latency of each contender, interleaved block by block."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for predict in contenders.values():  # warm-up
        for row in rows[:BLOCK]:
            predict(row)
    for _ in range(repeats):
        for start in range(0, len(rows), BLOCK):
            block = rows[start : start + BLOCK]
            for name, predict in contenders.items():
                out = samples[name]
                clock = time.perf_counter_ns
                for row in block:
                    began = clock()
                    predict(row)
                    out.append((clock() - began) / 1000)
    return [
        Timing(name, statistics.median(values), float(np.percentile(values, 99)))
        for name, values in samples.items()
    ]


def _batch_rate(predict: Callable[[], object], rows: int) -> float:
    predict()
    runs = []
    for _ in range(3):
        began = time.perf_counter()
        predict()
        runs.append(time.perf_counter() - began)
    return rows / statistics.median(runs)


def realistic_rows(count: int, seed: int = 7) -> npt.NDArray[np.float64]:
    """Feature rows of a fresh small simulation: the branch mix real traffic produces
    (golden rows are chosen for coverage, half of them with values knocked out)."""
    from fraudscreen.features.batch import compute_features
    from fraudscreen.history import validate_history
    from fraudscreen.simulate import SimulationConfig, simulate

    config = SimulationConfig(customers=1000, terminals=2000, days=60, seed=seed)
    features = compute_features(validate_history(simulate(config, progress=False)))
    return features[-count:]


def benchmark_bundle(
    bundle: Bundle, rows: int, repeats: int, data: npt.NDArray[np.float64] | None = None
) -> str:
    import tl2cgen

    compiled = compile_bundle(bundle)
    width = len(bundle.manifest.features)
    native = NativePredictor(compiled.library, width, fast_call=load_native_call())
    reference = tl2cgen.Predictor(str(compiled.library), nthread=1)
    booster = lightgbm.Booster(model_str=bundle.model_text)
    if data is None:
        schema = bundle.input_schema
        data = realistic_rows(rows)
        data = schema.transform_matrix(data) if schema is not None else data
    matrix = np.ascontiguousarray(data[:rows])
    row_list = [[float(v) for v in row] for row in matrix]

    def tl2cgen_row(row: Sequence[float]) -> float:
        dmat = tl2cgen.DMatrix(np.asarray(row, dtype=np.float64).reshape(1, -1))
        return float(np.ravel(reference.predict(dmat))[0])

    def lightgbm_row(row: Sequence[float]) -> float:
        return float(
            booster.predict(np.asarray(row, dtype=np.float64).reshape(1, -1), num_threads=1)[0]
        )

    timings = time_per_row(
        {
            "native (direct C call)": native.predict_row,
            "tl2cgen.Predictor + DMatrix": tl2cgen_row,
            "LightGBM Booster.predict": lightgbm_row,
        },
        row_list,
        repeats,
    )
    # the native path must agree with LightGBM on these rows too
    diff = float(
        np.max(
            np.abs(np.array([native.predict_row(r) for r in row_list]) - booster.predict(matrix))
        )
    )
    batch = {
        "native (loop over rows)": _batch_rate(
            lambda: [native.predict_row(r) for r in row_list], len(row_list)
        ),
        "tl2cgen.Predictor (one DMatrix, 1 thread)": _batch_rate(
            lambda: reference.predict(tl2cgen.DMatrix(matrix)), len(row_list)
        ),
        "LightGBM Booster.predict (matrix, all threads)": _batch_rate(
            lambda: booster.predict(matrix), len(row_list)
        ),
    }
    return _format(bundle, timings, batch, diff, len(row_list), repeats)


def _format(
    bundle: Bundle,
    timings: list[Timing],
    batch: dict[str, float],
    diff: float,
    rows: int,
    repeats: int,
) -> str:
    trees = bundle.model_text.count("\nTree=")
    native, rest = timings[0], timings[1:]
    lines = [
        f"model {bundle.model_version}: {trees} trees, {len(bundle.manifest.features)} "
        f"features; {rows} rows x {repeats} repeats; max |native - LightGBM| = {diff:.1e}",
        "",
        "| one row | median µs | p99 µs | native is faster by (median) |",
        "|---|---:|---:|---:|",
        f"| {native.name} | {native.median_us:.2f} | {native.p99_us:.2f} | 1.0× |",
    ]
    for t in rest:
        lines.append(
            f"| {t.name} | {t.median_us:.2f} | {t.p99_us:.2f} | "
            f"{t.median_us / native.median_us:.1f}× |"
        )
    lines += ["", "| batch | rows/s |", "|---|---:|"]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in batch.items()]
    return "\n".join(lines)


def synthetic_bundle(
    directory: Path, trees: int, seed: int = 0
) -> tuple[Bundle, npt.NDArray[np.float64]]:
    """A full-size model (`trees` trees of 31 leaves) on random data, for the size budget,
    with rows from the same distribution to score."""
    rng = np.random.default_rng(seed)
    width = len(FEATURE_NAMES)
    x = rng.normal(size=(20_000, width))
    x[rng.random(x.shape) < 0.05] = np.nan
    y = np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) ** 2 + rng.normal(size=len(x)) > 1.5
    params = {
        "objective": "binary",
        "num_leaves": 31,
        "min_data_in_leaf": 5,
        "learning_rate": 0.05,
        "verbosity": -1,
        "seed": seed,
        "deterministic": True,
    }
    booster = lightgbm.train(params, lightgbm.Dataset(x, y.astype(int)), num_boost_round=trees)
    golden = x[:256]
    write_bundle(
        directory,
        model_text=booster.model_to_string(),
        golden=GoldenRows(
            [[float(v) for v in r] for r in golden], [float(s) for s in booster.predict(golden)]
        ),
        model_version=f"synthetic-{trees}x31",
        thresholds=Thresholds(0.5, 0.9),
        training={"synthetic": True},
        metrics={},
        created_at="",
        branches=branch_statistics(booster.model_to_string(), x),
    )
    return load_bundle(directory), x[-5000:]


def run_predictor_benchmark(bundle_path: Path, *, rows: int, repeats: int, trees: int) -> str:
    reports = [benchmark_bundle(load_bundle(bundle_path), rows, repeats)]
    if trees > 0:
        with tempfile.TemporaryDirectory(prefix="fraudscreen-bench-") as scratch:
            synthetic, data = synthetic_bundle(Path(scratch), trees)
            reports.append(benchmark_bundle(synthetic, rows, repeats, data))
    return "\n\n".join(reports)
