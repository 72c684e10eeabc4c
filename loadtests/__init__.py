"""Load tests for the gateway: a Locust gRPC user, exact µs latencies and SLO checks.

Run ``python -m loadtests.run_slo`` (see ``run_slo.py``); the SLO numbers live in ``slo.toml``.
"""
