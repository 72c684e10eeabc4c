"""`fraudscreen train --from-hub`: a model from the fleet's summed DP tables, with a report.

The analyst exports the hub's summed table (`fraudscreen hub export`), and this trains
LightGBM on it as weighted rows, keeps a binomially thinned share of every cell aside to
choose thresholds and to evaluate, writes a bundle that reads bin codes (it carries its
bin schema), and writes an HTML report next to it comparing the new model with the one
currently released: on the held-out table, and on a labelled history if one is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd

from fraudscreen import history as hist
from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.features.batch import compute_features
from fraudscreen.model.bundle import Bundle, Manifest, load_bundle
from fraudscreen.model.report_html import ScoredSet, write_report
from fraudscreen.model.stacked import TIE_BREAK, correction_config, score_rows
from fraudscreen.model.train_aggregates import (
    AggregateTrainingConfig,
    WeightedRows,
    clamp_counts,
    train_from_table,
    weighted_rows,
    write_aggregate_bundle,
)
from fraudscreen.score_bands import reads_score, with_scores

Table = dict[Cell, tuple[int, int]]


@dataclass(frozen=True)
class RetrainResult:
    manifest: Manifest
    report: Path
    holdout: ScoredSet


def read_export(path: Path) -> tuple[Table, BinSchema]:
    """The hub's export (csv/parquet + .schema.json sidecar) as cell -> (total, fraud)."""
    path = Path(path)
    sidecar = path.with_suffix(".schema.json")
    if not sidecar.is_file():
        raise ValueError(
            f"{sidecar} is missing: export with `fraudscreen hub export`, which "
            "writes the table and its schema sidecar together"
        )
    schema = BinSchema.from_json(json.loads(sidecar.read_text())["bin_schema"])
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    names = [schema.features[i] for i in schema.binned]
    missing = [c for c in (*names, "noisy_total", "noisy_fraud") if c not in frame]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; it is not a hub export")
    codes = frame[names].to_numpy(dtype=np.int64)
    totals = frame["noisy_total"].to_numpy(dtype=np.int64)
    frauds = frame["noisy_fraud"].to_numpy(dtype=np.int64)
    table = {
        tuple(int(c) for c in row): (int(t), int(f))
        for row, t, f in zip(codes, totals, frauds, strict=True)
    }
    return table, schema


def thin(table: Table, share: float, seed: int) -> tuple[Table, Table]:
    """Split every cell's (clamped) counts binomially: (training, held out) tables.

    Binomial thinning keeps both parts distributed like the whole, so the held-out part is
    a fair, independent-looking validation set without any raw rows.
    """
    rng = np.random.default_rng(seed)
    training: Table = {}
    held_out: Table = {}
    for cell, (total, fraud) in table.items():
        genuine, fraud = clamp_counts(total, fraud)
        keep_g = int(rng.binomial(genuine, 1 - share))
        keep_f = int(rng.binomial(fraud, 1 - share))
        training[cell] = (keep_g + keep_f, keep_f)
        held_out[cell] = (genuine - keep_g + fraud - keep_f, fraud - keep_f)
    return training, held_out


def _table_set(booster: lightgbm.Booster, rows: WeightedRows, name: str) -> ScoredSet:
    return ScoredSet(name, rows.labels, np.asarray(booster.predict(rows.rows)), rows.weights)


def _history_sets(
    history_path: Path,
    new: lightgbm.Booster,
    schema: BinSchema,
    current: tuple[Bundle, lightgbm.Booster] | None,
    eval_days: int,
) -> tuple[str, list[ScoredSet]]:
    frame = hist.load_history(history_path)
    features = compute_features(frame)
    last_day = frame[hist.TX_DATETIME].max().normalize()
    mask = (frame[hist.TX_DATETIME] >= last_day - pd.Timedelta(days=eval_days - 1)).to_numpy()
    labels = frame[hist.TX_FRAUD].to_numpy(dtype=np.int8)[mask]
    rows = features[mask]
    sets = [
        ScoredSet(
            "new (trained on DP aggregates)",
            labels,
            np.asarray(new.predict(schema.transform_matrix(rows))),
        )
    ]
    if current is not None:
        bundle, booster = current
        current_schema = bundle.input_schema
        current_rows = current_schema.transform_matrix(rows) if current_schema is not None else rows
        sets.append(
            ScoredSet(
                f"current ({bundle.model_version})",
                labels,
                np.asarray(booster.predict(current_rows)),
            )
        )
    first = (last_day - pd.Timedelta(days=eval_days - 1)).date()
    return f"History {history_path.name}: last {eval_days} days from {first}", sets


def _base_of(export: Path, schema: BinSchema, current: Bundle | None) -> Bundle | None:
    """For a score-band export: the deployed bundle it bands (given as --current, and it
    must be exactly that model and schema); None for a feature-bin export."""
    if not reads_score(schema):
        return None
    if current is None:
        raise ValueError(
            f"{export} holds score-band tables of {schema.model_version}: give that model's "
            "bundle as --current (the correction is served on top of it)"
        )
    if current.model_version != schema.model_version or current.bin_schema != schema:
        raise ValueError(
            f"{export} bands the scores of {schema.model_version} (schema "
            f"{schema.hash[:12]}), but --current is {current.model_version}; give the "
            "bundle the gateways ran when they released these tables"
        )
    return current


def _correction_notes(manifest: Manifest, base: Bundle, table: Table, holdout: float) -> list[str]:
    return [
        f"New model {manifest.model_version}: a stacked correction of {base.model_version} "
        f"(LightGBM over score band x bins, monotone in the band; served score = "
        f"{1 - TIE_BREAK:g} x correction + {TIE_BREAK:g} x deployed score). {len(table):,} "
        f"cells, held-out share {holdout:.0%} (binomial thinning of every cell).",
        f"Thresholds review >= {manifest.thresholds.review:.4f}, decline >= "
        f"{manifest.thresholds.decline:.4f}, chosen on the held-out cells' correction scores "
        f"(the table has no raw deployed score; the tie-break moves a score by at most "
        f"{TIE_BREAK:g}).",
        "On the held-out table the current model is not shown: within a cell it sees only the "
        "band, so it is compared on a labelled history (--history).",
    ]


def _stacked_history_sets(
    history_path: Path,
    base: lightgbm.Booster,
    correction: lightgbm.Booster,
    schema: BinSchema,
    base_version: str,
    eval_days: int,
) -> list[tuple[str, list[ScoredSet]]]:
    """The correction (scored by the batch path, as the gateway scores it online) against
    the current model on the history's last days, and on the days of scenario 4 (the
    card-testing drift) when the history has it."""
    frame = hist.load_history(history_path)
    features = compute_features(frame)
    labels = frame[hist.TX_FRAUD].to_numpy(dtype=np.int8)
    deployed = np.asarray(base.predict(features, num_threads=1), dtype=np.float64)
    served = score_rows(correction, schema, with_scores(features, deployed))
    times = frame[hist.TX_DATETIME]
    last_day = times.max().normalize()
    first = last_day - pd.Timedelta(days=eval_days - 1)
    windows = [
        (
            f"History {history_path.name}: last {eval_days} days from {first.date()}",
            (times >= first).to_numpy(),
        )
    ]
    if hist.TX_FRAUD_SCENARIO in frame:
        drift = frame[hist.TX_FRAUD_SCENARIO].to_numpy() == 4
        if drift.any():
            start = times[drift].min().normalize()
            windows.append(
                (
                    f"History {history_path.name}: drift weeks (scenario 4 from {start.date()})",
                    (times >= start).to_numpy(),
                )
            )
    return [
        (
            title,
            [
                ScoredSet("correction (served score)", labels[mask], served[mask]),
                ScoredSet(f"current ({base_version})", labels[mask], deployed[mask]),
            ],
        )
        for title, mask in windows
    ]


def retrain_from_export(
    export: Path,
    out_dir: Path,
    *,
    name: str = "fraudscreen-dp",
    holdout: float = 0.2,
    seed: int = 0,
    current: Path | None = None,
    history: Path | None = None,
    eval_days: int = 7,
    config: AggregateTrainingConfig | None = None,
) -> RetrainResult:
    if not 0 < holdout < 1:
        raise ValueError(f"--holdout must be between 0 and 1, got {holdout}")
    table, schema = read_export(export)
    current_model: tuple[Bundle, lightgbm.Booster] | None = None
    if current is not None:
        current_bundle = load_bundle(current)
        current_model = (current_bundle, lightgbm.Booster(model_str=current_bundle.model_text))
    base = _base_of(export, schema, current_model[0] if current_model else None)
    if base is not None:
        config = correction_config(schema, config)
    training, held_out = thin(table, holdout, seed)
    booster = train_from_table(training, schema, config)
    manifest = write_aggregate_bundle(
        out_dir,
        booster,
        training,
        schema,
        validation_table=held_out,
        config=config,
        name=name,
        trained_on=f"hub export {export.name}",
        source=[export.name],
        base=base,
    )
    if base is not None:
        notes_ = _correction_notes(manifest, base, table, holdout)
        stacked_sections = [
            (
                "Held-out share of the hub's table (weighted by counts)",
                [_table_set(booster, weighted_rows(held_out, schema), "correction (band codes)")],
            )
        ]
        holdout_set = stacked_sections[0][1][0]
        if history is not None and current_model is not None:
            stacked_sections += _stacked_history_sets(
                history, current_model[1], booster, schema, base.model_version, eval_days
            )
        report = write_report(
            out_dir.parent / f"{out_dir.name}.report.html",
            f"fraudscreen model report: {manifest.model_version}",
            stacked_sections,
            notes_,
        )
        return RetrainResult(manifest, report, holdout_set)
    held_out_rows = weighted_rows(held_out, schema)  # scored by both models below
    holdout_set = _table_set(booster, held_out_rows, "new (trained on DP aggregates)")
    sections: list[tuple[str, list[ScoredSet]]] = []
    table_sets = [holdout_set]
    notes = [
        f"New model {manifest.model_version}: {len(table):,} cells, held-out share "
        f"{holdout:.0%} (binomial thinning of every cell); thresholds review >= "
        f"{manifest.thresholds.review:.4f}, decline >= {manifest.thresholds.decline:.4f}.",
    ]
    if current_model is not None:
        old_bundle, old = current_model
        if old_bundle.reads_bin_codes and old_bundle.bin_schema == schema:
            label = f"current ({old_bundle.model_version})"
            table_sets.append(_table_set(old, held_out_rows, label))
        else:
            notes.append(
                f"The current model {old_bundle.model_version} reads raw features, "
                "so it is compared on a labelled history only (--history)."
            )
    sections.append(("Held-out share of the hub's table (weighted by counts)", table_sets))
    if history is not None:
        sections.append(_history_sets(history, booster, schema, current_model, eval_days))
    report = write_report(
        out_dir.parent / f"{out_dir.name}.report.html",
        f"fraudscreen model report: {manifest.model_version}",
        sections,
        notes,
    )
    return RetrainResult(manifest, report, holdout_set)
