"""Lenient request parsing: bytes that are not the expected message become a value the
handler answers with INVALID_ARGUMENT (gRPC itself would answer INTERNAL and log a
traceback)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

M = TypeVar("M", bound=Message)


class UndecodableRequestError(ValueError):
    """The bytes are not a valid protobuf message of the expected type."""


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request whose bytes did not parse, so the handler can answer
    INVALID_ARGUMENT (gRPC itself would answer INTERNAL and log a traceback)."""

    type_name: str
    error: str


def lenient_parser(message_type: type[Message]) -> Callable[[bytes], object]:
    def parse(data: bytes) -> object:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return Undecodable(message_type.DESCRIPTOR.full_name, str(exc))

    return parse


def decoded(request: object, message_type: type[M]) -> M:
    """The parsed message, or UndecodableRequestError (-> INVALID_ARGUMENT)."""
    if isinstance(request, Undecodable):
        raise UndecodableRequestError(
            f"request is not a valid {request.type_name} message ({request.error})"
        )
    assert isinstance(request, message_type)
    return request
