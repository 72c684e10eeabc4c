"""Exceptions -> google.rpc.Status, with a BadRequest detail naming each bad field.

Each service builds its own `StatusMap` and registers the errors it knows (the gateway
its journal and screening errors, the hub its refusals), so this module knows only the
request errors every service shares: a bad field, an undecodable message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from fraudscreen.rpc.parsing import UndecodableRequestError


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


class RequestInvalidError(ValueError):
    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations


def error_status(
    code: grpc.StatusCode, message: str, violations: list[FieldViolation] | None = None
) -> status_pb2.Status:
    """A google.rpc.Status, with a BadRequest detail naming each bad field."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if violations:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in violations
                ]
            )
        )
        status.details.append(detail)
    return status


_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def code_name(status: status_pb2.Status) -> str:
    return _CODE_NAMES.get(status.code, "UNKNOWN")


Violations = Callable[[Exception], list[FieldViolation] | None]


class StatusMap:
    """A service's mapping of failures to the status its caller can act on.

    The most specific registered class of an exception decides (its MRO is walked), so
    registration order does not matter. Anything unregistered is logged with its
    traceback and answered INTERNAL without detail: the caller learns nothing internal.
    """

    def __init__(self, *, logger: Any, internal_event: str, internal_message: str) -> None:
        self._log = logger
        self._internal_event = internal_event
        self._internal_message = internal_message
        self._codes: dict[type[BaseException], tuple[grpc.StatusCode, Violations | None]] = {}
        self.register(
            RequestInvalidError,
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda exc: exc.violations if isinstance(exc, RequestInvalidError) else None,
        )
        self.register(UndecodableRequestError, grpc.StatusCode.INVALID_ARGUMENT)

    def register(
        self, error: type[Exception], code: grpc.StatusCode, violations: Violations | None = None
    ) -> None:
        """`violations(exc)` adds BadRequest field violations to the status."""
        self._codes[error] = (code, violations)

    def register_all(self, errors: Iterable[type[Exception]], code: grpc.StatusCode) -> None:
        for error in errors:
            self.register(error, code)

    def status(self, exc: Exception) -> status_pb2.Status:
        for cls in type(exc).__mro__:
            entry = self._codes.get(cls)
            if entry is not None:
                code, violations = entry
                return error_status(code, str(exc), violations(exc) if violations else None)
        self._log.error(self._internal_event, error_type=type(exc).__name__, exc_info=exc)
        return error_status(grpc.StatusCode.INTERNAL, self._internal_message)
