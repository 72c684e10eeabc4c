"""The bin schema: the one transform shared by aggregation, training from aggregates, and
serving a model trained that way.

Each feature in the schema is cut at fixed edges into small integer codes
(code = number of edges strictly below the value, so bins are upper-inclusive); a missing
value gets code -1; features not in the schema get code 0 (they carry no information in
an aggregate). The schema is hashed: a batch names the hash it was binned with, and the
hub refuses batches for schemas it does not know.

The schema also says which binned features can be missing (`nullable`): only those get
the missing code -1 in a cell. Edges and nullable list together fix the *domain*, the set
of every possible cell, which is public (it follows from the schema alone); the
known-domain DP release noises every cell of it and selects nothing.

Schemas written before `nullable` existed (bundles, hub databases) carry no such field:
they are read as "every binned feature nullable", the safe reading (their domain holds
every cell they could ever have produced), and hash exactly as before: the canonical form
names `nullable` only when it differs from "every binned feature".
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fraudscreen.features.definitions import FEATURE_NAMES

MISSING_CODE = -1
Cell = tuple[int, ...]  # one bin code per binned feature: what aggregates are counted by

# Chosen from domain knowledge of what separates fraud in this simulator and at a till:
# amount bands (the handbook's > 220), delayed terminal risk, an amount unusual for the
# card, how the card was read, card velocity, night. Coarse on purpose: every cell of the
# domain carries noise in a known-domain release (fewer cells, less noise in the summed
# table), and a cell must hold many transactions to survive the threshold release.
DEFAULT_EDGES: dict[str, tuple[float, ...]] = {
    "TX_AMOUNT": (25.0, 60.0, 120.0, 220.0),
    "TX_DURING_NIGHT": (0.0,),
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW": (1.0, 3.0),
    "TERMINAL_ID_RISK_7DAY_WINDOW": (0.0, 0.2),
    "TERMINAL_ID_RISK_30DAY_WINDOW": (0.0, 0.2),
    "ENTRY_MODE": (2.0,),
    "CUSTOMER_ID_AMOUNT_RATIO_30DAY_WINDOW": (1.5, 3.0),
}
# Binned features that can be NaN in a serving row: only the entry mode (a till may not say
# how the card was read). Amounts, ratios, windows and risks are always computed
# (features/definitions.py: empty windows give 0 or a ratio of 1, never NaN).
DEFAULT_NULLABLE: tuple[str, ...] = ("ENTRY_MODE",)


@dataclass(frozen=True)
class BinSchema:
    """Edges per feature, in the model's feature order, and which binned ones can be missing.

    `nullable` names the binned features whose value can be missing (code -1). None (the
    default when constructing directly, and what a schema JSON without the field means)
    is the safe reading: every binned feature. It is normalised to the names in feature
    order, so equal schemas compare equal however they were written.
    """

    features: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]  # one tuple per feature; empty = not binned
    nullable: tuple[str, ...] | None = None  # binned features that can be missing
    # The deployed model whose scores a score-band schema bins (privacy.score_bands): a band
    # means something only for that model, so the version is part of the hash and the hub,
    # which sums per schema hash, never adds tables of two model versions. None: no score.
    model_version: str | None = None

    def __post_init__(self) -> None:
        if len(self.features) != len(self.edges):
            raise ValueError("bin schema needs one edge list per feature")
        if self.model_version is not None and not self.model_version:
            raise ValueError("bin schema model_version must be a non-empty string or None")
        for name, edges in zip(self.features, self.edges, strict=True):
            if any(not math.isfinite(e) for e in edges) or list(edges) != sorted(set(edges)):
                raise ValueError(f"bin edges of {name} must be finite and strictly increasing")
        binned_names = [self.features[i] for i in self.binned]
        if self.nullable is None:
            normalised = tuple(binned_names)
        else:
            if isinstance(self.nullable, str):
                raise ValueError("nullable must be a list of feature names, not one string")
            stray = sorted(set(self.nullable) - set(binned_names))
            if stray:
                raise ValueError(
                    f"nullable names features the schema does not bin: {', '.join(stray)}"
                )
            wanted = set(self.nullable)
            normalised = tuple(name for name in binned_names if name in wanted)
        object.__setattr__(self, "nullable", normalised)

    @classmethod
    def from_edges(
        cls,
        edges: Mapping[str, Sequence[float]],
        features: Sequence[str] = FEATURE_NAMES,
        nullable: Iterable[str] | None = None,
        model_version: str | None = None,
    ) -> BinSchema:
        unknown = set(edges) - set(features)
        if unknown:
            raise ValueError(f"bin schema names unknown features: {', '.join(sorted(unknown))}")
        if isinstance(nullable, str):
            raise ValueError("nullable must be a list of feature names, not one string")
        return cls(
            tuple(features),
            tuple(tuple(float(e) for e in edges.get(f, ())) for f in features),
            None if nullable is None else tuple(nullable),
            model_version,
        )

    @classmethod
    def default(cls) -> BinSchema:
        return cls.from_edges(DEFAULT_EDGES, nullable=DEFAULT_NULLABLE)

    @property
    def binned(self) -> tuple[int, ...]:
        """Indexes of the features that carry information in a cell."""
        return tuple(i for i, e in enumerate(self.edges) if e)

    @property
    def nullable_features(self) -> tuple[str, ...]:
        """Binned features that can be missing, in feature order."""
        assert self.nullable is not None  # normalised by __post_init__
        return self.nullable

    @property
    def all_nullable(self) -> bool:
        """True for the legacy reading: every binned feature can be missing."""
        return len(self.nullable_features) == len(self.binned)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    def canonical(self) -> str:
        """What the hash covers. `nullable` is named unless every binned feature is
        nullable, so schemas from before the field hash as they always did (and their
        stored sha256 still verifies) while any other nullable list changes the hash."""
        document: dict[str, Any] = {
            "features": list(self.features),
            "edges": [list(e) for e in self.edges],
        }
        if not self.all_nullable:
            document["nullable"] = list(self.nullable_features)
        if self.model_version is not None:
            document["model_version"] = self.model_version
        return json.dumps(document, separators=(",", ":"))

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "features": list(self.features),
            "edges": [list(e) for e in self.edges],
            "nullable": list(self.nullable_features),
        }
        if self.model_version is not None:
            document["model_version"] = self.model_version
        return document | {"sha256": self.hash}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BinSchema:
        """A schema from `to_json`; without "nullable" (older bundles and hubs) every
        binned feature is nullable, which is what those schemas always allowed."""
        nullable = data.get("nullable")
        if nullable is not None and (
            not isinstance(nullable, list) or not all(isinstance(n, str) for n in nullable)
        ):
            raise ValueError("bin schema nullable must be a list of feature names")
        version = data.get("model_version")
        if version is not None and not isinstance(version, str):
            raise ValueError("bin schema model_version must be a string")
        schema = cls(
            tuple(str(f) for f in data["features"]),
            tuple(tuple(float(e) for e in edges) for edges in data["edges"]),
            None if nullable is None else tuple(nullable),
            version,
        )
        if "sha256" in data and data["sha256"] != schema.hash:
            raise ValueError(
                "bin schema hash does not match its edges and nullable list; the bundle is damaged"
            )
        return schema

    def cell(self, row: Sequence[float]) -> Cell:
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
        """(lowest, highest) code of each binned feature, for validating cells: -1 (missing)
        only for nullable features."""
        nullable = set(self.nullable_features)
        return tuple(
            (MISSING_CODE if self.features[i] in nullable else 0, len(self.edges[i]))
            for i in self.binned
        )

    def domain_size(self) -> int:
        """Number of possible cells (without enumerating them)."""
        return math.prod(high - low + 1 for low, high in self.code_ranges())

    def domain(self) -> tuple[Cell, ...]:
        """Every possible cell, sorted: the product of each binned feature's codes
        0..len(edges), plus the missing code -1 for nullable features. Public: it follows
        from the schema alone, never from data."""
        return tuple(itertools.product(*(range(low, high + 1) for low, high in self.code_ranges())))


def _code(value: float, edges: tuple[float, ...]) -> int:
    if value != value:  # NaN
        return MISSING_CODE
    return bisect_left(edges, value)
