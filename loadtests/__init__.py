"""Load tests for the gateway: a Locust gRPC user, exact µs latencies and SLO checks.

Run ``python -m loadtests.run_slo`` (see ``run_slo.py``); the SLO numbers live in ``slo.toml``.
"""

from fraudscreen.rpc.runtime import prefer_low_latency_io

# Load generators use the same gRPC I/O path as the gateway (set before anything here
# imports grpc): a client on the gateway's own cores should not cost more than it must.
prefer_low_latency_io()
