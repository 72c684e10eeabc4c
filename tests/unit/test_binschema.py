"""The bin schema: nullable features, the public domain, JSON round trip and hash."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest

from fraudscreen.binschema import DEFAULT_EDGES, MISSING_CODE, BinSchema
from fraudscreen.features.batch import compute_features
from fraudscreen.features.definitions import FEATURE_NAMES

SCHEMA = BinSchema.default()


def _legacy_json(schema: BinSchema) -> dict[str, object]:
    """A schema as bundles and hubs wrote it before `nullable` existed."""
    document = {"features": list(schema.features), "edges": [list(e) for e in schema.edges]}
    digest = hashlib.sha256(json.dumps(document, separators=(",", ":")).encode()).hexdigest()
    return {**document, "sha256": digest}


def test_default_schema_domain() -> None:
    assert SCHEMA.nullable == ("ENTRY_MODE",)
    assert not SCHEMA.all_nullable
    domain = SCHEMA.domain()
    assert len(domain) == SCHEMA.domain_size() == 2430  # 5 * 2 * 3 * 3 * 3 * (2 + 1) * 3
    assert list(domain) == sorted(set(domain))
    names = [SCHEMA.features[i] for i in SCHEMA.binned]
    entry = names.index("ENTRY_MODE")
    for position, (low, high) in enumerate(SCHEMA.code_ranges()):
        codes = {cell[position] for cell in domain}
        assert codes == set(range(low, high + 1))
        assert (MISSING_CODE in codes) == (position == entry)
    assert SCHEMA.code_ranges()[names.index("TX_AMOUNT")] == (0, 4)


def test_legacy_schema_reads_as_every_feature_nullable_and_keeps_its_hash() -> None:
    legacy = _legacy_json(SCHEMA)
    schema = BinSchema.from_json(legacy)
    assert schema.all_nullable
    assert schema.nullable == tuple(SCHEMA.features[i] for i in SCHEMA.binned)
    assert schema.hash == legacy["sha256"]  # old bundles still verify
    assert schema.domain_size() == math.prod(len(e) + 2 for e in DEFAULT_EDGES.values())
    assert schema.domain_size() == 13_824
    assert schema != SCHEMA and schema.hash != SCHEMA.hash
    assert BinSchema(SCHEMA.features, SCHEMA.edges) == schema  # the constructor's default
    # written back, it names its nullable list and still hashes the same
    again = schema.to_json()
    assert again["nullable"] == list(schema.nullable or ())
    assert BinSchema.from_json(again) == schema and again["sha256"] == legacy["sha256"]


def test_json_round_trip_and_the_hash_covers_nullable() -> None:
    data = SCHEMA.to_json()
    assert data["nullable"] == ["ENTRY_MODE"]
    assert BinSchema.from_json(json.loads(json.dumps(data))) == SCHEMA
    none = BinSchema.from_edges(DEFAULT_EDGES, nullable=())
    hashes = {SCHEMA.hash, none.hash, BinSchema.from_edges(DEFAULT_EDGES).hash}
    assert len(hashes) == 3
    assert none.domain_size() == 1620
    tampered = {**data, "nullable": []}
    with pytest.raises(ValueError, match="damaged"):
        BinSchema.from_json(tampered)
    dropped = {k: v for k, v in data.items() if k != "nullable"}  # would widen the domain
    with pytest.raises(ValueError, match="damaged"):
        BinSchema.from_json(dropped)
    # order and repeats of the list do not matter
    shuffled = BinSchema.from_edges(
        DEFAULT_EDGES, nullable=["TX_AMOUNT", "ENTRY_MODE", "TX_AMOUNT"]
    )
    assert shuffled.nullable == ("TX_AMOUNT", "ENTRY_MODE")


@pytest.mark.parametrize(
    ("nullable", "match"),
    [
        (("TX_DURING_WEEKEND",), "does not bin"),
        (("NO_SUCH_FEATURE",), "does not bin"),
        ("ENTRY_MODE", "not one string"),
    ],
)
def test_nullable_must_name_binned_features(nullable: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BinSchema.from_edges(DEFAULT_EDGES, nullable=nullable)  # type: ignore[arg-type]
    unsigned = {k: v for k, v in SCHEMA.to_json().items() if k != "sha256"}
    with pytest.raises(ValueError, match="nullable"):
        BinSchema.from_json({**unsigned, "nullable": nullable})


def test_every_cell_of_real_feature_rows_is_in_the_default_domain(
    small_history: pd.DataFrame,
) -> None:
    """The claim behind DEFAULT_NULLABLE: only the entry mode is ever missing."""
    features = compute_features(small_history)
    missing = np.isnan(features).any(axis=0)
    assert {FEATURE_NAMES[i] for i in np.flatnonzero(missing)} <= set(SCHEMA.nullable or ())
    domain = set(SCHEMA.domain())
    codes = SCHEMA.transform_matrix(features)[:, list(SCHEMA.binned)].astype(int)
    assert {tuple(row) for row in codes.tolist()} <= domain
    nan_entry = features.copy()
    nan_entry[:, FEATURE_NAMES.index("ENTRY_MODE")] = np.nan
    assert SCHEMA.cell(nan_entry[0].tolist()) in domain
