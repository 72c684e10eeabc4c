"""Score drift of the fleet per period: PSI of the deployed model's score-band distribution
in the released (DP) score-band tables against the bands' training reference.

Apart from feature drift (hub.drift) because a band means something only for the model
whose scores it bins: score drift is per deployed model version (one score-band schema
each), and its reference is not a period of hub data but the model's own training rows,
the share of them in each band, stored in the manifest when training built the schema
(training.score_band_reference). For a version the hub holds no such manifest for (never
published through this hub, or trained before the reference was stored), the schema's
edges alone imply nominal shares (score_bands.nominal_band_shares); the page says which.

A period's band distribution sums the noisy totals of every cell per band (over the other
dimensions and every site), then clamps at zero, as hub.drift does for features.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.hub.drift import RETRAIN_PSI, marginals, psi
from fraudscreen.hub.storage import CellSum, HubStore
from fraudscreen.model.bundle import MANIFEST_FILE
from fraudscreen.score_bands import DEPLOYED_SCORE, nominal_band_shares, reads_score

REFERENCE_KEY = "score_band_reference"  # in a manifest's "training"


@dataclass(frozen=True)
class ScoreReference:
    shares: tuple[float, ...]  # per band code 0..bands-1, summing to 1
    source: str  # where the shares come from, said on the page


@dataclass(frozen=True)
class ScoreDrift:
    """One deployed model version's score drift: PSI per period against `reference`."""

    model_version: str
    schema_hash: str
    periods: tuple[str, ...]
    shares: tuple[tuple[float, ...], ...]  # [period][band], clamped noisy shares
    totals: tuple[float, ...]  # clamped noisy transactions per period
    values: tuple[float, ...]  # PSI per period; NaN: no reference, or nothing after noise
    reference: ScoreReference | None

    def suggests_retraining(self, period_index: int) -> bool:
        value = self.values[period_index]
        return math.isfinite(value) and value > RETRAIN_PSI


def bands(schema: BinSchema) -> int:
    """Number of score bands of a score-band schema (its edges + 1)."""
    return len(schema.edges[schema.features.index(DEPLOYED_SCORE)]) + 1


def band_totals(schema: BinSchema, table: Mapping[Cell, CellSum]) -> dict[int, float]:
    """Clamped noisy transactions per band: the band is the cell's last code."""
    return marginals(table, len(schema.binned))[-1]


def reference_from_manifest(
    schema: BinSchema, manifest: Mapping[str, Any] | None
) -> ScoreReference | None:
    """The stored training shares of `schema`'s bands, or else the nominal shares its edges
    imply; None when neither is known."""
    stored = ((manifest or {}).get("training") or {}).get(REFERENCE_KEY) or {}
    shares = stored.get("shares")
    if (
        stored.get("bin_schema_sha256") == schema.hash
        and isinstance(shares, list)
        and len(shares) == bands(schema)
    ):
        return ScoreReference(
            tuple(float(s) for s in shares),
            f"the share of {schema.model_version}'s {stored.get('rows', '?')} training rows "
            "in each band (stored in its manifest)",
        )
    nominal = nominal_band_shares(schema.edges[schema.features.index(DEPLOYED_SCORE)])
    if nominal is None:
        return None
    why = "its manifest stores none" if manifest else "this hub holds no release of it"
    return ScoreReference(
        nominal,
        f"nominal shares: the band edges are quantiles of {schema.model_version}'s training "
        f"scores ({why})",
    )


def score_drift(
    schema: BinSchema,
    tables: Mapping[str, Mapping[Cell, CellSum]],
    reference: ScoreReference | None,
) -> ScoreDrift:
    """PSI of each period's score-band distribution against `reference`."""
    periods = tuple(sorted(tables))
    count = bands(schema)
    totals_per_period = [band_totals(schema, tables[p]) for p in periods]
    sums = tuple(sum(t.values()) for t in totals_per_period)
    shares = tuple(
        tuple(t.get(b, 0.0) / total if total > 0 else 0.0 for b in range(count))
        for t, total in zip(totals_per_period, sums, strict=True)
    )
    expected = {b: s for b, s in enumerate(reference.shares)} if reference else None
    values = tuple(
        psi(t, expected) if expected is not None else float("nan") for t in totals_per_period
    )
    return ScoreDrift(
        schema.model_version or "", schema.hash, periods, shares, sums, values, reference
    )


def fleet_score_drift(store: HubStore) -> list[ScoreDrift]:
    """Score drift of every deployed model version whose score-band tables the hub holds,
    oldest first; each against the reference in the manifest of its release."""
    drifts = []
    for schema in store.schemas():
        if not reads_score(schema) or schema.model_version is None:
            continue
        tables = store.period_tables(schema.hash)
        if not tables:
            continue
        raw = store.release_file(schema.model_version, MANIFEST_FILE)
        manifest = json.loads(raw) if raw is not None else None
        drifts.append(score_drift(schema, tables, reference_from_manifest(schema, manifest)))
    return sorted(drifts, key=lambda d: (d.periods[0], d.model_version))
