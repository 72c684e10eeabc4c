"""A raw HTTP/2 peer (the `h2` package over a plain socket) that opens gRPC calls by sending
HEADERS and then never sends the DATA frame with the request: a half-open call."""

from __future__ import annotations

import socket
import time

import h2.config
import h2.connection
import h2.events


class HalfOpenPeer:
    """One TCP connection to 127.0.0.1:port carrying half-open calls."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self._conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self._conn.initiate_connection()
        self._flush()
        self.trailers: dict[int, dict[str, str]] = {}

    def open_call(self, path: str) -> int:
        """Send the HEADERS of a call to `path` (no request, stream left open)."""
        stream_id = self._conn.get_next_available_stream_id()
        self._conn.send_headers(
            stream_id,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "127.0.0.1"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        self._flush()
        return stream_id

    def wait_for_status(self, stream_id: int, timeout: float) -> dict[str, str] | None:
        """The final headers (grpc-status, grpc-message) of `stream_id`, or None by `timeout`."""
        deadline = time.monotonic() + timeout
        while stream_id not in self.trailers and time.monotonic() < deadline:
            self._sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            for event in self._conn.receive_data(data):
                headers = getattr(event, "headers", None)
                if (
                    isinstance(event, h2.events.TrailersReceived | h2.events.ResponseReceived)
                    and headers is not None
                ):
                    values = {str(k): str(v) for k, v in headers}
                    if "grpc-status" in values:
                        self.trailers[event.stream_id] = values
            self._flush()
        return self.trailers.get(stream_id)

    def _flush(self) -> None:
        self._sock.sendall(self._conn.data_to_send())

    def close(self) -> None:
        self._sock.close()
