"""Signed releases on a running gateway: hot swap under load, refusals, rollback."""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fraudscreen.gateway.server import MODEL_UPDATE_HEALTH, Gateway
from fraudscreen.hub.server import HubServer
from fraudscreen.hub.tokens import add_token
from fraudscreen.model.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    Manifest,
    load_bundle,
    rewrite_manifest,
)
from fraudscreen.model.releases import ReleaseError, ReleaseStore, describe_releases
from fraudscreen.model.signing import (
    PublicKey,
    generate_keypair,
    load_private_key,
    sign_bundle,
)
from fraudscreen.v1 import sync_pb2, sync_pb2_grpc
from tests.service_support import (
    free_port,
    gateway_config,
    run_cli,
    running_gateway,
    running_hub,
    screen_request,
    stub_for,
)


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    untrusted_private: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    root = tmp_path_factory.mktemp("keys")
    generate_keypair(root / "release.key", root / "release.pub")
    generate_keypair(root / "rogue.key", root / "rogue.pub")
    return Keys(root / "release.key", root / "release.pub", root / "rogue.key")


def signed_copy(source: Path, target: Path, key: Path | None) -> Path:
    shutil.copytree(source, target)
    (target / SIGNATURE_FILE).unlink(missing_ok=True)
    if key is not None:
        sign_bundle(target, load_private_key(key))
    return target


def files_of(bundle: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()}


def version_of(bundle: Path) -> str:
    return str(json.loads((bundle / MANIFEST_FILE).read_text())["model_version"])


def sign_manifest_only(bundle: Path, private: Path) -> None:
    """A correct signature over a manifest `sign_bundle` would refuse to sign."""
    key = load_private_key(private)
    signature = key.sign((bundle / MANIFEST_FILE).read_bytes())
    (bundle / SIGNATURE_FILE).write_text(
        json.dumps(
            {
                "algorithm": "ed25519",
                "key_id": PublicKey.from_key(key.public_key()).key_id,
                "signature": base64.b64encode(signature).decode(),
            }
        )
    )


class Traffic:
    """Continuous Screen calls from a background thread, recording every answer."""

    def __init__(self, gw: Gateway) -> None:
        self.channel, self.stub = stub_for(gw)
        self.versions: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                reply = self.stub.Screen(screen_request(f"live-{i}"), timeout=5)
                self.versions.append(reply.model_version)
            except grpc.RpcError as exc:
                self.errors.append(exc.code().name)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.channel.close()

    def wait_for(self, version: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.versions and self.versions[-1] == version:
                return
            time.sleep(0.05)
        raise AssertionError(f"never answered with {version}; last {self.versions[-1:]}")


@pytest.fixture
def hub(tmp_path: Path, keys: Keys) -> Iterator[tuple[HubServer, str, str]]:
    directory = tmp_path / "hub"
    directory.mkdir()
    site_token = add_token(directory / "sites.tokens", "shop-1")
    publisher = add_token(directory / "publishers.tokens", "analyst")
    with running_hub(directory, port=free_port(), trusted_keys=(keys.public,)) as server:
        yield server, site_token, publisher


def publish(server: HubServer, publisher: str, bundle: Path) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        sync_pb2_grpc.SyncStub(channel).PublishRelease(
            sync_pb2.PublishReleaseRequest(
                release=sync_pb2.ModelRelease(
                    model_version=version_of(bundle),
                    files=[
                        sync_pb2.ReleaseFile(name=n, content=c)
                        for n, c in sorted(files_of(bundle).items())
                    ],
                )
            ),
            metadata=(("authorization", f"Bearer {publisher}"),),
            timeout=30,
        )


def test_release_swaps_under_load_and_rolls_back(
    tmp_path: Path,
    small_bundle_path: Path,
    other_bundle_path: Path,
    keys: Keys,
    hub: tuple[HubServer, str, str],
) -> None:
    server, site_token, publisher = hub
    (tmp_path / "site.token").write_text(site_token)
    release = signed_copy(other_bundle_path, tmp_path / "release", keys.private)
    config = gateway_config(
        tmp_path / "gw",
        small_bundle_path,
        {
            "FRAUDSCREEN_SITE_ID": "shop-1",
            "FRAUDSCREEN_MODEL_TRUSTED_KEYS": str(keys.public),
            "FRAUDSCREEN_MODEL_SHADOW_TRANSACTIONS": "25",
            "FRAUDSCREEN_SYNC_HUB": f"127.0.0.1:{server.port}",
            "FRAUDSCREEN_SYNC_TOKEN_FILE": str(tmp_path / "site.token"),
            "FRAUDSCREEN_SYNC_INTERVAL_SECONDS": "1",
            "FRAUDSCREEN_LOGGING_REQUESTS": "non_approve",
        },
    )
    old, new = version_of(small_bundle_path), version_of(release)
    with running_gateway(config) as gw, Traffic(gw) as traffic:
        traffic.wait_for(old)
        publish(server, publisher, release)
        traffic.wait_for(new)
        swapped = list(traffic.versions)
        ReleaseStore(config.model.releases_dir).rollback()
        traffic.wait_for(old)
        time.sleep(2.5)  # the hub still offers the release: it must not come back
        after = list(traffic.versions)
        assert gw.updater.store.state().rejected == [new]
    assert traffic.errors == []
    switch = swapped.index(new)
    assert set(swapped[:switch]) == {old}
    assert set(swapped[switch:]) == {new}  # one switch point, no flapping
    back = after.index(old, switch)
    assert set(after[back:]) == {old}


@pytest.mark.parametrize(
    "damage", ["model_byte", "manifest_byte", "unsigned", "untrusted", "other_features"]
)
def test_bad_releases_are_refused_and_the_old_model_keeps_serving(
    tmp_path: Path, small_bundle_path: Path, other_bundle_path: Path, keys: Keys, damage: str
) -> None:
    key = {"unsigned": None, "untrusted": keys.untrusted_private}.get(damage, keys.private)
    release = signed_copy(other_bundle_path, tmp_path / "release", key)
    if damage == "model_byte":
        data = bytearray((release / MODEL_FILE).read_bytes())
        data[len(data) // 3] ^= 0x04
        (release / MODEL_FILE).write_bytes(bytes(data))
    elif damage == "manifest_byte":
        text = (release / MANIFEST_FILE).read_text().replace('"decline": 0', '"decline": 1', 1)
        (release / MANIFEST_FILE).write_text(text)
    elif damage == "other_features":
        manifest = json.loads((release / MANIFEST_FILE).read_text())
        manifest["features"] = list(reversed(manifest["features"]))
        rewrite_manifest(release, Manifest.from_json(manifest))
        sign_manifest_only(release, keys.private)  # validly signed, still wrong
    config = gateway_config(
        tmp_path / "gw", small_bundle_path, {"FRAUDSCREEN_MODEL_TRUSTED_KEYS": str(keys.public)}
    )
    with running_gateway(config) as gw:
        before = gw.slot.current
        assert before is not None
        assert gw.updater.install(version_of(release), files_of(release)) is False
        assert gw.slot.current is before
        channel, stub = stub_for(gw)
        with channel:
            assert stub.Screen(screen_request(), timeout=5).model_version == before.version
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=MODEL_UPDATE_HEALTH), timeout=5
            )
        assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
        refused = gw.metrics.registry.get_sample_value(
            "fraudscreen_model_updates_total", {"result": "refused"}
        )
        assert refused == 1.0
        assert not ReleaseStore(config.model.releases_dir).has(version_of(release))


@pytest.mark.parametrize("version", ["v1\n", "..", ".", "", "a/b", "x" * 129])
def test_a_release_version_must_be_a_whole_directory_name(tmp_path: Path, version: str) -> None:
    with pytest.raises(ReleaseError, match="is not a model version name"):
        ReleaseStore(tmp_path).path(version)


def test_describe_releases_names_the_configured_bundle_when_none_is_active(
    tmp_path: Path,
) -> None:
    store = ReleaseStore(tmp_path / "releases")
    lines = describe_releases(store, Path("models/default"), ())
    assert lines == [
        f"releases in {store.root}",
        "current:  (none: the configured bundle models/default)",
        "previous: (none)",
        "rejected: (none)",
        "trusted keys: (none: updates disabled)",
    ]
    store.root.mkdir()
    (store.root / "state.json").write_text(
        json.dumps({"current": "m-2", "previous": "m-1", "rejected": ["m-0", "m-9"]})
    )
    assert describe_releases(store, Path("models/default"), ("a.pem", "b.pem"))[1:] == [
        "current:  m-2",
        "previous: m-1",
        "rejected: m-0, m-9",
        "trusted keys: a.pem, b.pem",
    ]


def test_a_damaged_release_state_is_not_read_when_updates_are_off(
    tmp_path: Path, small_bundle_path: Path
) -> None:
    """No trusted keys: the configured bundle serves, whatever state.json holds."""
    releases = tmp_path / "releases"
    releases.mkdir()
    (releases / "state.json").write_text("{not json")
    config = gateway_config(tmp_path, small_bundle_path)
    assert not config.model.trusted_keys
    with running_gateway(config) as gateway:
        assert not gateway.engine.stand_in_active
        assert gateway.slot.current is not None
        assert gateway.slot.current.version == load_bundle(small_bundle_path).manifest.model_version


def test_cli_publish_then_model_status_and_rollback(
    tmp_path: Path,
    keys: Keys,
    hub: tuple[HubServer, str, str],
    small_bundle_path: Path,
    other_bundle_path: Path,
) -> None:
    """The operator's and analyst's verbs, run as the real CLI in child processes."""
    server, _, publisher = hub
    first = signed_copy(small_bundle_path, tmp_path / "first", keys.private)
    second = signed_copy(other_bundle_path, tmp_path / "second", keys.private)
    token_file = tmp_path / "publisher.token"
    token_file.write_text(publisher + "\n")
    target = f"127.0.0.1:{server.port}"

    done = run_cli("publish", str(second), "--hub", target, "--token-file", str(token_file))
    assert done.returncode == 0, done.stderr
    assert f"published {version_of(second)} to every site" in done.stdout
    canary = run_cli(
        "publish", str(first), "--hub", target, "--token-file", str(token_file), "--sites", "shop-1"
    )
    assert canary.returncode == 0 and "to shop-1 (1 site(s))" in canary.stdout, canary.stderr
    (tmp_path / "wrong.token").write_text("not-a-token")
    refused = run_cli(
        "publish", str(second), "--hub", target, "--token-file", str(tmp_path / "wrong.token")
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("publish refused: UNAUTHENTICATED")

    releases = tmp_path / "releases"
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[model]\nbundle = "{small_bundle_path}"\nreleases_dir = "{releases}"\n'
        f'trusted_keys = ["{keys.public}"]\n'
    )
    nothing = run_cli("model", "rollback", "--config", str(config))
    assert nothing.returncode == 2 and "no release is active" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    store = ReleaseStore(releases)
    trusted = [PublicKey.from_file(keys.public)]
    for bundle in (first, second):
        store.stage(version_of(bundle), files_of(bundle), trusted)
        store.activate(version_of(bundle))
    status = run_cli("model", "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert f"current:  {version_of(second)}" in status.stdout
    assert f"previous: {version_of(first)}" in status.stdout
    assert "rejected: (none)" in status.stdout
    back = run_cli("model", "rollback", "--config", str(config))
    assert back.returncode == 0, back.stderr
    assert (
        f"rolled back to {version_of(first)} (not taking {version_of(second)} again)" in back.stdout
    )
    after = run_cli("model", "status", "--config", str(config))
    assert f"current:  {version_of(first)}" in after.stdout
    assert f"rejected: {version_of(second)}" in after.stdout
    assert store.state().current == version_of(first)
