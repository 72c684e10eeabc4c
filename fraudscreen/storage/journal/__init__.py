"""The gateway's journal (journal.py says how it works): schema, codec, writer, reader."""

from fraudscreen.records import OutcomeRecord, ScreenedRecord
from fraudscreen.storage.journal.journal import Journal
from fraudscreen.storage.journal.schema import SCHEMA_VERSION
from fraudscreen.storage.journal.settings import (
    Durability,
    JournalBackpressureError,
    JournalClosedError,
    JournalOpenError,
    JournalSettings,
)

__all__ = [
    "SCHEMA_VERSION",
    "Durability",
    "Journal",
    "JournalBackpressureError",
    "JournalClosedError",
    "JournalOpenError",
    "JournalSettings",
    "OutcomeRecord",
    "ScreenedRecord",
]
