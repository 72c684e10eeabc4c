"""`fraudscreen evaluate`: a bundle's handbook-protocol metrics beside the published ones."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import lightgbm

from fraudscreen.features.batch import compute_features
from fraudscreen.history import load_history
from fraudscreen.model.bundle import load_bundle
from fraudscreen.model.evaluate import (
    ProtocolPeriods,
    compute_metrics,
    evaluation_mask,
    format_comparison,
)


def evaluate_bundle(
    bundle_path: Path, history_path: Path, *, currency: str = "EUR", timezone: str = "UTC"
) -> str:
    """Score the week after the bundle's training week + delay; returns a printable report."""
    bundle = load_bundle(bundle_path)
    config = bundle.manifest.training.get("config", {})
    try:
        train_end = dt.date.fromisoformat(config["train_end"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"{bundle_path}: manifest has no training end date; it was not made by "
            "`fraudscreen train`, so the protocol's test week is unknown"
        ) from None
    periods = ProtocolPeriods.after_training(
        train_end,
        train_days=int(config.get("train_days", 7)),
        delay_days=int(config.get("delay_days", 7)),
        test_days=int(config.get("test_days", 7)),
    )
    frame = load_history(history_path, currency=currency)
    mask = evaluation_mask(frame, periods)
    if not mask.any():
        raise ValueError(
            f"{history_path} has no transactions in the test week {periods.test_start} .. "
            f"{periods.test_end}; use a history that covers it"
        )
    features = compute_features(frame, timezone=timezone)
    booster = lightgbm.Booster(model_str=bundle.model_text)
    metrics = compute_metrics(frame[mask], booster.predict(features[mask]))
    header = (
        f"model {bundle.model_version}: trained {periods.train_start} .. {train_end} "
        f"(exclusive), tested {periods.test_start} .. {periods.test_end} (exclusive); "
        f"{metrics.transactions:,} test transactions, {metrics.frauds:,} frauds, "
        "known-compromised cards removed\n\n"
    )
    return header + format_comparison([(f"fraudscreen ({bundle.model_version})", metrics)])
