"""Shared fixtures: a small simulated history, a bundle trained on it, a compile cache,
TLS material.

Everything is real (simulator, LightGBM, gcc via TL2cgen); sizes are small so the whole
suite stays within CI's budget. Session-scoped so each is built once (TLS: per module).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import structlog

from fraudscreen.history import validate_history
from fraudscreen.model.bundle import Bundle, load_bundle
from fraudscreen.model.train import TrainingConfig, train_bundle
from fraudscreen.simulate import SimulationConfig, simulate
from loadtests.postgres_server import PostgresServer, started_server
from tests.support.stacked_bundle import build_correction
from tests.support.tls_material import TLSFiles, make_tls_files

SMALL_SIMULATION = SimulationConfig(customers=400, terminals=800, days=70, seed=3)
SMALL_TRAINING = TrainingConfig(train_end=dt.date(2018, 5, 20), max_trees=40, name="test")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A test that configures logging (an in-process CLI call, `configure_logging` under
    capsys) must not leave later tests writing to its captured, closed stream."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Compiled libraries go to a per-run cache, never the user's."""
    cache = tmp_path_factory.mktemp("compile-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("FRAUDSCREEN_CACHE_DIR", str(cache))
    yield cache
    patch.undo()


@pytest.fixture(scope="session")
def small_history() -> pd.DataFrame:
    return validate_history(simulate(SMALL_SIMULATION, progress=False))


@pytest.fixture(scope="session")
def small_bundle_path(
    small_history: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "small"
    train_bundle(small_history, path, SMALL_TRAINING, progress=False, source="small")
    return path


@pytest.fixture(scope="session")
def score_band_bundle_path(
    small_history: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The small model, trained so that its gateways release score-band tables."""
    path = tmp_path_factory.mktemp("bundle") / "score-bands"
    train_bundle(
        small_history, path, SMALL_TRAINING, progress=False, source="small", score_bands=True
    )
    return path


@pytest.fixture(scope="session")
def small_bundle(small_bundle_path: Path) -> Bundle:
    return load_bundle(small_bundle_path)


@pytest.fixture(scope="session")
def other_bundle_path(
    small_history: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A second model (another version) for release and hot-swap tests."""
    path = tmp_path_factory.mktemp("bundle") / "other"
    config = TrainingConfig(train_end=dt.date(2018, 5, 20), max_trees=25, name="test-b")
    train_bundle(small_history, path, config, progress=False, source="small")
    return path


@pytest.fixture(scope="session")
def correction_path(
    tmp_path_factory: pytest.TempPathFactory,
    small_history: pd.DataFrame,
    score_band_bundle_path: Path,
) -> Path:
    """A stacked bundle: the hub's correction of the score-band model, with its report."""
    root = tmp_path_factory.mktemp("stacked")
    return build_correction(root, small_history, score_band_bundle_path)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """Throwaway CA, server and client certificates (one set per test module)."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (tests ask it for fresh databases)."""
    server = started_server(pytest.fail)
    try:
        yield server
    finally:
        server.stop()
