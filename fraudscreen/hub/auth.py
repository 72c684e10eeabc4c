"""Who is calling: a site (bearer token or mTLS certificate) or a publisher (analyst token).

Bearer tokens travel as gRPC metadata `authorization: Bearer <token>` and are looked up by
hash (see tokens.py). When the hub requires client certificates, a call without a token
is the site named by the certificate's common name; a token, when sent, always wins. Only
publisher tokens may publish, and only site credentials may push or fetch.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from fraudscreen.hub.errors import AuthenticationError, PermissionDeniedError
from fraudscreen.hub.tokens import NAME, TokenFile

_SCHEME = "bearer"


class Role(enum.Enum):
    SITE = "site"
    PUBLISHER = "publisher"


@dataclass(frozen=True)
class Caller:
    role: Role
    name: str  # site id, or the publisher's name
    via: str  # "token" or "certificate"


class Authenticator:
    def __init__(
        self,
        sites: TokenFile,
        publishers: TokenFile,
        *,
        sites_from_certificates: bool = False,
    ) -> None:
        self.sites = sites
        self.publishers = publishers
        self.sites_from_certificates = sites_from_certificates

    def authenticate(
        self,
        metadata: Sequence[tuple[str, str | bytes]],
        certificate_names: Sequence[bytes] = (),
    ) -> Caller:
        """The caller behind a call's metadata and its verified client certificate's
        common names (from the TLS auth context); raises AuthenticationError."""
        values = [v for k, v in metadata if k.lower() == "authorization"]
        if len(values) > 1:
            raise AuthenticationError("send exactly one 'authorization' metadata entry")
        if values:
            return self._from_token(values[0])
        if self.sites_from_certificates and len(certificate_names) == 1:
            name = certificate_names[0].decode("utf-8", "replace")
            if NAME.fullmatch(name):
                return Caller(Role.SITE, name, "certificate")
            raise AuthenticationError(
                "the client certificate's common name is not a site id (1-64 of "
                "A-Z a-z 0-9 . _ -); issue the site a certificate with CN=<site id> or "
                "send its bearer token"
            )
        raise AuthenticationError(
            "no credentials: send metadata 'authorization: Bearer <token>' with the token "
            "from `fraudscreen hub add-site`"
            + (" (or a client certificate)" if self.sites_from_certificates else "")
        )

    def _from_token(self, value: str | bytes) -> Caller:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != _SCHEME or not token:
            raise AuthenticationError(
                "the authorization metadata must be 'Bearer <token>'; check the hub token "
                "setting of the gateway"
            )
        site = self.sites.lookup(token)
        if site is not None:
            return Caller(Role.SITE, site, "token")
        publisher = self.publishers.lookup(token)
        if publisher is not None:
            return Caller(Role.PUBLISHER, publisher, "token")
        raise AuthenticationError(
            "unknown or revoked token; ask the hub operator for this site's token "
            "(`fraudscreen hub add-site`) and configure it on the gateway"
        )


def require_site(caller: Caller) -> str:
    """The site id of a site caller; publishers may not push or fetch."""
    if caller.role is not Role.SITE:
        raise PermissionDeniedError(
            "a publisher token may only publish releases; gateways push and fetch with "
            "their own site token"
        )
    return caller.name


def require_own_site(caller: Caller, site_id: str) -> None:
    """A site pushes its own batches only."""
    own = require_site(caller)
    if site_id != own:
        raise PermissionDeniedError(
            f"batch.site_id is {site_id[:64]!r} but these credentials belong to site "
            f"{own!r}; a site may push only its own batches: check the gateway's site.id "
            "and the token it sends"
        )


def require_publisher(caller: Caller) -> str:
    if caller.role is not Role.PUBLISHER:
        raise PermissionDeniedError(
            "publishing needs a publisher token (an analyst's, from "
            "`fraudscreen hub add-publisher`); site credentials cannot publish releases"
        )
    return caller.name
