"""The gRPC C-core defaults the CLI sets before grpc is imported."""

from __future__ import annotations

from fraudscreen.rpc.runtime import (
    GRPC_EXPERIMENTS_ENV,
    IOMGR_POLLING,
    prefer_low_latency_io,
)


def test_default_is_set_only_when_the_operator_set_nothing() -> None:
    empty: dict[str, str] = {}
    assert prefer_low_latency_io(empty) == IOMGR_POLLING
    assert empty == {GRPC_EXPERIMENTS_ENV: IOMGR_POLLING}
    own = {GRPC_EXPERIMENTS_ENV: "-event_engine_dns"}
    assert prefer_low_latency_io(own) == "-event_engine_dns"
    assert own[GRPC_EXPERIMENTS_ENV] == "-event_engine_dns"
