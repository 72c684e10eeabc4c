"""The last-line log masker: every card-number shape a terminal could send in a field,
masked in structlog values (nested, exceptions) and in stdlib logging lines."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from fraudscreen.logs import configure_logging, luhn_valid, mask_pans

MASK = "[PAN REDACTED]"


def with_check_digit(body: str) -> str:
    """`body` plus the digit that makes it Luhn-valid."""
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


PAN_12 = with_check_digit("34542938257")
PAN_13 = with_check_digit("400000000000")
PAN_16 = "4111111111111111"
PAN_19 = with_check_digit("600000000000000000")

SHAPES = [
    ("12 digits", PAN_12),
    ("13 digits", PAN_13),
    ("19 digits", PAN_19),
    ("dashed 4-4-4", "-".join([PAN_12[0:4], PAN_12[4:8], PAN_12[8:12]])),
    ("spaced 4-4-4-4", " ".join(PAN_16[i : i + 4] for i in range(0, 16, 4))),
    ("spaced 4-6-5 (Amex style)", f"{PAN_16[:4]} {PAN_16[4:10]} {PAN_16[10:]}"),
    ("mixed separators", f"{PAN_16[:4]}-{PAN_16[4:8]} {PAN_16[8:12]}-{PAN_16[12:]}"),
]


@pytest.mark.parametrize(("shape", "number"), SHAPES, ids=[s for s, _ in SHAPES])
def test_each_shape_is_masked_in_text(shape: str, number: str) -> None:
    digits = number.replace(" ", "").replace("-", "")
    assert luhn_valid(digits) and 12 <= len(digits) <= 19, shape
    assert mask_pans(f"id={number};") == f"id={MASK};"
    assert mask_pans(f"ref 12 {number} at 2026-12-04") == f"ref 12 {MASK} at 2026-12-04"


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-04 17:17:22",  # dates and times
        "4111111111111112",  # fails Luhn
        "41111111111",  # 11 digits
        "4111  1111 1111 1111",  # two spaces: not one number
        "12345678901234567890123",  # one run of 23 digits is no card number
        "latency 123.4 us",
    ],
)
def test_other_numbers_are_left_alone(text: str) -> None:
    assert mask_pans(text) == text


def test_structlog_values_nested_numbers_and_exceptions_are_masked() -> None:
    stream = io.StringIO()
    configure_logging(json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    try:
        log = structlog.get_logger("test")
        log.info("event", ids=[PAN_12, {"terminal": PAN_13}], number=int(PAN_16))
        try:
            raise ValueError(f"bad terminal {SHAPES[4][1]}")
        except ValueError:
            log.exception("failed")
    finally:
        structlog.reset_defaults()
    text = stream.getvalue()
    for _, number in SHAPES:
        assert number not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["ids"] == [MASK, {"terminal": MASK}] and lines[0]["number"] == MASK
    assert MASK in lines[1]["exception"]


def test_stdlib_logging_lines_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """gRPC's and other libraries' stdlib lines go through the same masking processors."""
    configure_logging(json=True)
    logger = logging.getLogger("test.stdlib.masking")
    logger.warning("call from terminal %s failed", SHAPES[3][1])
    try:
        raise RuntimeError(PAN_19)
    except RuntimeError:
        logger.exception("with traceback")
    text = capsys.readouterr().err
    assert text.count(MASK) == 2
