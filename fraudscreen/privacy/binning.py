"""The bin schema: the one transform shared by aggregation, training from aggregates, and
serving a model trained that way.

Each feature in the schema is cut at fixed edges into small integer codes
(code = number of edges strictly below the value, so bins are upper-inclusive); a missing
value gets code -1; features not in the schema get code 0 (they carry no information in
an aggregate). The schema is hashed: a batch names the hash it was binned with, and the
hub refuses batches for schemas it does not know.
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudscreen.features.definitions import FEATURE_NAMES

MISSING_CODE = -1

# Chosen from domain knowledge of what separates fraud in this simulator and at a till:
# amount bands (the handbook's > 220), delayed terminal risk, an amount unusual for the
# card, how the card was read, card velocity, night. Coarse on purpose: a cell must hold
# many transactions to survive the DP threshold.
DEFAULT_EDGES: dict[str, tuple[float, ...]] = {
    "TX_AMOUNT": (25.0, 60.0, 120.0, 220.0),
    "TX_DURING_NIGHT": (0.0,),
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW": (1.0, 3.0),
    "TERMINAL_ID_RISK_7DAY_WINDOW": (0.0, 0.2),
    "TERMINAL_ID_RISK_30DAY_WINDOW": (0.0, 0.2),
    "ENTRY_MODE": (2.0,),
    "CUSTOMER_ID_AMOUNT_RATIO_30DAY_WINDOW": (1.5, 3.0),
}


@dataclass(frozen=True)
class BinSchema:
    """Edges per feature, in the model's feature order."""

    features: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]  # one tuple per feature; empty = not binned

    def __post_init__(self) -> None:
        if len(self.features) != len(self.edges):
            raise ValueError("bin schema needs one edge list per feature")
        for name, edges in zip(self.features, self.edges, strict=True):
            if any(not math.isfinite(e) for e in edges) or list(edges) != sorted(set(edges)):
                raise ValueError(f"bin edges of {name} must be finite and strictly increasing")

    @classmethod
    def from_edges(
        cls, edges: Mapping[str, Sequence[float]], features: Sequence[str] = FEATURE_NAMES
    ) -> BinSchema:
        unknown = set(edges) - set(features)
        if unknown:
            raise ValueError(f"bin schema names unknown features: {', '.join(sorted(unknown))}")
        return cls(
            tuple(features), tuple(tuple(float(e) for e in edges.get(f, ())) for f in features)
        )

    @classmethod
    def default(cls) -> BinSchema:
        return cls.from_edges(DEFAULT_EDGES)

    @property
    def binned(self) -> tuple[int, ...]:
        """Indexes of the features that carry information in a cell."""
        return tuple(i for i, e in enumerate(self.edges) if e)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    def canonical(self) -> str:
        return json.dumps(
            {"features": list(self.features), "edges": [list(e) for e in self.edges]},
            separators=(",", ":"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "edges": [list(e) for e in self.edges],
            "sha256": self.hash,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BinSchema:
        schema = cls(
            tuple(str(f) for f in data["features"]),
            tuple(tuple(float(e) for e in edges) for edges in data["edges"]),
        )
        if "sha256" in data and data["sha256"] != schema.hash:
            raise ValueError("bin schema hash does not match its edges; the bundle is damaged")
        return schema

    def cell(self, row: Sequence[float]) -> tuple[int, ...]:
        """Codes of the binned features only: the key of an aggregate cell."""
        return tuple(_code(row[i], self.edges[i]) for i in self.binned)

    def transform(self, row: Sequence[float]) -> list[float]:
        """Full-width model input for a model trained on codes (unbinned features are 0)."""
        out = [0.0] * len(self.features)
        for i in self.binned:
            out[i] = float(_code(row[i], self.edges[i]))
        return out

    def expand(self, cell: Sequence[int]) -> list[float]:
        """A cell key back to full-width model input (what training from aggregates sees)."""
        out = [0.0] * len(self.features)
        for i, code in zip(self.binned, cell, strict=True):
            out[i] = float(code)
        return out

    def transform_matrix(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Vectorized `transform` for training and evaluation."""
        out = np.zeros_like(rows, dtype=np.float64)
        for i in self.binned:
            column = rows[:, i]
            codes = np.searchsorted(np.asarray(self.edges[i]), column, side="left")
            out[:, i] = np.where(np.isnan(column), MISSING_CODE, codes)
        return out

    def code_ranges(self) -> tuple[tuple[int, int], ...]:
        """(lowest, highest) code of each binned feature, for validating cells."""
        return tuple((MISSING_CODE, len(self.edges[i])) for i in self.binned)


def _code(value: float, edges: tuple[float, ...]) -> int:
    if value != value:  # NaN
        return MISSING_CODE
    return bisect_left(edges, value)
