"""gRPC C-core settings that must be in place before `import grpc` reads them.

grpcio 1.85 moves socket I/O onto its EventEngine thread pool, so every call crosses
threads a few more times than on the older iomgr polling path, where the thread waiting
for a completion does the polling itself. Both are supported in this release; the
EventEngine pieces are "experiments" that GRPC_EXPERIMENTS switches off. Measured on the
2-core gateway (see README, `python -m loadtests.bench_service`): an empty unary call took
~500 µs (p50) with them and ~300 µs without, on both the server and client side.

An operator's own GRPC_EXPERIMENTS always wins. This module must not import grpc.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

GRPC_EXPERIMENTS_ENV = "GRPC_EXPERIMENTS"
# Each name is checked against the installed grpcio by tests/test_grpc_runtime.py: an
# unknown one only logs "Unknown experiment" and is otherwise ignored.
IOMGR_POLLING = ",".join(
    (
        "-event_engine_client",
        "-event_engine_listener",
        "-event_engine_for_all_other_endpoints",
        "-event_engine_callback_cq",
    )
)


def prefer_low_latency_io(environ: MutableMapping[str, str] | None = None) -> str:
    """Default GRPC_EXPERIMENTS to the iomgr polling path; returns the value in effect."""
    env = os.environ if environ is None else environ
    return env.setdefault(GRPC_EXPERIMENTS_ENV, IOMGR_POLLING)
