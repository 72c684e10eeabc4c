"""Point-of-sale fields for the simulated transactions: our extension of the handbook design.

The handbook's six columns say nothing a real terminal sends besides the amount; these are
the card number (unique, Luhn-valid, on a test BIN), the terminal's merchant category and
the entry mode of each transaction, so simulated data can drive the service like real
terminals. Probabilities are plausible for European card-present traffic, not measured.
simulate.py and fleet_simulate.py draw them from their own random streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import numpy as np
import numpy.typing as npt

from fraudscreen.transaction import EntryMode

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

GENUINE_ENTRY_MODE_PROBABILITIES: Final[Mapping[str, float]] = {
    EntryMode.CONTACTLESS.name.lower(): 0.55,
    EntryMode.CHIP.name.lower(): 0.38,
    EntryMode.MAGSTRIPE.name.lower(): 0.03,
    EntryMode.MANUAL.name.lower(): 0.02,
    EntryMode.FALLBACK.name.lower(): 0.02,
}
"""Entry modes of genuine transactions and of scenario 1 and 2 frauds (our extension)."""

COUNTERFEIT_ENTRY_MODE_PROBABILITIES: Final[Mapping[str, float]] = {
    EntryMode.MAGSTRIPE.name.lower(): 0.35,
    EntryMode.FALLBACK.name.lower(): 0.20,
    EntryMode.MANUAL.name.lower(): 0.15,
    EntryMode.CHIP.name.lower(): 0.15,
    EntryMode.CONTACTLESS.name.lower(): 0.15,
}
"""Entry modes of scenario 3 frauds, a skimmed or counterfeit card in use (our extension)."""

MCC_WEIGHTS: Final[Mapping[int, float]] = {
    5411: 0.25,  # grocery stores, supermarkets
    5812: 0.15,  # restaurants
    5814: 0.12,  # fast food
    5541: 0.12,  # service stations (fuel)
    5912: 0.08,  # drug stores, pharmacies
    5999: 0.08,  # miscellaneous retail
    5311: 0.06,  # department stores
    5691: 0.06,  # clothing stores
    5732: 0.05,  # electronics stores
    5944: 0.03,  # jewelry stores
}
"""Merchant category code of each terminal, weights of common card-present MCCs (our extension)."""

PAN_BIN: Final = "400000"  # Visa test BIN: every PAN is obviously synthetic
PAN_LENGTH: Final = 16
CURRENCY_CODE: Final = "EUR"
MAX_CUSTOMERS: Final = 10_000_000  # keeps unique PAN draws cheap; far beyond a usable data set

_PAN_ACCOUNT_DIGITS: Final = PAN_LENGTH - len(PAN_BIN) - 1

ENTRY_MODE_NAMES: Final[tuple[str, ...]] = tuple(mode.name.lower() for mode in EntryMode)
"""The entry mode column's values; `entry_mode_codes` index into this tuple."""


def _luhn_check_digits(payload: npt.NDArray[np.int8]) -> IntArray:
    """Luhn check digit for each row of digits, so PANs pass terminal and switch validation."""
    doubled = np.zeros(payload.shape[1], dtype=bool)
    doubled[::-1][::2] = True  # rightmost payload digit is doubled once the check is appended
    digits = payload.astype(np.int64)
    twice = digits * 2
    digits[:, doubled] = np.where(twice[:, doubled] > 9, twice[:, doubled] - 9, twice[:, doubled])
    check: IntArray = (10 - digits.sum(axis=1) % 10) % 10
    return check


def card_pans(rng: np.random.Generator, n: int) -> npt.NDArray[np.str_]:
    """Unique, Luhn-valid 16-digit test-BIN PANs, one per customer."""
    accounts = rng.choice(10**_PAN_ACCOUNT_DIGITS, size=n, replace=False).astype(np.int64)
    bin_digits = np.array([int(c) for c in PAN_BIN], dtype=np.int8)
    powers = 10 ** np.arange(_PAN_ACCOUNT_DIGITS - 1, -1, -1, dtype=np.int64)
    account_digits = (accounts[:, None] // powers % 10).astype(np.int8)
    payload = np.hstack([np.broadcast_to(bin_digits, (n, bin_digits.size)), account_digits])
    numbers = accounts * 10 + _luhn_check_digits(payload)
    suffix = np.char.zfill(numbers.astype(np.str_), _PAN_ACCOUNT_DIGITS + 1)
    return np.char.add(PAN_BIN, suffix)


def entry_modes(rng: np.random.Generator, counterfeit: BoolArray) -> IntArray:
    """Entry mode per transaction: counterfeit-card mix for scenario 3, normal mix otherwise."""
    result = np.empty(counterfeit.size, dtype=np.int64)
    u = rng.random(counterfeit.size)
    for probs, mask in (
        (GENUINE_ENTRY_MODE_PROBABILITIES, ~counterfeit),
        (COUNTERFEIT_ENTRY_MODE_PROBABILITIES, counterfeit),
    ):
        result[mask] = entry_mode_codes(u[mask], probs)
    return result


def entry_mode_codes(u: FloatArray, probabilities: Mapping[str, float]) -> IntArray:
    """Entry modes (indices into ENTRY_MODE_NAMES) for uniform [0, 1) draws `u`.

    Inverse CDF over `probabilities` in its own key order, so a draw keeps its meaning.
    """
    names = list(probabilities)
    to_code = np.array([ENTRY_MODE_NAMES.index(name) for name in names], dtype=np.int64)
    cumulative = np.cumsum(np.fromiter(probabilities.values(), dtype=np.float64))
    cumulative /= cumulative[-1]
    index = np.searchsorted(cumulative, u, side="right")
    codes: IntArray = to_code[np.minimum(index, len(names) - 1)]
    return codes
