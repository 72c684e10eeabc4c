"""Request messages -> domain objects, or every problem named by field.

Each check appends a violation instead of stopping at the first, so a terminal developer
sees all bad fields at once. Messages never echo the card number.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from fraudscreen.currency import is_currency_code
from fraudscreen.localtime import SiteClock
from fraudscreen.logs import luhn_valid
from fraudscreen.rpc.status import FieldViolation, RequestInvalidError
from fraudscreen.tokenizer import CARD_NUMBER, CardTokenizer
from fraudscreen.transaction import EntryMode, Outcome, Transaction
from fraudscreen.v1 import screening_pb2 as pb

_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")  # always fullmatch: "$" accepts a final "\n"
MAX_AMOUNT_MINOR = 10**12
_ENTRY_MODES: dict[int, EntryMode] = {int(mode): mode for mode in EntryMode}


@dataclass(frozen=True)
class ValidationRules:
    currencies: frozenset[str]
    max_age_seconds: float
    max_skew_seconds: float


class RequestValidator:
    def __init__(
        self,
        rules: ValidationRules,
        tokenizer: CardTokenizer,
        clock: SiteClock,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._rules = rules
        # the accepted codes that are ISO 4217 codes: one set lookup passes a request's
        self._accepted = frozenset(c for c in rules.currencies if is_currency_code(c))
        self._tokenizer = tokenizer
        self._site_clock = clock
        self._now = now

    def transaction(self, request: pb.ScreenRequest) -> Transaction:
        """Validated, tokenized transaction; raises RequestInvalidError naming bad fields.

        Runs on every screened item, so each field is read once and the common case
        (every check passes) takes the cheapest test first; the messages come from the
        same checks as before."""
        bad: list[FieldViolation] = []
        transaction_id, terminal_id = request.transaction_id, request.terminal_id
        if _ID.fullmatch(transaction_id) is None:
            _check_id(transaction_id, "transaction_id", bad)
        if _ID.fullmatch(terminal_id) is None:
            _check_id(terminal_id, "terminal_id", bad)
        pan = request.pan
        if not CARD_NUMBER.fullmatch(pan):
            bad.append(FieldViolation("pan", "must be 12 to 19 digits"))
        elif not luhn_valid(pan):
            bad.append(FieldViolation("pan", "fails the Luhn check digit"))
        amount_minor = request.amount_minor
        if not 0 <= amount_minor <= MAX_AMOUNT_MINOR:
            # zero is a card verification (no money moves), still screened
            bad.append(FieldViolation("amount_minor", f"must be between 0 and {MAX_AMOUNT_MINOR}"))
        currency = request.currency
        if currency not in self._accepted:
            if not is_currency_code(currency):
                bad.append(FieldViolation("currency", "must be an ISO 4217 code like EUR"))
            else:
                accepted = ", ".join(sorted(self._rules.currencies))
                bad.append(FieldViolation("currency", f"not accepted at this site ({accepted})"))
        timestamp = self._timestamp(request, bad)
        mcc: int | None = None
        if request.HasField("merchant_category_code"):
            mcc = request.merchant_category_code
            if not 1 <= mcc <= 9999:
                bad.append(FieldViolation("merchant_category_code", "must be 1 to 9999"))
        code = request.entry_mode
        entry_mode = _ENTRY_MODES.get(code)
        if entry_mode is None and code != pb.ENTRY_MODE_UNSPECIFIED:
            bad.append(FieldViolation("entry_mode", f"unknown value {code}"))
        if bad:
            raise RequestInvalidError(bad)
        weekday, hour = self._site_clock.weekday_hour(timestamp)
        return Transaction(
            terminal_id,
            transaction_id,
            self._tokenizer.tokenize(pan),
            amount_minor,
            currency,
            timestamp,
            weekday,
            hour,
            mcc,
            entry_mode,
        )

    def _timestamp(self, request: pb.ScreenRequest, bad: list[FieldViolation]) -> int:
        if not request.HasField("timestamp"):
            bad.append(FieldViolation("timestamp", "is required"))
            return 0
        stamp = request.timestamp
        seconds = stamp.seconds
        if not 0 <= stamp.nanos < 1_000_000_000:
            bad.append(FieldViolation("timestamp", "nanos must be 0 to 999999999"))
        now = self._now()
        rules = self._rules
        if seconds > now + rules.max_skew_seconds:
            bad.append(FieldViolation("timestamp", "is in the future; check the terminal clock"))
        elif seconds < now - rules.max_age_seconds:
            days = rules.max_age_seconds / 86_400
            bad.append(
                FieldViolation("timestamp", f"is older than this site accepts ({days:g} days)")
            )
        return int(seconds)

    def outcome(self, request: pb.ReportOutcomeRequest) -> tuple[str, str, Outcome, int]:
        bad: list[FieldViolation] = []
        _check_id(request.transaction_id, "transaction_id", bad)
        _check_id(request.terminal_id, "terminal_id", bad)
        outcome: Outcome | None = None
        try:
            outcome = Outcome(request.outcome)
        except ValueError:
            bad.append(
                FieldViolation(
                    "outcome", "must be CHARGEBACK, CONFIRMED_FRAUD or CONFIRMED_GENUINE"
                )
            )
        reported_at = int(self._now())
        if request.HasField("reported_at"):
            reported_at = request.reported_at.seconds
            if reported_at > self._now() + self._rules.max_skew_seconds:
                bad.append(FieldViolation("reported_at", "is in the future"))
        if bad or outcome is None:
            raise RequestInvalidError(bad)
        return request.terminal_id, request.transaction_id, outcome, reported_at


def _check_id(value: str, name: str, bad: list[FieldViolation]) -> None:
    if not value:
        bad.append(FieldViolation(name, "is required"))
    elif not _ID.fullmatch(value):
        bad.append(FieldViolation(name, "must be 1 to 64 characters from A-Z a-z 0-9 . _ : -"))
