"""The traffic every server gets: the simulator's transactions, with ids unique to a run, sliced
in time order, pre-serialized."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fraudscreen.v1 import screening_pb2 as pb
from loadtests.bench.plan import LAP_SECONDS, MAX_AGE_DAYS, TRAFFIC_DAYS, TRAFFIC_LAPS
from loadtests.gateway import gateway_env as loadtest_gateway_env


def load_requests(laps: int = TRAFFIC_LAPS) -> list[pb.ScreenRequest]:
    """The simulator's traffic in time order, shifted to end now (fraudscreen.replay), in
    `laps` laps (1: as simulated, for a run that needs fewer than ~350k transactions)."""
    from fraudscreen.replay import load_traffic, requests

    frame = load_traffic(None, days=TRAFFIC_DAYS, limit=None)
    return in_laps([request for request, _fraud in requests(frame)], laps, LAP_SECONDS)


def in_laps(
    requests: Sequence[pb.ScreenRequest], laps: int, lap_seconds: int
) -> list[pb.ScreenRequest]:
    """The traffic `laps` times over, each lap `lap_seconds` after the one before, the last
    lap as given: time keeps moving forward (the caller picks `lap_seconds` longer than the
    traffic and a whole number of weeks, so weekdays and hours stay as simulated)."""
    out: list[pb.ScreenRequest] = []
    for lap in range(laps - 1, 0, -1):
        for request in requests:
            earlier = pb.ScreenRequest()
            earlier.CopyFrom(request)
            earlier.timestamp.seconds -= lap * lap_seconds
            out.append(earlier)
    out.extend(requests)
    return out


def assign_ids(requests: Sequence[pb.ScreenRequest], prefix: str) -> None:
    """Give each request a transaction id unique to ``prefix``, so none is a retry."""
    for index, request in enumerate(requests):
        request.transaction_id = f"{prefix}.{index}"


class TrafficCursor:
    """One server's traffic: consecutive slices, so its state moves forward in time like a
    real site's, phase after phase. Serialized slice by slice (the request objects are
    shared by all servers), with transaction ids unique to this server and run.

    ``wrap``: start over at the end (ids stay unique). Only for the transport floor, which
    keeps no state and would otherwise run out of traffic in the fast ScreenBatch phases.
    """

    def __init__(
        self, requests: Sequence[pb.ScreenRequest], prefix: str, *, wrap: bool = False
    ) -> None:
        self._requests = requests
        self._prefix = prefix
        self._next = 0
        self._wrap = wrap

    def peek(self, count: int) -> list[bytes]:
        """Wire bytes of the next ``count`` requests (fewer at the end), sent as-is."""
        payloads = []
        total = len(self._requests)
        stop = self._next + count if self._wrap else min(total, self._next + count)
        for index in range(self._next, stop):
            request = self._requests[index % total]
            request.transaction_id = f"{self._prefix}.{index}"
            payloads.append(request.SerializeToString())
        return payloads

    def advance(self, count: int) -> None:
        self._next += count
        if not self._wrap:
            self._next = min(len(self._requests), self._next)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def frame_batch(payloads: Sequence[bytes]) -> bytes:
    """A serialized ScreenBatchRequest made of already serialized ScreenRequests: each one
    as field 1 (``requests``), length-delimited. Byte for byte what protobuf would write."""
    return b"".join(b"\x0a" + _varint(len(payload)) + payload for payload in payloads)


def gateway_env(directory: Path, predictor: str) -> dict[str, str]:
    """FRAUDSCREEN_* settings of every gateway here: the load tests' throwaway gateway
    (loopback, own journal and key) with this predictor, accepting the oldest traffic."""
    return loadtest_gateway_env(
        directory,
        FRAUDSCREEN_MODEL_PREDICTOR=predictor,
        FRAUDSCREEN_SCREENING_MAX_TRANSACTION_AGE_DAYS=str(MAX_AGE_DAYS),
    )
