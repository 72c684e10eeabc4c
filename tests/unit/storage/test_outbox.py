"""Aggregation, the privacy ledger and the outbox: noised once, budgeted, durable."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from fraudscreen.binschema import BinSchema
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.gateway.uploader import batch_message
from fraudscreen.privacy.aggregate import (
    LabelledRow,
    Period,
    bound_contributions,
    due_periods,
    exact_table,
)
from fraudscreen.privacy.release import MECHANISMS, Mechanism, ReleaseParameters
from fraudscreen.storage.outbox import BudgetExhaustedError, PrivacyOutbox, batch_id
from fraudscreen.v1 import sync_pb2

DAY = 86_400
SCHEMA = BinSchema.default()
PARAMS = ReleaseParameters(epsilon=1.0, delta=1e-7, max_contributions=2)


def row(card: str, key: str, amount: float, fraud: bool = False) -> LabelledRow:
    features = [0.0] * len(FEATURE_NAMES)
    features[0] = amount
    return LabelledRow(card, key, tuple(features), fraud)


def test_contributions_are_bounded_per_card() -> None:
    rows = [row("a", f"a{i}", 10.0) for i in range(10)] + [row("b", "b0", 10.0)]
    kept = bound_contributions(rows, 3)
    assert sum(r.card_token == "a" for r in kept) == 3
    assert sum(r.card_token == "b" for r in kept) == 1
    # which transactions count depends on the card's own keys, not on arrival order
    reordered = bound_contributions(list(reversed(rows)), 3)
    assert {r.transaction_key for r in kept} == {r.transaction_key for r in reordered}


def test_a_weeks_table_bounds_each_card_per_day() -> None:
    """The privacy unit is a card's day: inside a 7-day period each card keeps m rows per
    day, so a regular customer's week is not cut to m rows."""
    rows = [
        LabelledRow("a", f"a{d}-{i}", row("a", "", 10.0).features, False, day=d)
        for d in range(7)
        for i in range(5)
    ]
    kept = bound_contributions(rows, 2)
    assert len(kept) == 14
    assert sorted({r.day for r in kept}) == list(range(7))
    assert exact_table(rows, SCHEMA, 2) == {SCHEMA.cell(rows[0].features): (14, 0)}


def test_exact_table_counts_cells_and_labels() -> None:
    rows = [row("a", "1", 10.0), row("b", "2", 12.0, fraud=True), row("c", "3", 300.0, True)]
    table = exact_table(rows, SCHEMA, 2)
    small = SCHEMA.cell(rows[0].features)
    large = SCHEMA.cell(rows[2].features)
    assert table == {small: (1, 1), large: (0, 1)}


def test_due_periods_wait_for_label_maturity() -> None:
    first = 10 * DAY + 3600
    periods = due_periods(first, 20 * DAY, period_days=1, maturity_days=7)
    assert [p.start // DAY for p in periods] == [10, 11, 12]
    assert all(p.end + 7 * DAY <= 20 * DAY for p in periods)
    assert Period.containing(first).name == "1970-01-11"


def _table() -> dict[tuple[int, ...], tuple[int, int]]:
    cell = SCHEMA.cell([10.0] + [0.0] * (len(FEATURE_NAMES) - 1))
    return {cell: (5_000, 40)}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_period_is_noised_once_and_resent_as_stored(tmp_path: Path, mechanism: Mechanism) -> None:
    outbox = PrivacyOutbox(tmp_path / "j.sqlite3", budget=10)
    period = Period(0, DAY)
    calls = []

    def exact() -> dict[tuple[int, ...], tuple[int, int]]:
        calls.append(1)
        return _table()

    first = outbox.release("site-1", period, SCHEMA, PARAMS, exact, mechanism=mechanism)
    again = outbox.release("site-1", period, SCHEMA, PARAMS, exact, mechanism=mechanism)
    assert first == batch_id("site-1", period.name, SCHEMA.hash, PARAMS, mechanism)
    assert again is None
    assert len(calls) == 1  # no second noising
    pending = outbox.pending()
    assert len(pending) == 1
    payload = pending[0].payload
    assert payload["epsilon"] == pytest.approx(1.0)
    assert payload["schema_hash"] == SCHEMA.hash
    assert payload["kind"] == mechanism
    cells = {tuple(codes): (total, fraud) for codes, total, fraud in payload["cells"]}
    [cell] = _table()
    total, fraud = cells[cell]
    assert abs(total - 5040) < 200  # noisy, around the truth
    assert abs(fraud - 40) < 200
    if mechanism == "known_domain":
        assert set(cells) == set(SCHEMA.domain())  # every cell, the busy one included
        assert payload["delta"] == 0.0
    else:
        assert list(cells) == [cell]
        assert 0 < payload["delta"] <= PARAMS.delta
    assert outbox.pending()[0].payload == payload  # the stored payload, byte for byte
    outbox.mark_failed(first, "UNAVAILABLE: hub down")
    assert outbox.status().last_error == "UNAVAILABLE: hub down"
    outbox.mark_sent(first)
    assert outbox.pending() == []
    assert outbox.status().sent == 1


def test_budget_refuses_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    outbox = PrivacyOutbox(path, budget=2.5)
    with sqlite3.connect(path) as conn:  # readers never block the gateway's writer
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    for day in range(2):
        assert outbox.release("s", Period(day * DAY, (day + 1) * DAY), SCHEMA, PARAMS, _table)
    with pytest.raises(BudgetExhaustedError, match=r"spent epsilon 2 of 2\.5"):
        outbox.release("s", Period(2 * DAY, 3 * DAY), SCHEMA, PARAMS, _table)
    reopened = PrivacyOutbox(path, budget=2.5)  # e.g. after a gateway restart
    assert reopened.status().spent == pytest.approx(2.0)
    with pytest.raises(BudgetExhaustedError):
        reopened.release("s", Period(2 * DAY, 3 * DAY), SCHEMA, PARAMS, _table)
    # ledger and outbox rows were written together: nothing half-released
    with sqlite3.connect(path) as conn:
        ledger = conn.execute("SELECT COUNT(*) FROM privacy_ledger").fetchone()[0]
        outbox_rows = conn.execute("SELECT COUNT(*) FROM sync_outbox").fetchone()[0]
    assert ledger == outbox_rows == 2


def test_a_week_is_charged_seven_days_and_noised_for_one(tmp_path: Path) -> None:
    """A 7-day table is noised for one card-day (epsilon per card and day) and the ledger
    charges 7 x epsilon, what seven daily tables would: the budget keeps its meaning."""
    outbox = PrivacyOutbox(tmp_path / "j.sqlite3", budget=10)
    week = Period(0, 7 * DAY)
    batch = outbox.release("site-1", week, SCHEMA, PARAMS, _table)
    assert batch is not None
    (entry,) = outbox.pending()
    assert entry.payload["epsilon"] == pytest.approx(1.0)
    assert entry.payload["period_days"] == 7
    assert outbox.status().spent == pytest.approx(7.0)
    with pytest.raises(BudgetExhaustedError, match="needs 7 more"):
        outbox.release("site-1", Period(7 * DAY, 14 * DAY), SCHEMA, PARAMS, _table)
    assert outbox.status().spent == pytest.approx(7.0)
    assert len(outbox.pending()) == 1


def test_payload_holds_only_codes_and_noisy_counts(tmp_path: Path) -> None:
    outbox = PrivacyOutbox(tmp_path / "j.sqlite3", budget=10)
    outbox.release("s", Period(0, DAY), SCHEMA, PARAMS, _table)
    payload = outbox.pending()[0].payload
    assert set(payload) == {
        "site_id",
        "batch_id",
        "period",
        "period_days",
        "schema_hash",
        "epsilon",
        "delta",
        "mechanism",
        "kind",
        "cells",
    }
    assert payload["kind"] == "known_domain"  # the default mechanism
    for codes, total, fraud in payload["cells"]:
        assert all(isinstance(c, int) and -1 <= c <= 4 for c in codes)
        assert isinstance(total, int)
        assert isinstance(fraud, int)
    assert not math.isnan(json.loads(json.dumps(payload))["epsilon"])


def test_batch_id_depends_on_the_mechanism() -> None:
    ids = {m: batch_id("s", "1970-01-01", SCHEMA.hash, PARAMS, m) for m in MECHANISMS}
    assert len(set(ids.values())) == len(MECHANISMS)
    assert batch_id("s", "1970-01-01", SCHEMA.hash, PARAMS) == ids["known_domain"]
    assert all(len(i) == 32 for i in ids.values())


def test_a_period_is_released_once_whatever_the_mechanism(tmp_path: Path) -> None:
    """Switching privacy.mechanism must not release (and spend on) a period again."""
    outbox = PrivacyOutbox(tmp_path / "j.sqlite3", budget=10)
    period = Period(0, DAY)
    assert outbox.release("s", period, SCHEMA, PARAMS, _table, mechanism="threshold")
    assert outbox.release("s", period, SCHEMA, PARAMS, _table, mechanism="known_domain") is None
    assert outbox.status().spent == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mechanism"):
        outbox.release("s", Period(DAY, 2 * DAY), SCHEMA, PARAMS, _table, mechanism="laplace")  # type: ignore[arg-type]
    assert outbox.status().periods == 1


def test_batch_message_carries_the_kind(tmp_path: Path) -> None:
    outbox = PrivacyOutbox(tmp_path / "j.sqlite3", budget=10)
    outbox.release("s", Period(0, DAY), SCHEMA, PARAMS, _table, mechanism="known_domain")
    outbox.release("s", Period(DAY, 2 * DAY), SCHEMA, PARAMS, _table, mechanism="threshold")
    known, threshold = (entry.payload for entry in outbox.pending())
    assert batch_message(known).kind == sync_pb2.RELEASE_KIND_KNOWN_DOMAIN
    assert len(batch_message(known).cells) == SCHEMA.domain_size()
    assert batch_message(threshold).kind == sync_pb2.RELEASE_KIND_THRESHOLD
    older = {k: v for k, v in threshold.items() if k != "kind"}  # stored before "kind"
    assert batch_message(older).kind == sync_pb2.RELEASE_KIND_THRESHOLD
    with pytest.raises(ValueError, match="release kind"):
        batch_message({**known, "kind": "other"})
