"""``host:port`` as the listeners and the hub address are written (IPv6 in brackets).

Shared by the settings' checks and by the servers that bind what they name.
"""

from __future__ import annotations

import ipaddress
import re

_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[::1]:50051``); the host comes back without brackets.

    The host must be an IPv4/IPv6 address or a DNS name; the port 0..65535 (0: ephemeral).
    Raises ValueError with a message that quotes ``text``.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r} is not host:port (no ']' after the IPv6 address)")
        host, rest = text[1:end], text[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"{text!r} is not host:port (no ':port' after ']')")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(f"{text!r} is not host:port")
        if ":" in host:
            raise ValueError(
                f"{text!r} is not host:port (write an IPv6 address in brackets, e.g. [::1]:50051)"
            )
        if not host:
            raise ValueError(
                f"{text!r} is not host:port (the host is missing; 0.0.0.0 or [::] listens "
                "on all interfaces)"
            )
        if not _is_ipv4_or_hostname(host):
            raise ValueError(f"{text!r}: {host!r} is not an IP address or host name")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number 0..65535")
    return host, int(port_text)


def _is_ipv4_or_hostname(host: str) -> bool:
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_HOSTNAME_LABEL.fullmatch(label) for label in labels)
