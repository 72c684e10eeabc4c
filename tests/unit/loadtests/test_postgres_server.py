"""The throwaway PostgreSQL server the tests and the fleet load test start."""

from __future__ import annotations

import pytest


def test_missing_postgresql_fails_the_tests_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loadtests import postgres_server

    monkeypatch.setattr(postgres_server, "find_bindir", lambda: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y postgresql"):
        postgres_server.started_server(pytest.fail)
