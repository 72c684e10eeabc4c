"""Check a listening address before a server takes it, so the error names the setting.

gRPC reports a port in use with its own `E... add_port.cc` log line and a bare zero, and
the metrics listener with `[Errno 98] Address already in use`; neither says which setting
to change. Binding a probe socket first turns that into one line that does.
"""

from __future__ import annotations

import errno
import socket


class AddressInUseError(OSError):
    """The address a setting names is taken by another process."""


def ensure_can_listen(host: str, port: int, setting: str) -> None:
    """Raise AddressInUseError (naming `setting`) if `host:port` cannot be bound now.

    Port 0 (any free port) is always fine. SO_REUSEADDR lets the probe through sockets of a
    previous run still in TIME_WAIT, as the servers themselves are let through."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(
                    f"{setting} = {host}:{port}: the address is already in use (another "
                    f"gateway or program listens there); stop it or change {setting}",
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise AddressInUseError(
                    f"{setting} = {host}:{port}: no such address on this machine"
                ) from None
            raise OSError(f"{setting} = {host}:{port}: cannot listen: {exc.strerror}") from None
