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

    def purge_before(self, horizon: int) -> None:
        expired = bisect_right(self.times, horizon)
        if expired >= _PURGE_BATCH or (expired and expired == len(self.times)):
            del self.times[:expired]
            del self.fraud_times[: bisect_right(self.fraud_times, horizon)]


RowFunction = Callable[[Transaction, int, list[int], list[int], list[int], list[int]], list[float]]
"""(transaction, minor_per_major, card counts, card amount sums, terminal counts, terminal
fraud counts) -> the feature row. The window lists are in the order of the store's
`_card_days` / `_terminal_days`: each feature reads its window by index, found once."""


def _expression(spec: FeatureSpec, card_days: list[int], terminal_days: list[int]) -> str:
    """One feature's value as a Python expression over `_row_function`'s arguments."""
    match spec.kind:
        case FeatureKind.AMOUNT:
            return "tx.amount_minor / scale"
        case FeatureKind.WEEKEND:
            return "(1.0 if tx.local_weekday >= WEEKEND_FIRST_WEEKDAY else 0.0)"
        case FeatureKind.NIGHT:
            return "(1.0 if tx.local_hour <= NIGHT_LAST_HOUR else 0.0)"
        case FeatureKind.ENTRY_MODE:  # EntryMode is an IntEnum: float() is its code
            return "(nan if tx.entry_mode is None else float(tx.entry_mode))"
    if spec.kind.name.startswith("CARD_"):
        i = card_days.index(spec.window_days)
        match spec.kind:
            case FeatureKind.CARD_COUNT:
                return f"float(cc[{i}])"
            case FeatureKind.CARD_MEAN_AMOUNT:
                return f"mean_amount(cs[{i}], cc[{i}], scale)"
            case FeatureKind.CARD_AMOUNT_RATIO:
                return f"amount_ratio(tx.amount_minor, cs[{i}], cc[{i}])"
    if spec.kind.name.startswith("TERMINAL_"):
        j = terminal_days.index(spec.window_days)
        match spec.kind:
            case FeatureKind.TERMINAL_COUNT:
                return f"float(tc[{j}])"
            case FeatureKind.TERMINAL_RISK:
                return f"risk(tf[{j}], tc[{j}])"
    raise AssertionError(f"unhandled feature kind {spec.kind}")


def _row_function(
    features: tuple[FeatureSpec, ...], card_days: list[int], terminal_days: list[int]
) -> RowFunction:
    """The whole row as one list display in one function, built once per store from the
    specs: a screen makes one call instead of one per feature (~1.4 against ~3.5 µs for
    18 features). The expressions are the definitions' own (`mean_amount`, `risk`, ...),
    so the values are bit for bit what they compute."""
    items = ",\n        ".join(_expression(s, card_days, terminal_days) for s in features)
    source = f"def row(tx, scale, cc, cs, tc, tf):\n    return [\n        {items},\n    ]\n"
    namespace: dict[str, object] = {
        "WEEKEND_FIRST_WEEKDAY": WEEKEND_FIRST_WEEKDAY,
        "NIGHT_LAST_HOUR": NIGHT_LAST_HOUR,
        "nan": math.nan,
        "mean_amount": mean_amount,
        "amount_ratio": amount_ratio,
        "risk": risk,
    }
    exec(compile(source, "<online feature row>", "exec"), namespace)  # noqa: S102
    function: RowFunction = namespace["row"]  # type: ignore[assignment]
    return function


class OnlineFeatureStore:
    """Live card and terminal windows; `add` returns the feature row for a transaction."""

    def __init__(self, features: Iterable[FeatureSpec] = FEATURES) -> None:
        self._features = tuple(features)
        self._card_days = sorted(
            {s.window_days for s in self._features if s.kind.name.startswith("CARD_")}
        )
        self._terminal_days = sorted(
            {s.window_days for s in self._features if s.kind.name.startswith("TERMINAL_")}
        )
        self._card_seconds = [d * SECONDS_PER_DAY for d in self._card_days]
        self._terminal_seconds = [d * SECONDS_PER_DAY for d in self._terminal_days]
        self._row = _row_function(self._features, self._card_days, self._terminal_days)
        self._scales: dict[str, int] = {}  # currency -> minor_per_major, as seen
        self._cards: dict[str, CardWindowState] = {}
        self._terminals: dict[str, TerminalWindowState] = {}
        self._lock = threading.Lock()
        self._latest = 0

    def add(self, tx: Transaction) -> list[float]:
        """Count the transaction into its windows and return its features (NaN = missing).

        Card windows of W seconds: (count, amount sum) with time in (t - W, t], up to the
        transaction's own position (a late arrival does not see later ones). Terminal
        windows: (count, fraud count) with time in (t - delay - W, t - delay]. The
        bisections all lengths share (the window end) are done once: this runs on every
        screened transaction."""
        scale = self._scales.get(tx.currency)
        if scale is None:
            scale = self._scales[tx.currency] = minor_per_major(tx.currency)
        timestamp = tx.timestamp
        with self._lock:
            card = self._cards.get(tx.card_token)
            if card is None:
                card = self._cards[tx.card_token] = CardWindowState()
            terminal = self._terminals.get(tx.terminal_id)
            if terminal is None:
                terminal = self._terminals[tx.terminal_id] = TerminalWindowState()
            position = card.add(timestamp, tx.amount_minor)
            times, prefix = card.times, card.amount_prefix
            end, total = position + 1, card.amount_prefix[position + 1]
            card_counts: list[int] = []
            card_sums: list[int] = []
            for seconds in self._card_seconds:
                first = bisect_right(times, timestamp - seconds, 0, end)
                card_counts.append(end - first)
                card_sums.append(total - prefix[first])
            times, frauds = terminal.times, terminal.fraud_times
            delayed = timestamp - _DELAY_SECONDS
            last, last_fraud = bisect_right(times, delayed), bisect_right(frauds, delayed)
            terminal_counts: list[int] = []
            terminal_frauds: list[int] = []
            for seconds in self._terminal_seconds:
                start = delayed - seconds
                terminal_counts.append(last - bisect_right(times, start, 0, last))
                terminal_frauds.append(last_fraud - bisect_right(frauds, start, 0, last_fraud))
            terminal.add(timestamp)
            if timestamp > self._latest:
                self._latest = timestamp
        return self._row(tx, scale, card_counts, card_sums, terminal_counts, terminal_frauds)

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
