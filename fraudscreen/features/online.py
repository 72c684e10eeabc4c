"""Incremental features for serving: per-card and per-terminal windows in memory.

State is rebuilt from the journal on start (`journal.replay_into`), so it only has to
reach back `STATE_HORIZON_SECONDS`. All updates go through `OnlineFeatureStore`, which
serializes them with one lock: a screen is a read-modify-write of two windows.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fraudscreen.currency import minor_per_major
from fraudscreen.features.definitions import (
    CARD_HORIZON_SECONDS,
    FEATURES,
    NIGHT_LAST_HOUR,
    SECONDS_PER_DAY,
    TERMINAL_DELAY_DAYS,
    TERMINAL_HORIZON_SECONDS,
    WEEKEND_FIRST_WEEKDAY,
    FeatureKind,
    FeatureSpec,
    amount_ratio,
    mean_amount,
    risk,
)
from fraudscreen.transaction import Transaction

_DELAY_SECONDS = TERMINAL_DELAY_DAYS * SECONDS_PER_DAY
_PURGE_BATCH = 64  # drop expired events in chunks so the list shift is amortized


@dataclass(slots=True)
class CardWindowState:
    """A card's recent transactions: sorted times and prefix sums of amounts."""

    times: list[int] = field(default_factory=list)
    amount_prefix: list[int] = field(default_factory=lambda: [0])

    def add(self, timestamp: int, amount_minor: int) -> int:
        """Insert a transaction; returns its position (late arrivals are sorted in)."""
        if not self.times or timestamp >= self.times[-1]:
            self.times.append(timestamp)
            self.amount_prefix.append(self.amount_prefix[-1] + amount_minor)
            return len(self.times) - 1
        position = bisect_right(self.times, timestamp)
        self.times.insert(position, timestamp)
        amounts = [b - a for a, b in zip(self.amount_prefix, self.amount_prefix[1:], strict=False)]
        amounts.insert(position, amount_minor)
        self._rebuild_prefix(amounts)
        return position

    def window(self, position: int, seconds: int) -> tuple[int, int]:
        """(count, amount sum) of transactions with time in (t - seconds, t] up to position."""
        first = bisect_right(self.times, self.times[position] - seconds, 0, position + 1)
        return position + 1 - first, self.amount_prefix[position + 1] - self.amount_prefix[first]

    def purge_before(self, horizon: int) -> None:
        expired = bisect_right(self.times, horizon)
        if expired >= _PURGE_BATCH or (expired and expired == len(self.times)):
            amounts = [
                b - a for a, b in zip(self.amount_prefix, self.amount_prefix[1:], strict=False)
            ]
            del self.times[:expired]
            self._rebuild_prefix(amounts[expired:])

    def _rebuild_prefix(self, amounts: list[int]) -> None:
        prefix = [0]
        for amount in amounts:
            prefix.append(prefix[-1] + amount)
        self.amount_prefix = prefix


@dataclass(slots=True)
class TerminalWindowState:
    """A terminal's recent transaction times and the times of those known to be fraud."""

    times: list[int] = field(default_factory=list)
    fraud_times: list[int] = field(default_factory=list)

    def add(self, timestamp: int) -> None:
        if not self.times or timestamp >= self.times[-1]:
            self.times.append(timestamp)
        else:
            insort(self.times, timestamp)

    def set_fraud(self, timestamp: int, is_fraud: bool) -> None:
        if is_fraud:
            insort(self.fraud_times, timestamp)
        else:
            position = bisect_right(self.fraud_times, timestamp) - 1
            if position >= 0 and self.fraud_times[position] == timestamp:
                del self.fraud_times[position]

    def delayed_window(self, now: int, seconds: int) -> tuple[int, int]:
        """(count, fraud count) with time in (now - delay - seconds, now - delay]."""
        end = now - _DELAY_SECONDS
        start = end - seconds
        count = bisect_right(self.times, end) - bisect_right(self.times, start)
        frauds = bisect_right(self.fraud_times, end) - bisect_right(self.fraud_times, start)
        return count, frauds

    def purge_before(self, horizon: int) -> None:
        expired = bisect_right(self.times, horizon)
        if expired >= _PURGE_BATCH or (expired and expired == len(self.times)):
            del self.times[:expired]
            del self.fraud_times[: bisect_right(self.fraud_times, horizon)]


Getter = Callable[[Transaction, int, dict[int, tuple[int, int]], dict[int, tuple[int, int]]], float]
"""(transaction, minor_per_major, card windows, terminal windows) -> one feature value."""


def _getter(spec: FeatureSpec) -> Getter:
    """One small function per feature, chosen once, so a screen does no dispatching."""
    days = spec.window_days
    match spec.kind:
        case FeatureKind.AMOUNT:
            return lambda tx, scale, card, term: tx.amount_minor / scale
        case FeatureKind.WEEKEND:
            return lambda tx, scale, card, term: (
                1.0 if tx.local_weekday >= WEEKEND_FIRST_WEEKDAY else 0.0
            )
        case FeatureKind.NIGHT:
            return lambda tx, scale, card, term: 1.0 if tx.local_hour <= NIGHT_LAST_HOUR else 0.0
        case FeatureKind.CARD_COUNT:
            return lambda tx, scale, card, term: float(card[days][0])
        case FeatureKind.CARD_MEAN_AMOUNT:
            return lambda tx, scale, card, term: mean_amount(card[days][1], card[days][0], scale)
        case FeatureKind.CARD_AMOUNT_RATIO:
            return lambda tx, scale, card, term: amount_ratio(
                tx.amount_minor, card[days][1], card[days][0]
            )
        case FeatureKind.TERMINAL_COUNT:
            return lambda tx, scale, card, term: float(term[days][0])
        case FeatureKind.TERMINAL_RISK:
            return lambda tx, scale, card, term: risk(term[days][1], term[days][0])
        case FeatureKind.ENTRY_MODE:
            return lambda tx, scale, card, term: (
                math.nan if tx.entry_mode is None else float(tx.entry_mode.value)
            )
    raise AssertionError(f"unhandled feature kind {spec.kind}")


class OnlineFeatureStore:
    """Live card and terminal windows; `add` returns the feature row for a transaction."""

    def __init__(self, features: Iterable[FeatureSpec] = FEATURES) -> None:
        self._features = tuple(features)
        self._getters = [_getter(spec) for spec in self._features]
        self._card_days = sorted(
            {s.window_days for s in self._features if s.kind.name.startswith("CARD_")}
        )
        self._terminal_days = sorted(
            {s.window_days for s in self._features if s.kind.name.startswith("TERMINAL_")}
        )
        self._cards: dict[str, CardWindowState] = {}
        self._terminals: dict[str, TerminalWindowState] = {}
        self._lock = threading.Lock()
        self._latest = 0

    def add(self, tx: Transaction) -> list[float]:
        """Count the transaction into its windows and return its features (NaN = missing)."""
        scale = minor_per_major(tx.currency)
        with self._lock:
            card = self._cards.get(tx.card_token)
            if card is None:
                card = self._cards[tx.card_token] = CardWindowState()
            terminal = self._terminals.get(tx.terminal_id)
            if terminal is None:
                terminal = self._terminals[tx.terminal_id] = TerminalWindowState()
            position = card.add(tx.timestamp, tx.amount_minor)
            card_windows = {d: card.window(position, d * SECONDS_PER_DAY) for d in self._card_days}
            terminal_windows = {
                d: terminal.delayed_window(tx.timestamp, d * SECONDS_PER_DAY)
                for d in self._terminal_days
            }
            terminal.add(tx.timestamp)
            if tx.timestamp > self._latest:
                self._latest = tx.timestamp
        return [get(tx, scale, card_windows, terminal_windows) for get in self._getters]

    def observe(self, card_token: str, terminal_id: str, timestamp: int, amount_minor: int) -> None:
        """Count a past transaction in without computing features (state rebuild)."""
        with self._lock:
            card = self._cards.get(card_token)
            if card is None:
                card = self._cards[card_token] = CardWindowState()
            terminal = self._terminals.get(terminal_id)
            if terminal is None:
                terminal = self._terminals[terminal_id] = TerminalWindowState()
            card.add(timestamp, amount_minor)
            terminal.add(timestamp)
            self._latest = max(self._latest, timestamp)

    def set_fraud(self, terminal_id: str, timestamp: int, is_fraud: bool) -> None:
        """Apply a reported outcome; only changes of label should be passed in."""
        with self._lock:
            terminal = self._terminals.get(terminal_id)
            if terminal is None:
                terminal = self._terminals[terminal_id] = TerminalWindowState()
            terminal.set_fraud(timestamp, is_fraud)

    def purge(self) -> int:
        """Forget windows that can no longer affect any feature; returns keys dropped."""
        dropped = 0
        with self._lock:
            card_horizon = self._latest - CARD_HORIZON_SECONDS
            for token in list(self._cards):
                card = self._cards[token]
                card.purge_before(card_horizon)
                if not card.times:
                    del self._cards[token]
                    dropped += 1
            terminal_horizon = self._latest - TERMINAL_HORIZON_SECONDS
            for terminal_id in list(self._terminals):
                terminal = self._terminals[terminal_id]
                terminal.purge_before(terminal_horizon)
                if not terminal.times and not terminal.fraud_times:
                    del self._terminals[terminal_id]
                    dropped += 1
        return dropped
