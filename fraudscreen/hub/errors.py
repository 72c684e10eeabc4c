"""The hub's refusals, one class per gRPC status a caller must handle differently."""

from __future__ import annotations


class AuthenticationError(Exception):
    """No credentials, or credentials the hub does not know (UNAUTHENTICATED)."""


class PermissionDeniedError(Exception):
    """Known caller, not allowed to do this (PERMISSION_DENIED)."""


class UnknownSchemaError(Exception):
    """A batch binned with a schema the hub does not accept (FAILED_PRECONDITION)."""


class ReleaseRejectedError(Exception):
    """A release whose signature or bundle does not verify (FAILED_PRECONDITION)."""
