"""The model updater's rules without a gateway or a hub: when it reads the release state,
what it verifies and refuses (the running model stays), the shadow trial before a swap,
and following `fraudscreen model rollback` back to an earlier model. The same workflow on a
running gateway under load: tests/integration/test_releases.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from fraudscreen.features.online import OnlineFeatureStore
from fraudscreen.gateway import updater as updater_module
from fraudscreen.gateway.updater import ModelUpdater
from fraudscreen.model.bundle import MANIFEST_FILE, MODEL_FILE, Manifest, rewrite_manifest
from fraudscreen.model.releases import ReleaseError, ReleaseStore
from fraudscreen.model.signing import generate_keypair
from fraudscreen.policy import Policy, PolicyRules
from fraudscreen.screening import ActiveModel, ModelSlot, ScreeningEngine
from fraudscreen.storage.journal import Journal, JournalSettings
from fraudscreen.transaction import Transaction
from tests.support.service_support import gateway_config
from tests.support.signed_releases import (
    Keys,
    files_of,
    sign_manifest_only,
    signed_copy,
    version_of,
)

POLICY = Policy(PolicyRules())


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("keys")
    generate_keypair(root / "release.key", root / "release.pub")
    generate_keypair(root / "rogue.key", root / "rogue.pub")
    return Keys(root / "release.key", root / "release.pub", root / "rogue.key")


@pytest.fixture(scope="module")
def live_model(small_bundle_path: Path) -> ActiveModel:
    from fraudscreen.model.bundle import load_bundle

    return ActiveModel.from_bundle(load_bundle(small_bundle_path), POLICY)


@dataclass
class Site:
    """An updater with what it talks to on a gateway: the live slot, the engine, and the
    two callbacks (the gateway's metrics and health), recorded."""

    updater: ModelUpdater
    slot: ModelSlot
    engine: ScreeningEngine
    swapped: list[str] = field(default_factory=list)
    results: list[tuple[str, str | None]] = field(default_factory=list)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(JournalSettings(tmp_path / "journal.db"))
    journal.start()
    yield journal
    journal.close()


@pytest.fixture
def site_for(
    tmp_path: Path, small_bundle_path: Path, live_model: ActiveModel, journal: Journal
) -> Callable[..., Site]:
    def make(trusted: Path | None, shadow_transactions: int = 0) -> Site:
        extra = {"FRAUDSCREEN_MODEL_SHADOW_TRANSACTIONS": str(shadow_transactions)}
        if trusted is not None:
            extra["FRAUDSCREEN_MODEL_TRUSTED_KEYS"] = str(trusted)
        config = gateway_config(tmp_path / "gw", small_bundle_path, extra)
        slot = ModelSlot(live_model)
        engine = ScreeningEngine(
            store=OnlineFeatureStore(), slot=slot, policy=POLICY, journal=journal
        )
        swapped: list[str] = []
        results: list[tuple[str, str | None]] = []
        updater = ModelUpdater(
            config,
            slot=slot,
            engine=engine,
            policy=POLICY,
            on_swap=lambda model: swapped.append(model.version),
            on_result=lambda result, error: results.append((result, error)),
        )
        return Site(updater, slot, engine, swapped, results)

    return make


# -- reading the release state at start-up --------------------------------------------------


def test_without_trusted_keys_updates_are_off_and_the_state_file_is_not_read(
    site_for: Callable[..., Site],
) -> None:
    gateway = site_for(None)
    gateway.updater.store.root.mkdir(parents=True)
    (gateway.updater.store.root / "state.json").write_text("{not json")
    assert not gateway.updater.enabled
    assert gateway.updater.current_release() is None


def test_with_no_release_installed_the_configured_bundle_stays(
    site_for: Callable[..., Site], keys: Keys
) -> None:
    gateway = site_for(keys.public)
    assert gateway.updater.enabled and gateway.updater.current_release() is None


def test_the_installed_release_is_verified_again_at_start(
    site_for: Callable[..., Site], keys: Keys, other_bundle_path: Path, tmp_path: Path
) -> None:
    gateway = site_for(keys.public)
    release = signed_copy(other_bundle_path, tmp_path / "release", keys.private)
    assert gateway.updater.install(version_of(release), files_of(release))
    current = gateway.updater.current_release()
    assert current is not None and current.model_version == version_of(release)

    installed = gateway.updater.store.path(version_of(release)) / MODEL_FILE
    installed.write_bytes(installed.read_bytes() + b"\n# changed on disk\n")
    with pytest.raises(ReleaseError, match="no longer verifies"):
        gateway.updater.current_release()


# -- one install ----------------------------------------------------------------------------


def test_a_signed_release_is_swapped_in_and_becomes_the_current_one(
    site_for: Callable[..., Site], keys: Keys, other_bundle_path: Path, tmp_path: Path
) -> None:
    gateway = site_for(keys.public)
    before = gateway.slot.current
    release = signed_copy(other_bundle_path, tmp_path / "release", keys.private)
    version = version_of(release)
    assert gateway.updater.install(version, files_of(release)) is True
    assert gateway.slot.current is not None and gateway.slot.current.version == version
    assert gateway.swapped == [version] and gateway.results == [("swapped", None)]
    state = gateway.updater.store.state()
    assert (state.current, state.previous) == (version, None)
    assert before is not None and before.version != version


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("unsigned", "unsigned bundle"),
        ("untrusted", "signed by untrusted key"),
        ("model_byte", "model.txt does not match its sha256"),
        ("manifest_byte", "manifest.sig does not match"),
        ("other_features", "features in a different order"),
        ("announced_as_another_version", "manifest says"),
        ("extra_file", "unexpected files"),
    ],
)
def test_a_bad_release_is_refused_and_the_running_model_stays(
    site_for: Callable[..., Site],
    keys: Keys,
    other_bundle_path: Path,
    tmp_path: Path,
    damage: str,
    says: str,
) -> None:
    gateway = site_for(keys.public)
    live = gateway.slot.current
    key = {"unsigned": None, "untrusted": keys.untrusted_private}.get(damage, keys.private)
    release = signed_copy(other_bundle_path, tmp_path / "release", key)
    version = version_of(release)
    files = files_of(release)
    if damage == "model_byte":
        data = bytearray(files[MODEL_FILE])
        data[len(data) // 3] ^= 0x04
        files[MODEL_FILE] = bytes(data)
    elif damage == "manifest_byte":
        text = files[MANIFEST_FILE].decode().replace('"decline": 0', '"decline": 1', 1)
        files[MANIFEST_FILE] = text.encode()
    elif damage == "other_features":
        manifest = json.loads(files[MANIFEST_FILE])
        manifest["features"] = list(reversed(manifest["features"]))
        rewrite_manifest(release, Manifest.from_json(manifest))
        sign_manifest_only(release, keys.private)  # validly signed, still wrong
        files = files_of(release)
    elif damage == "announced_as_another_version":
        version = "v-someone-else"
    elif damage == "extra_file":
        files["model.so"] = b"\x7fELF"  # never a shipped binary
    assert gateway.updater.install(version, files) is False
    assert gateway.slot.current is live and gateway.swapped == []
    [(result, reason)] = gateway.results
    assert result == "refused" and reason is not None and says in reason
    assert not gateway.updater.store.has(version)
    assert gateway.updater.store.state().current is None


# -- shadow trial ---------------------------------------------------------------------------


def test_a_candidate_is_scored_in_shadow_on_live_traffic_before_the_swap(
    site_for: Callable[..., Site], keys: Keys, other_bundle_path: Path, tmp_path: Path
) -> None:
    gateway = site_for(keys.public, shadow_transactions=5)
    live = gateway.slot.current
    release = signed_copy(other_bundle_path, tmp_path / "release", keys.private)
    stop = threading.Event()
    answered: list[str] = []

    def traffic() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            tx = Transaction("T1", f"tx-{n}", "a" * 64, 1_000 + n, "EUR", 1_526_000_000 + n, 4, 13)
            answered.append(gateway.engine.screen(tx).model_version)

    with capture_logs() as logs:
        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            assert gateway.updater.install(version_of(release), files_of(release))
        finally:
            stop.set()
            worker.join(10)
    [shadow] = [e for e in logs if e["event"] == "model.shadow_result"]
    assert shadow["transactions"] == 5 and shadow["completed"] is True
    assert live is not None and shadow["live"] == live.version
    assert answered[:5] == [live.version] * 5  # the candidate decided none of them


def test_without_a_live_model_there_is_no_shadow_trial(
    site_for: Callable[..., Site],
    keys: Keys,
    other_bundle_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(updater_module, "SHADOW_TIMEOUT_SECONDS", 2.0)  # a wrong trial ends
    gateway = site_for(keys.public, shadow_transactions=5)
    gateway.slot.swap(None)  # stand-in: nothing to compare with
    release = signed_copy(other_bundle_path, tmp_path / "release", keys.private)
    with capture_logs() as logs:
        assert gateway.updater.install(version_of(release), files_of(release))
    assert not [e for e in logs if e["event"] == "model.shadow_result"]


# -- following the release state (rollback) -------------------------------------------------


def test_a_rollback_to_the_configured_bundle_is_followed(
    site_for: Callable[..., Site], keys: Keys, other_bundle_path: Path, tmp_path: Path
) -> None:
    gateway = site_for(keys.public)
    configured = gateway.slot.current
    release = signed_copy(other_bundle_path, tmp_path / "release", keys.private)
    assert gateway.updater.install(version_of(release), files_of(release))
    ReleaseStore(gateway.updater.store.root).rollback()  # what `fraudscreen model rollback` does
    gateway.updater.follow_local_state()
    assert configured is not None and gateway.slot.current is not None
    assert gateway.slot.current.version == configured.version
    assert gateway.results[-1] == ("rolled_back", None)
    assert gateway.swapped == [version_of(release), configured.version]


def test_its_own_install_and_an_unchanged_state_file_are_not_read_again(
    site_for: Callable[..., Site], keys: Keys, other_bundle_path: Path, tmp_path: Path
) -> None:
    """The state file is checked every 2 s: only a rewrite by someone else (a rollback)
    makes the updater load and verify a release again."""
    gateway = site_for(keys.public)
    release = signed_copy(other_bundle_path, tmp_path / "release", keys.private)
    assert gateway.updater.install(version_of(release), files_of(release))
    current = gateway.slot.current
    installed = gateway.updater.store.path(version_of(release)) / MODEL_FILE
    installed.write_bytes(installed.read_bytes() + b"\n# changed on disk\n")
    gateway.updater.follow_local_state()  # would raise ReleaseError if it verified again
    assert gateway.slot.current is current and len(gateway.swapped) == 1


def test_a_rewritten_state_naming_the_live_model_swaps_nothing(
    site_for: Callable[..., Site], keys: Keys, other_bundle_path: Path, tmp_path: Path
) -> None:
    gateway = site_for(keys.public)
    release = signed_copy(other_bundle_path, tmp_path / "release", keys.private)
    assert gateway.updater.install(version_of(release), files_of(release))
    current = gateway.slot.current
    store = ReleaseStore(gateway.updater.store.root)
    stamp = store.state_stamp()
    store.activate(version_of(release))  # the same version, the file written again
    assert store.state_stamp() != stamp
    gateway.updater.follow_local_state()
    assert gateway.slot.current is current and len(gateway.swapped) == 1
