"""Fixtures of the configuration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.config_files import write


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths from env and defaults resolve against the cwd: make it known."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    """Dummy PEM files: only existence and readability are checked here."""
    names = ("server.crt", "server.key", "ca.crt")
    return {name: write(tmp_path / "pki" / name, f"dummy {name}\n") for name in names}
