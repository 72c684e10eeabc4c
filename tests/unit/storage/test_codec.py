"""The journal writer's quick encoding of a plainly fine record gives the row the
field-by-field checks give, and anything unusual still meets those checks."""

from __future__ import annotations

import math
from typing import Any

import pytest

from fraudscreen.records import ScreenedRecord
from fraudscreen.storage.journal.codec import _encode_checked, _encode_record, _RecordError

PLAIN = ScreenedRecord(
    "T1", "tx-1", "ab" * 32, 1_700_000_000, 1250, "EUR", 5411, 1, 2, 14,
    (1.0, math.nan, -0.0), "f" * 24, "APPROVE", 0.25, "[]", "v1", False, 1.7e9,
)  # fmt: skip


class _Text(str):
    pass


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"score": None, "stand_in": True},
        {"score": math.nan},  # stored as NULL
        {"mcc": None, "entry_mode": None},
        {"terminal_id": "Tê"},  # not ASCII, still UTF-8
        {"currency": _Text("EUR")},
        {"local_hour": True},  # a bool is an int to the checks
        {"amount_minor": 2**63 - 1, "timestamp": -(2**63)},
        {"score": 1, "received_at": 5},  # ints where floats are expected
        {"features": ()},
    ],
)
def test_quick_and_checked_encoding_agree(changes: dict[str, Any]) -> None:
    record = PLAIN._replace(**changes)
    row, checked = _encode_record(record), _encode_checked(record)
    assert repr(row) == repr(checked)  # repr: NaN inside the blob compares by bytes anyway
    assert [type(v) for v in row] == [type(v) for v in checked]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount_minor": 2**63}, "amount_minor"),
        ({"timestamp": 1.5}, "timestamp"),
        ({"received_at": math.nan}, "received_at"),
        ({"terminal_id": "T\ud800"}, "terminal_id"),  # a lone surrogate is not UTF-8
        ({"card_token": None}, "card_token"),
        ({"features": [1.0]}, "features"),
        ({"features": ("x",)}, "features"),
        ({"mcc": 2**64}, "mcc"),
    ],
)
def test_a_bad_field_is_still_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(_RecordError, match=field):
        _encode_record(PLAIN._replace(**changes))
