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
        self._tokenizer = tokenizer
        self._site_clock = clock
        self._now = now

    def transaction(self, request: pb.ScreenRequest) -> Transaction:
        """Validated, tokenized transaction; raises RequestInvalidError naming bad fields."""
        bad: list[FieldViolation] = []
        _check_id(request.transaction_id, "transaction_id", bad)
        _check_id(request.terminal_id, "terminal_id", bad)
        pan = request.pan
        if not CARD_NUMBER.fullmatch(pan):
            bad.append(FieldViolation("pan", "must be 12 to 19 digits"))
        elif not luhn_valid(pan):
            bad.append(FieldViolation("pan", "fails the Luhn check digit"))
        if not 0 <= request.amount_minor <= MAX_AMOUNT_MINOR:
            # zero is a card verification (no money moves), still screened
            bad.append(FieldViolation("amount_minor", f"must be between 0 and {MAX_AMOUNT_MINOR}"))
        if not is_currency_code(request.currency):
            bad.append(FieldViolation("currency", "must be an ISO 4217 code like EUR"))
        elif request.currency not in self._rules.currencies:
            accepted = ", ".join(sorted(self._rules.currencies))
            bad.append(FieldViolation("currency", f"not accepted at this site ({accepted})"))
        timestamp = self._timestamp(request, bad)
        mcc: int | None = None
        if request.HasField("merchant_category_code"):
            mcc = request.merchant_category_code
            if not 1 <= mcc <= 9999:
                bad.append(FieldViolation("merchant_category_code", "must be 1 to 9999"))
        entry_mode: EntryMode | None = None
        if request.entry_mode != pb.ENTRY_MODE_UNSPECIFIED:
            try:
                entry_mode = EntryMode(request.entry_mode)
            except ValueError:
                bad.append(FieldViolation("entry_mode", f"unknown value {request.entry_mode}"))
        if bad:
            raise RequestInvalidError(bad)
        weekday, hour = self._site_clock.weekday_hour(timestamp)
        return Transaction(
            terminal_id=request.terminal_id,
            transaction_id=request.transaction_id,
            card_token=self._tokenizer.tokenize(pan),
            amount_minor=request.amount_minor,
            currency=request.currency,
            timestamp=timestamp,
            local_weekday=weekday,
            local_hour=hour,
            mcc=mcc,
            entry_mode=entry_mode,
        )

    def _timestamp(self, request: pb.ScreenRequest, bad: list[FieldViolation]) -> int:
        if not request.HasField("timestamp"):
            bad.append(FieldViolation("timestamp", "is required"))
            return 0
        seconds = request.timestamp.seconds
        if not 0 <= request.timestamp.nanos < 1_000_000_000:
            bad.append(FieldViolation("timestamp", "nanos must be 0 to 999999999"))
        now = self._now()
        if seconds > now + self._rules.max_skew_seconds:
            bad.append(FieldViolation("timestamp", "is in the future; check the terminal clock"))
        elif seconds < now - self._rules.max_age_seconds:
            days = self._rules.max_age_seconds / 86_400
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
