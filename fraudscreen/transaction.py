"""The card transaction as the domain sees it, after the PAN has been tokenized.

Transport layers build a `Transaction`; features, model and policy only ever see this.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class EntryMode(enum.IntEnum):
    """How the card data was captured at the terminal.

    The integer values are the feature codes the model sees; never renumber them.
    """

    CHIP = 1
    CONTACTLESS = 2
    MAGSTRIPE = 3
    MANUAL = 4
    FALLBACK = 5  # chip read failed, terminal fell back to the magnetic stripe

    @classmethod
    def from_name(cls, name: str) -> EntryMode:
        try:
            return cls[name.strip().upper()]
        except KeyError:
            allowed = ", ".join(m.name.lower() for m in cls)
            raise ValueError(f"unknown entry mode {name!r}; expected one of {allowed}") from None


class Transaction(NamedTuple):
    """One card-present transaction, PAN already replaced by `card_token`.

    A NamedTuple rather than a frozen dataclass: it is built on every request, and a
    frozen dataclass costs over twice as much to construct.

    `timestamp` is epoch seconds (UTC); `local_weekday` (Monday=0) and `local_hour` are the
    site's wall clock at that instant, because weekend and night are local notions.
    `mcc` and `entry_mode` are None when the terminal did not send them.
    """

    terminal_id: str
    transaction_id: str
    card_token: str
    amount_minor: int
    currency: str
    timestamp: int
    local_weekday: int
    local_hour: int
    mcc: int | None = None
    entry_mode: EntryMode | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The idempotency key: a terminal never reuses a transaction id."""
        return (self.terminal_id, self.transaction_id)


class Outcome(enum.IntEnum):
    """What the issuer or acquirer later said about a transaction (values match the API)."""

    CHARGEBACK = 1
    CONFIRMED_FRAUD = 2
    CONFIRMED_GENUINE = 3  # e.g. a withdrawn chargeback: clears an earlier fraud label

    @property
    def is_fraud(self) -> bool:
        return self is not Outcome.CONFIRMED_GENUINE
