"""The shared exception -> status mapping, and that the hub stands on rpc/ alone."""

from __future__ import annotations

import grpc
import structlog
from google.rpc import error_details_pb2, status_pb2

from fraudscreen.rpc.parsing import UndecodableRequestError, decoded, lenient_parser
from fraudscreen.rpc.status import (
    FieldViolation,
    RequestInvalidError,
    StatusMap,
    code_name,
)
from fraudscreen.v1 import sync_pb2 as pb


class _Refused(Exception):
    pass


class _RefusedHarder(_Refused):
    pass


def _statuses() -> StatusMap:
    statuses = StatusMap(
        logger=structlog.get_logger("test"),
        internal_event="test.internal_error",
        internal_message="internal error; the test logged it",
    )
    statuses.register(_RefusedHarder, grpc.StatusCode.ALREADY_EXISTS)
    statuses.register(
        _Refused,
        grpc.StatusCode.PERMISSION_DENIED,
        lambda _exc: [FieldViolation("who", "not you")],
    )
    return statuses


def _violations(status: status_pb2.Status) -> list[tuple[str, str]]:
    details = status.details
    if not details:
        return []
    bad = error_details_pb2.BadRequest()
    assert details[0].Unpack(bad)
    return [(v.field, v.description) for v in bad.field_violations]


def test_a_registered_error_gets_its_code_message_and_field_violations() -> None:
    status = _statuses().status(_Refused("no entry"))
    assert code_name(status) == "PERMISSION_DENIED"
    assert status.message == "no entry"
    assert _violations(status) == [("who", "not you")]


def test_the_most_specific_registered_class_decides_whatever_the_order() -> None:
    status = _statuses().status(_RefusedHarder("twice"))
    assert code_name(status) == "ALREADY_EXISTS"
    assert _violations(status) == []


def test_every_service_maps_bad_fields_and_undecodable_bytes_to_invalid_argument() -> None:
    statuses = _statuses()
    bad = statuses.status(RequestInvalidError([FieldViolation("batch.period", "required")]))
    assert code_name(bad) == "INVALID_ARGUMENT"
    assert _violations(bad) == [("batch.period", "required")]
    garbage = lenient_parser(pb.PushBatchRequest)(b"\xff\xff\xff")
    try:
        decoded(garbage, pb.PushBatchRequest)
    except UndecodableRequestError as exc:
        status = statuses.status(exc)
    assert code_name(status) == "INVALID_ARGUMENT"
    assert "fraudscreen.v1.PushBatchRequest" in status.message


def test_an_unregistered_error_is_internal_and_tells_the_caller_nothing() -> None:
    status = _statuses().status(KeyError("/secret/path"))
    assert code_name(status) == "INTERNAL"
    assert status.message == "internal error; the test logged it"
    assert _violations(status) == []
