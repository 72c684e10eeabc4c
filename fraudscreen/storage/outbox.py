"""Privacy ledger and sync outbox, in the gateway's SQLite file.

A period is noised exactly once: the noisy table, the epsilon it spent and the outbox row
that will carry it to the hub are written in ONE SQLite transaction, after checking the
site's budget. Retries resend the stored payload; they never draw fresh noise. Batch ids
are deterministic (site, period, schema, mechanism and its parameters), so the hub can
upsert on them. The ledger is keyed on (period, schema): switching `privacy.mechanism`
never releases an already released period a second time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fraudscreen.binschema import BinSchema, Cell
from fraudscreen.privacy.aggregate import Period
from fraudscreen.privacy.composition import release_composed, share
from fraudscreen.privacy.release import (
    MECHANISMS,
    Mechanism,
    NoisyTable,
    ReleaseParameters,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS privacy_ledger (
    seq INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    period TEXT NOT NULL,
    schema_hash TEXT NOT NULL,
    epsilon REAL NOT NULL,
    delta REAL NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (period, schema_hash)
);
CREATE TABLE IF NOT EXISTS sync_outbox (
    batch_id TEXT PRIMARY KEY,
    period TEXT NOT NULL,
    schema_hash TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_at REAL,
    last_error TEXT,
    sent_at REAL
);
"""


class BudgetExhaustedError(RuntimeError):
    """Releasing would spend more epsilon than the site's budget allows."""


@dataclass(frozen=True)
class OutboxEntry:
    batch_id: str
    period: str
    payload: dict[str, Any]
    attempts: int
    last_error: str | None
    sent_at: float | None


@dataclass(frozen=True)
class LedgerStatus:
    spent: float
    budget: float
    periods: int
    pending: int
    sent: int
    last_error: str | None
    oldest_pending_period: str | None


def batch_id(
    site_id: str,
    period: str,
    schema_hash: str,
    params: ReleaseParameters,
    mechanism: Mechanism = "known_domain",
) -> str:
    parts = [
        site_id,
        period,
        schema_hash,
        repr(params.epsilon),
        repr(params.delta),
        str(params.max_contributions),
        mechanism,
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def encode_payload(
    site_id: str, batch: str, period: Period, schema: BinSchema, table: NoisyTable
) -> dict[str, Any]:
    """The batch as it will cross the wire: codes and noisy counts, nothing else.

    "kind" names the release ("known_domain" or "threshold"); payloads stored before it
    existed have none and were thresholded (`gateway.uploader.batch_message`).
    """
    return {
        "site_id": site_id,
        "batch_id": batch,
        "period": period.name,
        "period_days": period.days,
        "schema_hash": schema.hash,
        "epsilon": table.epsilon,
        "delta": table.delta,
        "mechanism": table.mechanism,
        "kind": table.kind,
        "cells": [
            [list(cell), total, fraud] for cell, (total, fraud) in sorted(table.cells.items())
        ],
    }


class PrivacyOutbox:
    """Ledger + outbox tables; one short-lived connection per operation."""

    def __init__(self, path: Path, *, budget: float) -> None:
        self.path = Path(path)
        self.budget = budget
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # stored in the file: once is enough
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            yield conn
        finally:
            conn.close()

    def released(self, period: str, schema_hash: str) -> bool:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM privacy_ledger WHERE period = ? AND schema_hash = ?",
                (period, schema_hash),
            ).fetchone()
        return row is not None

    def release(
        self,
        site_id: str,
        period: Period,
        schema: BinSchema,
        params: ReleaseParameters,
        exact: Callable[[], dict[Cell, tuple[int, int]]],
        mechanism: Mechanism = "known_domain",
    ) -> str | None:
        """Noise and store one period, once, with `mechanism` (`privacy.mechanism`).
        Returns the batch id, or None if the period was already released (with whichever
        mechanism). Raises BudgetExhaustedError past the budget."""
        released = self.release_many(site_id, period, [(schema, exact)], params, mechanism)
        return released[0] if released else None

    def release_many(
        self,
        site_id: str,
        period: Period,
        parts: Sequence[tuple[BinSchema, Callable[[], dict[Cell, tuple[int, int]]]]],
        params: ReleaseParameters,
        mechanism: Mechanism = "known_domain",
    ) -> list[str]:
        """Noise and store several tables of one period inside its one epsilon
        (`privacy.composition`): each of the k tables gets epsilon / k, the ledger gets one
        row per table (their sum is the period's spend), all in ONE SQLite transaction after
        the budget check. Tables already released for the period are skipped (they were
        charged their share then). `params.epsilon` is per card and day (the privacy unit):
        a period of d days is charged d times it, what d daily tables would cost. Returns
        the new batch ids."""
        if mechanism not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {', '.join(MECHANISMS)}, got {mechanism!r}")
        hashes = [schema.hash for schema, _ in parts]
        if not parts or len(set(hashes)) != len(hashes):
            raise ValueError("a period's tables need distinct bin schemas (one table each)")
        each = share(params, len(parts))
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                todo = [
                    (schema, exact)
                    for schema, exact in parts
                    if not conn.execute(
                        "SELECT 1 FROM privacy_ledger WHERE period = ? AND schema_hash = ?",
                        (period.name, schema.hash),
                    ).fetchone()
                ]
                if not todo:
                    conn.execute("ROLLBACK")
                    return []
                spent = conn.execute(
                    "SELECT COALESCE(SUM(epsilon), 0) FROM privacy_ledger"
                ).fetchone()[0]
                needed = each.epsilon * len(todo) * period.days
                if spent + needed > self.budget + 1e-12:
                    raise BudgetExhaustedError(
                        f"privacy budget exhausted: spent epsilon {spent:g} of {self.budget:g}; "
                        f"releasing {period.name} needs {needed:g} more. Nothing more "
                        "leaves this site until an operator raises privacy.epsilon_budget "
                        "(a deliberate decision: see README, Privacy)"
                    )
                tables = release_composed(
                    mechanism,
                    [(exact(), schema) for schema, exact in todo],
                    ReleaseParameters(
                        each.epsilon * len(todo), each.delta * len(todo), params.max_contributions
                    ),
                )
                now = time.time()
                batches = []
                for (schema, _), table in zip(todo, tables, strict=True):
                    batch = batch_id(site_id, period.name, schema.hash, params, mechanism)
                    payload = encode_payload(site_id, batch, period, schema, table)
                    conn.execute(
                        "INSERT INTO privacy_ledger (batch_id, period, schema_hash, epsilon,"
                        " delta, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            batch,
                            period.name,
                            schema.hash,
                            table.epsilon * period.days,
                            table.delta,
                            now,
                        ),
                    )
                    conn.execute(
                        "INSERT INTO sync_outbox (batch_id, period, schema_hash, payload,"
                        " created_at) VALUES (?, ?, ?, ?, ?)",
                        (batch, period.name, schema.hash, json.dumps(payload), now),
                    )
                    batches.append(batch)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return batches

    def pending(self, limit: int = 100) -> list[OutboxEntry]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT batch_id, period, payload, attempts, last_error, sent_at FROM sync_outbox"
                " WHERE sent_at IS NULL ORDER BY period, batch_id LIMIT ?",
                (limit,),
            ).fetchall()
        return [OutboxEntry(b, p, json.loads(pl), a, e, s) for b, p, pl, a, e, s in rows]

    def mark_sent(self, batch: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE sync_outbox SET sent_at = ?, attempts = attempts + 1, last_error = NULL,"
                " last_attempt_at = ? WHERE batch_id = ?",
                (time.time(), time.time(), batch),
            )

    def mark_failed(self, batch: str, error: str) -> None:
        with self._connect() as conn:
            conn.execute(
                "UPDATE sync_outbox SET attempts = attempts + 1, last_error = ?,"
                " last_attempt_at = ? WHERE batch_id = ?",
                (error[:500], time.time(), batch),
            )

    def status(self) -> LedgerStatus:
        with self._connect() as conn:
            spent, periods = conn.execute(
                "SELECT COALESCE(SUM(epsilon), 0), COUNT(*) FROM privacy_ledger"
            ).fetchone()
            pending, sent = conn.execute(
                "SELECT COALESCE(SUM(sent_at IS NULL), 0), COALESCE(SUM(sent_at IS NOT NULL), 0)"
                " FROM sync_outbox"
            ).fetchone()
            error_row = conn.execute(
                "SELECT last_error FROM sync_outbox WHERE sent_at IS NULL AND last_error IS NOT"
                " NULL ORDER BY last_attempt_at DESC LIMIT 1"
            ).fetchone()
            oldest = conn.execute(
                "SELECT MIN(period) FROM sync_outbox WHERE sent_at IS NULL"
            ).fetchone()[0]
        return LedgerStatus(
            spent=float(spent),
            budget=self.budget,
            periods=int(periods),
            pending=int(pending),
            sent=int(sent),
            last_error=error_row[0] if error_row else None,
            oldest_pending_period=oldest,
        )
