"""Compile parity, the compile cache, the native predictor's guards, and the fallback."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import lightgbm
import numpy as np
import pytest
from structlog.testing import capture_logs

from fraudscreen.model.bundle import Bundle, GoldenRows, load_bundle, write_bundle
from fraudscreen.model.compile import (
    CompileError,
    CompileOptions,
    CompilerNotFoundError,
    compile_bundle,
    load_predictor,
)
from fraudscreen.model.predictor import LightGBMPredictor, NativePredictor, Predictor


def test_compiled_scores_equal_lightgbm(small_bundle: Bundle, small_history: object) -> None:
    compiled = compile_bundle(small_bundle)
    assert compiled.max_abs_diff <= 1e-6
    native = NativePredictor(compiled.library, len(small_bundle.manifest.features))
    booster = lightgbm.Booster(model_str=small_bundle.model_text)
    rng = np.random.default_rng(1)
    rows = np.asarray(small_bundle.golden.rows) * rng.uniform(0.5, 1.5, size=(1, 1))
    rows[rng.random(rows.shape) < 0.2] = np.nan
    ours = np.array([native.predict_row(list(r)) for r in rows])
    assert np.max(np.abs(ours - booster.predict(rows))) <= 1e-6


def test_second_compile_comes_from_cache(small_bundle: Bundle, compile_cache: Path) -> None:
    first = compile_bundle(small_bundle)
    second = compile_bundle(small_bundle)
    assert second.from_cache
    assert second.library == first.library
    assert first.library.is_relative_to(compile_cache)
    other = compile_bundle(small_bundle, CompileOptions(parallel_units=1))
    assert other.cache_key != first.cache_key  # code-generation options are part of the key


def test_wrong_golden_scores_fail_the_compile(small_bundle: Bundle, tmp_path: Path) -> None:
    golden = GoldenRows(small_bundle.golden.rows, [s + 1e-3 for s in small_bundle.golden.scores])
    write_bundle(
        tmp_path,
        model_text=small_bundle.model_text,
        golden=golden,
        model_version="bad-golden",
        thresholds=small_bundle.manifest.thresholds,
        training={},
        metrics={},
        created_at="",
    )
    with pytest.raises(CompileError, match="differ from LightGBM"):
        compile_bundle(load_bundle(tmp_path))


def test_cached_library_for_another_width_is_refused(small_bundle: Bundle) -> None:
    library = compile_bundle(small_bundle).library
    with pytest.raises(ValueError, match="compiled for 18 features"):
        NativePredictor(library, 17)


@pytest.mark.parametrize("width", [0, 17, 19])
def test_row_width_is_checked(small_bundle: Bundle, width: int) -> None:
    library = compile_bundle(small_bundle).library
    predictors: list[Predictor] = [
        NativePredictor(library, 18),
        LightGBMPredictor(small_bundle.model_text, 18),
    ]
    for predictor in predictors:
        with pytest.raises(ValueError, match=f"row has {width} values"):
            predictor.predict_row([0.0] * width)


def test_missing_values_use_the_missing_branch(small_bundle: Bundle) -> None:
    """NaN is passed as the all-ones pattern; a plain NaN would be compared as a number."""
    native = NativePredictor(compile_bundle(small_bundle).library, 18)
    reference = LightGBMPredictor(small_bundle.model_text, 18)
    row = [math.nan] * 18
    assert native.predict_row(row) == pytest.approx(reference.predict_row(row), abs=1e-9)


def test_output_is_zeroed_between_calls(small_bundle: Bundle) -> None:
    native = NativePredictor(compile_bundle(small_bundle).library, 18)
    row = small_bundle.golden.rows[0]
    assert [native.predict_row(row) for _ in range(3)] == [native.predict_row(row)] * 3


def test_no_compiler_falls_back_to_lightgbm_loudly(small_bundle: Bundle) -> None:
    with pytest.raises(CompilerNotFoundError, match="not found"):
        compile_bundle(small_bundle, CompileOptions(compiler="no-such-cc"))
    with capture_logs() as logs:
        predictor = load_predictor(small_bundle, CompileOptions(compiler="no-such-cc"))
    assert predictor.kind == "lightgbm"
    fallback = [e for e in logs if e["event"] == "predictor.fallback_to_lightgbm"]
    assert fallback
    assert fallback[0]["log_level"] == "error"
    row = small_bundle.golden.rows[0]
    assert predictor.predict_row(row) == pytest.approx(small_bundle.golden.scores[0], abs=1e-9)


def test_broken_compiler_is_a_compile_error(small_bundle: Bundle, tmp_path: Path) -> None:
    fake = tmp_path / "fakecc"
    fake.write_text('#!/bin/sh\n[ "$1" = --version ] && echo fakecc 1.0 && exit 0\nexit 1\n')
    fake.chmod(0o755)
    cache = tmp_path / "cache"
    with pytest.raises(CompileError, match="failed"):
        compile_bundle(small_bundle, CompileOptions(compiler=str(fake), cache_dir=cache))
    assert not any(cache.glob("*/predictor.so"))
    shutil.rmtree(cache, ignore_errors=True)
