"""The service benchmark (`python -m loadtests.bench_service`), split by concern."""
