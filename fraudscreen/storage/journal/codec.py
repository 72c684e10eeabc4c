"""Records <-> SQLite rows. Validated on the writer thread (records) or the caller
(outcomes); an error names the field, never its value."""

from __future__ import annotations

import functools
import math
import struct

from fraudscreen.records import OutcomeRecord, ScreenedRecord

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# --- encoding: validated on the writer thread (records) or the caller (outcomes) ---------


class _RecordError(ValueError):
    """A record that can never be stored; names the field, never its value."""


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise _RecordError(f"{name} must be str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _RecordError(f"{name} is not valid UTF-8 text") from None
    return value


def _integer(value: object, name: str) -> int:
    if not isinstance(value, int) or not _INT64_MIN <= value <= _INT64_MAX:
        raise _RecordError(f"{name} must be a 64-bit integer")
    return int(value)


def _optional_integer(value: object, name: str) -> int | None:
    return None if value is None else _integer(value, name)


def _real(value: object, name: str) -> float:
    if not isinstance(value, int | float) or math.isnan(value):
        raise _RecordError(f"{name} must be a number, not NaN")
    return float(value)


@functools.lru_cache(maxsize=64)
def _features_struct(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}d")


def _pack_features(features: object) -> bytes:
    """Little-endian float64s: the bit patterns (NaN payloads, -0.0) are kept exactly."""
    if not isinstance(features, tuple):
        raise _RecordError(f"features must be a tuple, got {type(features).__name__}")
    try:
        return _features_struct(len(features)).pack(*features)
    except (struct.error, TypeError):
        raise _RecordError("features must be numbers") from None


def _unpack_features(blob: bytes) -> tuple[float, ...]:
    if len(blob) % 8:
        raise ValueError(f"journal features blob of {len(blob)} bytes is not float64s")
    return _features_struct(len(blob) // 8).unpack(blob)


def _encode_record(record: ScreenedRecord) -> tuple[object, ...]:
    """The row for INSERT; a NaN score is stored as NULL (SQLite has no NaN) and reads None.

    The writer encodes every screened record, so a record that is plainly fine (ASCII
    text, plain ints in range, float times and score) takes one combined test; anything
    else goes through the field-by-field checks, which name what is wrong. Both give the
    same row for a record both accept."""
    (
        terminal_id,
        transaction_id,
        card_token,
        timestamp,
        amount_minor,
        currency,
        mcc,
        entry_mode,
        weekday,
        hour,
        features,
        print_,
        decision,
        score,
        reasons,
        version,
        stand_in,
        received_at,
    ) = record
    try:
        text = "".join(
            (terminal_id, transaction_id, card_token, currency, print_, decision, reasons, version)
        )
    except TypeError:
        return _encode_checked(record)
    if (
        text.isascii()
        and type(timestamp) is int
        and type(amount_minor) is int
        and type(weekday) is int
        and type(hour) is int
        and (mcc is None or type(mcc) is int)
        and (entry_mode is None or type(entry_mode) is int)
        and min(timestamp, amount_minor, weekday, hour, mcc or 0, entry_mode or 0) >= _INT64_MIN
        and max(timestamp, amount_minor, weekday, hour, mcc or 0, entry_mode or 0) <= _INT64_MAX
        and type(features) is tuple
        and (score is None or (type(score) is float and score == score))  # NaN != NaN
        and type(received_at) is float
        and received_at == received_at
    ):
        try:
            blob = _features_struct(len(features)).pack(*features)
        except (struct.error, TypeError):
            return _encode_checked(record)
        # the record's own fields in column order, but the packed features and stand_in as 0/1
        return (*record[:10], blob, *record[11:16], 1 if stand_in else 0, received_at)
    return _encode_checked(record)


def _encode_checked(record: ScreenedRecord) -> tuple[object, ...]:
    """`_encode_record` field by field: raises _RecordError naming the first bad field."""
    score = record.score
    if score is not None:
        if not isinstance(score, int | float):
            raise _RecordError(f"score must be a number or None, got {type(score).__name__}")
        score = None if math.isnan(score) else float(score)
    return (
        _text(record.terminal_id, "terminal_id"),
        _text(record.transaction_id, "transaction_id"),
        _text(record.card_token, "card_token"),
        _integer(record.timestamp, "timestamp"),
        _integer(record.amount_minor, "amount_minor"),
        _text(record.currency, "currency"),
        _optional_integer(record.mcc, "mcc"),
        _optional_integer(record.entry_mode, "entry_mode"),
        _integer(record.local_weekday, "local_weekday"),
        _integer(record.local_hour, "local_hour"),
        _pack_features(record.features),
        _text(record.fingerprint, "fingerprint"),
        _text(record.decision, "decision"),
        score,
        _text(record.reasons_json, "reasons_json"),
        _text(record.model_version, "model_version"),
        1 if record.stand_in else 0,
        _real(record.received_at, "received_at"),
    )


def _decode_record(row: tuple[object, ...]) -> ScreenedRecord:
    (
        terminal_id,
        transaction_id,
        card_token,
        timestamp,
        amount_minor,
        currency,
        mcc,
        entry_mode,
        weekday,
        hour,
        features,
        print_,
        decision,
        score,
        reasons,
        version,
        stand_in,
        received_at,
    ) = row
    assert isinstance(features, bytes)
    return ScreenedRecord(
        terminal_id=str(terminal_id),
        transaction_id=str(transaction_id),
        card_token=str(card_token),
        timestamp=_as_int(timestamp),
        amount_minor=_as_int(amount_minor),
        currency=str(currency),
        mcc=None if mcc is None else _as_int(mcc),
        entry_mode=None if entry_mode is None else _as_int(entry_mode),
        local_weekday=_as_int(weekday),
        local_hour=_as_int(hour),
        features=_unpack_features(features),
        fingerprint=str(print_),
        decision=str(decision),
        score=None if score is None else _as_float(score),
        reasons_json=str(reasons),
        model_version=str(version),
        stand_in=bool(stand_in),
        received_at=_as_float(received_at),
    )


def _as_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _as_float(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


def _encode_outcome(outcome: OutcomeRecord, recorded_at: float) -> tuple[object, ...]:
    try:
        return (
            _text(outcome.terminal_id, "terminal_id"),
            _text(outcome.transaction_id, "transaction_id"),
            _text(outcome.outcome, "outcome"),
            1 if outcome.is_fraud else 0,
            _integer(outcome.reported_at, "reported_at"),
            recorded_at,
        )
    except _RecordError as exc:
        raise ValueError(f"outcome record rejected: {exc}") from None


def _decode_outcome(row: tuple[object, ...]) -> OutcomeRecord:
    terminal_id, transaction_id, outcome, is_fraud, reported_at = row
    return OutcomeRecord(
        str(terminal_id), str(transaction_id), str(outcome), bool(is_fraud), _as_int(reported_at)
    )
