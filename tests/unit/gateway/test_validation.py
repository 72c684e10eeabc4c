"""Request messages -> domain objects without a server: a good request becomes a tokenized
Transaction on the site's clock; every bad field is named, all at once, and ids must match
in full (a trailing newline is not an id). Through gRPC: tests/integration/test_service.py."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from fraudscreen.gateway.validation import MAX_AMOUNT_MINOR, RequestValidator, ValidationRules
from fraudscreen.localtime import SiteClock
from fraudscreen.rpc.status import RequestInvalidError
from fraudscreen.tokenizer import CardTokenizer
from fraudscreen.transaction import EntryMode, Outcome
from fraudscreen.v1 import screening_pb2 as pb

NOW = 1_700_000_000  # Tuesday 2023-11-14 22:13:20 UTC; 23:13 in Paris
KEY = b"k" * 32
PAN = "4111111111111111"
RULES = ValidationRules(
    currencies=frozenset({"EUR", "CHF"}), max_age_seconds=2 * 86_400, max_skew_seconds=300
)


@pytest.fixture
def validator() -> RequestValidator:
    return RequestValidator(RULES, CardTokenizer(KEY), SiteClock("Europe/Paris"), now=lambda: NOW)


def request(**fields: object) -> pb.ScreenRequest:
    values: dict[str, object] = {
        "transaction_id": "tx-1",
        "terminal_id": "T.01:a_b-c",
        "pan": PAN,
        "amount_minor": 2_500,
        "currency": "EUR",
        "timestamp": Timestamp(seconds=NOW - 60),
        "merchant_category_code": 5411,
        "entry_mode": pb.ENTRY_MODE_CONTACTLESS,
    }
    values.update(fields)
    return pb.ScreenRequest(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]


def violations(validator: RequestValidator, message: pb.ScreenRequest) -> dict[str, str]:
    with pytest.raises(RequestInvalidError) as raised:
        validator.transaction(message)
    return {v.field: v.description for v in raised.value.violations}


def test_a_good_request_is_a_tokenized_transaction_on_the_sites_clock(
    validator: RequestValidator,
) -> None:
    tx = validator.transaction(request())
    assert (tx.terminal_id, tx.transaction_id) == ("T.01:a_b-c", "tx-1")
    assert tx.card_token == hmac.new(KEY, PAN.encode(), hashlib.sha256).hexdigest()
    assert (tx.amount_minor, tx.currency, tx.timestamp) == (2_500, "EUR", NOW - 60)
    assert (tx.local_weekday, tx.local_hour) == (1, 23)  # Paris, not UTC's 22 h
    assert (tx.mcc, tx.entry_mode) == (5411, EntryMode.CONTACTLESS)


def test_optional_fields_left_out_are_none(validator: RequestValidator) -> None:
    message = request(merchant_category_code=None, entry_mode=None)
    tx = validator.transaction(message)
    assert tx.mcc is None and tx.entry_mode is None


def test_a_zero_amount_is_a_card_check_and_accepted(validator: RequestValidator) -> None:
    assert validator.transaction(request(amount_minor=0)).amount_minor == 0


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"transaction_id": ""}, "transaction_id", "is required"),
        ({"transaction_id": "tx 1"}, "transaction_id", "1 to 64 characters"),
        ({"transaction_id": "tx-1\n"}, "transaction_id", "1 to 64 characters"),
        ({"transaction_id": "x" * 65}, "transaction_id", "1 to 64 characters"),
        ({"terminal_id": ""}, "terminal_id", "is required"),
        ({"terminal_id": "T1\n"}, "terminal_id", "1 to 64 characters"),
        ({"terminal_id": "T/1"}, "terminal_id", "1 to 64 characters"),
        ({"pan": "4111-1111-1111-1111"}, "pan", "12 to 19 digits"),
        ({"pan": "41111111111"}, "pan", "12 to 19 digits"),
        ({"pan": PAN + "\n"}, "pan", "12 to 19 digits"),
        ({"pan": "4111111111111112"}, "pan", "Luhn"),
        ({"amount_minor": -1}, "amount_minor", "between 0 and"),
        ({"amount_minor": MAX_AMOUNT_MINOR + 1}, "amount_minor", "between 0 and"),
        ({"currency": "eur"}, "currency", "ISO 4217"),
        ({"currency": "EURO"}, "currency", "ISO 4217"),
        ({"currency": "EUR\n"}, "currency", "ISO 4217"),
        ({"currency": "USD"}, "currency", "not accepted at this site (CHF, EUR)"),
        ({"timestamp": None}, "timestamp", "is required"),
        ({"timestamp": Timestamp(seconds=NOW, nanos=-1)}, "timestamp", "nanos"),
        ({"timestamp": Timestamp(seconds=NOW + 301)}, "timestamp", "in the future"),
        ({"timestamp": Timestamp(seconds=NOW - 2 * 86_400 - 1)}, "timestamp", "older"),
        ({"merchant_category_code": 0}, "merchant_category_code", "1 to 9999"),
        ({"merchant_category_code": 10_000}, "merchant_category_code", "1 to 9999"),
        ({"entry_mode": 99}, "entry_mode", "unknown value 99"),
    ],
)
def test_each_bad_field_is_named_alone(
    validator: RequestValidator, fields: dict[str, object], field: str, says: str
) -> None:
    bad = violations(validator, request(**fields))
    assert list(bad) == [field]
    assert says in bad[field]


def test_the_edges_of_each_range_are_accepted(validator: RequestValidator) -> None:
    for message in (
        request(transaction_id="x" * 64),
        request(amount_minor=MAX_AMOUNT_MINOR),
        request(timestamp=Timestamp(seconds=NOW + 300, nanos=999_999_999)),
        request(timestamp=Timestamp(seconds=NOW - 2 * 86_400)),
        request(merchant_category_code=1),
        request(merchant_category_code=9999),
        request(pan="4" + "0" * 10 + "2"),  # 12 digits, Luhn-valid
    ):
        validator.transaction(message)


def test_every_bad_field_is_named_at_once_and_the_card_number_never(
    validator: RequestValidator,
) -> None:
    bad_pan = "4111111111111112"
    message = request(
        transaction_id="",
        terminal_id="T 1",
        pan=bad_pan,
        amount_minor=-5,
        currency="USD",
        timestamp=None,
        merchant_category_code=0,
        entry_mode=42,
    )
    with pytest.raises(RequestInvalidError) as raised:
        validator.transaction(message)
    fields = [v.field for v in raised.value.violations]
    assert fields == [
        "transaction_id",
        "terminal_id",
        "pan",
        "amount_minor",
        "currency",
        "timestamp",
        "merchant_category_code",
        "entry_mode",
    ]
    assert bad_pan not in str(raised.value)


# -- ReportOutcome --------------------------------------------------------------------------


def outcome_request(**fields: object) -> pb.ReportOutcomeRequest:
    values: dict[str, object] = {
        "transaction_id": "tx-1",
        "terminal_id": "T1",
        "outcome": pb.OUTCOME_CHARGEBACK,
    }
    values.update(fields)
    return pb.ReportOutcomeRequest(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]


def test_an_outcome_without_reported_at_is_reported_now(validator: RequestValidator) -> None:
    assert validator.outcome(outcome_request()) == ("T1", "tx-1", Outcome.CHARGEBACK, NOW)


def test_an_outcome_keeps_its_reported_at(validator: RequestValidator) -> None:
    message = outcome_request(reported_at=Timestamp(seconds=NOW - 3_600))
    assert validator.outcome(message)[3] == NOW - 3_600


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"transaction_id": "tx-1\n"}, "transaction_id"),
        ({"terminal_id": ""}, "terminal_id"),
        ({"outcome": pb.OUTCOME_UNSPECIFIED}, "outcome"),
        ({"outcome": 9}, "outcome"),
        ({"reported_at": Timestamp(seconds=NOW + 301)}, "reported_at"),
    ],
)
def test_each_bad_outcome_field_is_named(
    validator: RequestValidator, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(RequestInvalidError) as raised:
        validator.outcome(outcome_request(**fields))
    assert [v.field for v in raised.value.violations] == [field]
