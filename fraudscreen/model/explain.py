"""Reason codes need per-feature contributions; this computes them natively.

LightGBM's TreeSHAP (`pred_contrib`) costs ~0.7 ms a row through Python, which would
dominate the latency of every REVIEW and DECLINE. The Saabas path attribution in
`explain.c` walks each tree once (microseconds): every split on the path credits its
feature with the change in node value. Node values are the hessian-weighted means of the
leaves below, recomputed here at full precision (the model text rounds them). By
construction bias + contributions equal LightGBM's raw score, which is checked on the
golden rows every time an explainer is built.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

EXPLAIN_SOURCE = Path(__file__).with_name("explain.c")
CONTRIB_TOLERANCE = 1e-9

_F64 = npt.NDArray[np.float64]
_I32 = npt.NDArray[np.int32]


class _ForestStruct(ctypes.Structure):
    _fields_ = [
        ("n_trees", ctypes.c_int32),
        ("n_features", ctypes.c_int32),
        ("tree_root", ctypes.c_void_p),
        ("tree_leaf_base", ctypes.c_void_p),
        ("split_feature", ctypes.c_void_p),
        ("threshold", ctypes.c_void_p),
        ("missing_nan", ctypes.c_void_p),
        ("default_left", ctypes.c_void_p),
        ("left", ctypes.c_void_p),
        ("right", ctypes.c_void_p),
        ("node_value", ctypes.c_void_p),
        ("leaf_value", ctypes.c_void_p),
    ]


@dataclass(frozen=True)
class FlatForest:
    """All trees of a model in flat arrays, the layout `explain.c` reads."""

    n_features: int
    tree_root: _I32
    tree_leaf_base: _I32
    split_feature: _I32
    threshold: _F64
    missing_nan: npt.NDArray[np.int8]
    default_left: npt.NDArray[np.int8]
    left: _I32
    right: _I32
    node_value: _F64
    leaf_value: _F64


def _field(block: str, key: str) -> list[str]:
    match = re.search(rf"^{key}=(.*)$", block, re.MULTILINE)
    return match.group(1).split() if match is not None else []


def _ints(block: str, key: str) -> _I32:
    return np.array(_field(block, key), dtype=np.int32)


def _floats(block: str, key: str) -> _F64:
    return np.array(_field(block, key), dtype=np.float64)


def flatten_forest(model_text: str, n_features: int) -> FlatForest:
    """Parse LightGBM model text (numerical splits only, as our bundles are)."""
    blocks = re.split(r"^Tree=\d+$", model_text.split("end of trees")[0], flags=re.MULTILINE)[1:]
    roots, leaf_bases = [], []
    columns: dict[str, list[npt.NDArray[np.int32] | _F64]] = {
        k: []
        for k in (
            "split_feature",
            "threshold",
            "decision_type",
            "left",
            "right",
            "node_value",
            "leaf_value",
        )
    }
    nodes = leaves = 0
    for block in blocks:
        leaf_value = _floats(block, "leaf_value")
        leaf_weight = _floats(block, "leaf_weight")
        left = _ints(block, "left_child")
        right = _ints(block, "right_child")
        if _ints(block, "num_cat").sum() > 0:
            raise ValueError("categorical splits are not supported by the explainer")
        leaf_bases.append(leaves)
        roots.append(nodes if len(left) else -1)
        columns["split_feature"].append(_ints(block, "split_feature"))
        columns["threshold"].append(_floats(block, "threshold"))
        columns["decision_type"].append(_ints(block, "decision_type"))
        columns["left"].append(left)
        columns["right"].append(right)
        columns["node_value"].append(_node_values(left, right, leaf_value, leaf_weight))
        columns["leaf_value"].append(leaf_value)
        nodes += len(left)
        leaves += len(leaf_value)
    joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in columns.items()}
    decision = joined["decision_type"].astype(np.int32)
    return FlatForest(
        n_features=n_features,
        tree_root=np.array(roots, dtype=np.int32),
        tree_leaf_base=np.array(leaf_bases, dtype=np.int32),
        split_feature=joined["split_feature"].astype(np.int32),
        threshold=joined["threshold"].astype(np.float64),
        missing_nan=(((decision >> 2) & 3) == 2).astype(np.int8),
        default_left=((decision >> 1) & 1).astype(np.int8),
        left=joined["left"].astype(np.int32),
        right=joined["right"].astype(np.int32),
        node_value=joined["node_value"].astype(np.float64),
        leaf_value=joined["leaf_value"].astype(np.float64),
    )


def _node_values(left: _I32, right: _I32, leaf_value: _F64, leaf_weight: _F64) -> _F64:
    """Hessian-weighted mean leaf value below each internal node (children before parents)."""
    count = len(left)
    total_w = np.zeros(count)
    total_wv = np.zeros(count)
    weights = leaf_weight if len(leaf_weight) == len(leaf_value) else np.ones(len(leaf_value))
    order = _postorder(left, right)
    for node in order:
        for child in (left[node], right[node]):
            if child < 0:
                w = weights[~child]
                total_w[node] += w
                total_wv[node] += w * leaf_value[~child]
            else:
                total_w[node] += total_w[child]
                total_wv[node] += total_wv[child]
    return np.divide(total_wv, total_w, out=np.zeros(count), where=total_w > 0)


def _postorder(left: _I32, right: _I32) -> list[int]:
    if len(left) == 0:
        return []
    order: list[int] = []
    stack = [(0, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        stack.append((node, True))
        for child in (left[node], right[node]):
            if child >= 0:
                stack.append((int(child), False))
    return order


class NativeExplainer:
    """Per-feature contributions (log-odds) through the compiled `forest_contributions`."""

    kind = "native-saabas"

    def __init__(self, library: Path, model_text: str, n_features: int) -> None:
        self._lib = ctypes.PyDLL(str(library))
        self._fn = self._lib.forest_contributions
        self._fn.restype = None
        self.forest = flatten_forest(model_text, n_features)
        f = self.forest
        self._struct = _ForestStruct(
            len(f.tree_root),
            n_features,
            *(
                a.ctypes.data
                for a in (
                    f.tree_root,
                    f.tree_leaf_base,
                    f.split_feature,
                    f.threshold,
                    f.missing_nan,
                    f.default_left,
                    f.left,
                    f.right,
                    f.node_value,
                    f.leaf_value,
                )
            ),
        )
        self._ref = ctypes.byref(self._struct)
        self.num_features = n_features

    def contributions_with_bias(self, row: Sequence[float]) -> list[float]:
        if len(row) != self.num_features:
            raise ValueError(f"row has {len(row)} values, the model takes {self.num_features}")
        values = (ctypes.c_double * self.num_features)(*row)
        out = (ctypes.c_double * (self.num_features + 1))()
        self._fn(self._ref, values, out)
        return list(out)

    def contributions(self, row: Sequence[float]) -> list[float]:
        return self.contributions_with_bias(row)[: self.num_features]
