"""`fraudscreen evaluate --privacy --sites` from the command line: bad fleet sizes."""

from __future__ import annotations

import pytest

from tests.support.service_support import run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sites", "20,x"], "is not a list like 20,100,500"),
        (["--sites", "0"], "site counts must be positive"),
        (["--sites", "2", "--schemas", "score bands,bogus"], "schemas 'bogus' unknown"),
        (["--schemas", " , "], "give at least one name"),
    ],
)
def test_bad_fleet_sizes_are_one_line_errors(args: list[str], message: str) -> None:
    result = run_cli("evaluate", "--privacy", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
