"""What a hub store holds, built for tests: a stored batch and a gateway state with
defaults, and cell keys of the default bin schema (shared by the store tests on both
backends, the SQLite-only unit tests and the fleet report test)."""

from __future__ import annotations

from fraudscreen.binschema import BinSchema
from fraudscreen.hub.fleet import GatewayState
from fraudscreen.hub.storage import StoredBatch

SCHEMA = BinSchema.default()
WIDTH = len(SCHEMA.binned)


def codes(*head: int) -> tuple[int, ...]:
    return (*head, *([0] * (WIDTH - len(head))))


def batch(
    site: str = "s", batch_id: str = "a" * 32, period: str = "2018-04-01", **kw: object
) -> StoredBatch:
    values: dict[str, object] = {
        "site_id": site,
        "batch_id": batch_id,
        "period": period,
        "period_days": 1,
        "schema_hash": SCHEMA.hash,
        "epsilon": 1.0,
        "delta": 1e-7,
        "mechanism": "m",
        "cells": ((codes(0), 10, 1), (codes(3, 1), 5, -2)),
    }
    values.update(kw)
    return StoredBatch(**values)  # type: ignore[arg-type]


def state(**kw: object) -> GatewayState:
    values: dict[str, object] = {
        "model_version": "v1",
        "predictor": "native",
        "stand_in": False,
        "last_update_result": "installed",
        "last_update_at": 1000.0,
        "pending_batches": 0,
        "epsilon_spent": 1.0,
        "epsilon_budget": 30.0,
        "software_version": "0.1.0",
    }
    values.update(kw)
    return GatewayState(**values)  # type: ignore[arg-type]
