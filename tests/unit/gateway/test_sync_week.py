"""The sync agent's table of a 7-day period, from a real journal: each card bounded per day
(the privacy unit), one noisy table, charged 7 x epsilon in the ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from fraudscreen.binschema import BinSchema
from fraudscreen.config.settings import PrivacyConfig, SyncConfig
from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.gateway.uploader import SyncAgent
from fraudscreen.privacy.aggregate import DAY, Period
from fraudscreen.storage.journal import Journal, JournalSettings, ScreenedRecord
from fraudscreen.storage.outbox import PrivacyOutbox

WEEK_START = 17_500 * DAY  # a Thursday 00:00 UTC: epoch weeks start on Thursdays
SCHEMA = BinSchema.default()


def record(day: int, index: int) -> ScreenedRecord:
    """One card ("tok-a") paying 5 times a day: 2 count per day."""
    features = [0.0] * len(FEATURE_NAMES)
    features[0] = 10.0
    return ScreenedRecord(
        terminal_id="T1",
        transaction_id=f"tx-{day}-{index}",
        card_token="tok-a",
        timestamp=WEEK_START + day * DAY + 3_600 + index,
        amount_minor=1_000,
        currency="EUR",
        mcc=5411,
        entry_mode=5,
        local_weekday=day % 7,
        local_hour=1,
        features=tuple(features),
        fingerprint=f"fp-{day}-{index}",
        decision="APPROVE",
        score=0.01,
        reasons_json="[]",
        model_version="m-1",
        stand_in=False,
        received_at=float(WEEK_START + day * DAY + 3_600 + index),
    )


def test_a_week_keeps_two_rows_per_card_and_day_and_charges_seven_days(tmp_path: Path) -> None:
    journal = Journal(JournalSettings(path=tmp_path / "journal.db"))
    journal.start()
    try:
        for day in range(7):
            for index in range(5):
                journal.submit(record(day, index))
        journal.flush()
        outbox = PrivacyOutbox(tmp_path / "journal.db", budget=100)
        privacy = PrivacyConfig(period_days=7, label_maturity_days=14)
        agent = SyncAgent(
            site_id="shop-1",
            journal=journal,
            outbox=outbox,
            schema=lambda: SCHEMA,
            privacy=privacy,
            sync=SyncConfig(),
            clock=lambda: WEEK_START + 21 * DAY,
        )
        week = Period(WEEK_START, WEEK_START + 7 * DAY)
        assert agent._exact_table(week, SCHEMA) == {SCHEMA.cell(record(0, 0).features): (14, 0)}
        released = agent.release_due()
    finally:
        journal.close()
    assert len(released) == 1
    (entry,) = outbox.pending()
    assert entry.payload["period"] == week.name and entry.payload["period_days"] == 7
    assert outbox.status().spent == pytest.approx(7 * privacy.epsilon_per_day)
