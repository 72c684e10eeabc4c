"""The summed table for analysts: one row per cell, codes named after the binned features.

Counts are sums of DP-noised counts across all sites and periods of one bin schema.
noisy_fraud may be negative, and so may its sum in a sparse cell: clamp to
[0, noisy_total] after summing (never per batch, which would bias it upwards).
A JSON sidecar carries the schema so the table can be read without the bundle.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fraudscreen.binschema import MISSING_CODE
from fraudscreen.hub.storage import HubStore

COUNT_COLUMNS = ("noisy_total", "noisy_fraud", "batches")


@dataclass(frozen=True)
class ExportSummary:
    table: Path
    sidecar: Path
    cells: int
    batches: int
    sites: int


def sidecar_path(out: Path) -> Path:
    return out.with_suffix(".schema.json")


def export_table(store: HubStore, schema_hash: str, out: Path) -> ExportSummary:
    """Write the summed table (.csv or .parquet) and its `.schema.json` sidecar."""
    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise ValueError(f"{out}: the export file must end in .csv or .parquet")
    schema = store.schema(schema_hash)
    if schema is None:
        raise ValueError(
            f"the hub database knows no bin schema {schema_hash}; `fraudscreen hub status` "
            "lists the schema hashes of the stored batches"
        )
    names = [schema.features[i] for i in schema.binned]
    table = store.summed_table(schema_hash)
    rows = [[*cell, s.total, s.fraud, s.batches] for cell, s in table.items()]
    frame = pd.DataFrame(rows, columns=[*names, *COUNT_COLUMNS], dtype="int64")
    batches = store.batches(schema_hash)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    periods = sorted({b.period for b in batches})
    sidecar = {
        "schema_hash": schema_hash,
        "bin_schema": schema.to_json(),
        "binned_features": names,
        "code_ranges": {n: list(r) for n, r in zip(names, schema.code_ranges(), strict=True)},
        "missing_code": MISSING_CODE,
        "columns": list(frame.columns),
        "cells": len(frame),
        "batches": len(batches),
        "sites": len({b.site_id for b in batches}),
        "periods": {"first": periods[0], "last": periods[-1]} if periods else None,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "note": (
            "noisy_total and noisy_fraud are sums of differentially private counts over "
            "`batches` batches; noisy_fraud may be negative: clamp to [0, noisy_total] after "
            "summing, never per batch"
        ),
    }
    side = sidecar_path(out)
    side.write_text(json.dumps(sidecar, indent=2) + "\n")
    return ExportSummary(out, side, len(frame), len(batches), len({b.site_id for b in batches}))
