"""Scoring one row: the TL2cgen-generated `predict` called directly, or LightGBM's own.

`tl2cgen.Predictor` + `DMatrix` costs ~40 µs of Python and allocation per row; calling the
generated C function through ctypes with per-thread cached buffers costs a few µs. The
generated code has traps, each handled here:
- a missing value is recognised by its bit pattern (`missing == -1`), not by NaN: missing
  values are written as all-ones bits;
- `predict` adds into the output, so it is zeroed before every call;
- with `quantize=1` it overwrites its input, so the row is always copied in fresh;
- a row of the wrong width reads out of bounds and returns garbage, so widths are checked.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

MISSING = struct.unpack("<d", b"\xff" * 8)[0]
"""A NaN whose bits are all ones: what the generated code reads as "missing"."""


class Predictor(Protocol):
    """Fraud probability for one feature row (NaN = missing)."""

    kind: str
    num_features: int

    def predict_row(self, row: Sequence[float]) -> float: ...


def predict_batch(predictor: Predictor, rows: Sequence[Sequence[float]]) -> list[float]:
    """Scores of many rows, in one call where the predictor has `predict_batch` (the same
    value per row as `predict_row`), else row by row: test doubles and older predictors
    need only `predict_row`."""
    batch = getattr(predictor, "predict_batch", None)
    if batch is not None:
        scores: list[float] = batch(rows)
        return scores
    return [predictor.predict_row(row) for row in rows]


class Explainer(Protocol):
    """Per-feature contributions to the raw score (log-odds), for reason codes."""

    kind: str

    def contributions(self, row: Sequence[float]) -> list[float]: ...


class _Buffers(threading.local):
    def __init__(self, width: int) -> None:
        self.row = (ctypes.c_double * width)()
        self.out = (ctypes.c_double * 1)()


class NativePredictor:
    """Direct ctypes call into a compiled TL2cgen shared library."""

    kind = "native"

    def __init__(
        self,
        library: Path,
        num_features: int,
        *,
        fast_call: Callable[[int, int], Callable[[Sequence[float]], float]] | None = None,
    ) -> None:
        """`fast_call` is the C `Scorer` type (compile.load_native_call); None: ctypes."""
        # PyDLL keeps the GIL: releasing and re-taking it costs more than the 3 µs call.
        self._lib = ctypes.PyDLL(str(library))
        self._lib.get_num_feature.restype = ctypes.c_int32
        self._lib.get_num_feature.argtypes = []
        self._predict = self._lib.predict
        self._predict.restype = None  # no argtypes: passing ready ctypes objects is faster
        self._pred_margin = ctypes.c_int(0)
        compiled = int(self._lib.get_num_feature())
        if compiled != num_features:
            raise ValueError(
                f"{library} was compiled for {compiled} features, the bundle has "
                f"{num_features}; clear the compile cache and compile again"
            )
        self.num_features = num_features
        self.library = library
        self._buffers = _Buffers(num_features)
        self.fast = fast_call is not None
        if fast_call is not None:
            address = ctypes.cast(self._predict, ctypes.c_void_p).value
            if address is None:
                raise ValueError(f"{library} has no predict function")
            # the C scorer checks the width, maps NaN to missing and zeroes the output
            scorer = fast_call(address, num_features)
            self.predict_row = scorer  # type: ignore[method-assign,assignment]
            self.predict_batch = scorer.rows  # type: ignore[attr-defined,method-assign]

    def predict_row(self, row: Sequence[float]) -> float:
        if len(row) != self.num_features:
            raise ValueError(f"row has {len(row)} values, the model takes {self.num_features}")
        buffers = self._buffers
        buffers.row[:] = [MISSING if v != v else v for v in row]
        buffers.out[0] = 0.0
        self._predict(buffers.row, self._pred_margin, buffers.out)
        return buffers.out[0]

    def predict_batch(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """Many rows; the C scorer does them in one call (see `__init__`)."""
        return [self.predict_row(row) for row in rows]


class LightGBMPredictor:
    """LightGBM's own predictor: the reference, and the fallback with no C compiler."""

    kind = "lightgbm"  # also an Explainer, through TreeSHAP

    def __init__(self, model_text: str, num_features: int) -> None:
        import lightgbm

        self._booster = lightgbm.Booster(model_str=model_text)
        if self._booster.num_feature() != num_features:
            raise ValueError(
                f"model takes {self._booster.num_feature()} features, expected {num_features}"
            )
        self.num_features = num_features

    def predict_row(self, row: Sequence[float]) -> float:
        if len(row) != self.num_features:
            raise ValueError(f"row has {len(row)} values, the model takes {self.num_features}")
        matrix = np.asarray(row, dtype=np.float64).reshape(1, -1)
        return float(self._booster.predict(matrix, num_threads=1)[0])

    def predict_batch(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """One Booster call for many rows (each row's value is the same as alone)."""
        if not rows:
            return []
        matrix = np.asarray(rows, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] != self.num_features:
            raise ValueError(f"rows must each have {self.num_features} values")
        return [float(v) for v in self._booster.predict(matrix, num_threads=1)]

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._booster.predict(rows, num_threads=1), dtype=np.float64)

    def raw_scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._booster.predict(rows, raw_score=True, num_threads=1))

    def contributions(self, row: Sequence[float]) -> list[float]:
        """Per-feature SHAP contributions (log-odds), for reason codes."""
        matrix = np.asarray(row, dtype=np.float64).reshape(1, -1)
        values = self._booster.predict(matrix, pred_contrib=True, num_threads=1)
        return [float(v) for v in np.asarray(values)[0, : self.num_features]]
