"""Fixtures of the hub's integration tests: one signing key pair per test module, a real
hub server per test, signed bundles per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hub_support import Bundles, Hub, Keys, make_bundles, make_keys, running_hub


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def hub(tmp_path: Path, keys: Keys) -> Iterator[Hub]:
    with running_hub(tmp_path / "hub", keys) as running:
        yield running


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Bundles:
    return make_bundles(tmp_path_factory.mktemp("bundles"), keys)
