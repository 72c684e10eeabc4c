"""Model releases on the gateway: staged, verified, kept, switched and rolled back on disk.

    <releases_dir>/<model_version>/   one verified bundle per release
    <releases_dir>/state.json         {"current", "previous", "rejected"}

A release from the hub is written to a staging directory first and becomes a release
directory only after its signature (trusted keys only) and every file hash check out.
`rollback` swaps current and previous and marks the abandoned version rejected, so the
hub offering it again does not undo the rollback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fraudscreen.atomic_file import write_atomically
from fraudscreen.model.bundle import (
    BASE_GOLDEN_FILE,
    BASE_MODEL_FILE,
    BRANCHES_FILE,
    GOLDEN_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    Bundle,
    BundleError,
)
from fraudscreen.model.signing import PublicKey, load_verified_bundle

RELEASE_FILES = frozenset(
    {
        MODEL_FILE,
        GOLDEN_FILE,
        BRANCHES_FILE,
        MANIFEST_FILE,
        SIGNATURE_FILE,
        BASE_MODEL_FILE,  # a stacked bundle ships the model it corrects
        BASE_GOLDEN_FILE,
    }
)
STATE_FILE = "state.json"
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a directory name; not ".."


class ReleaseError(RuntimeError):
    """A release that cannot be installed or switched to; the running model stays."""


@dataclass
class ReleaseState:
    """None means the bundle named in the gateway's config (the shipped model)."""

    current: str | None = None
    previous: str | None = None
    rejected: list[str] = field(default_factory=list)


class ReleaseStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- state --------------------------------------------------------------------------

    def state(self) -> ReleaseState:
        path = self.root / STATE_FILE
        if not path.exists():
            return ReleaseState()
        data = json.loads(path.read_text())
        return ReleaseState(
            data.get("current"), data.get("previous"), list(data.get("rejected", []))
        )

    def state_stamp(self) -> float:
        """Changes whenever the state file is rewritten (the gateway watches it)."""
        path = self.root / STATE_FILE
        return path.stat().st_mtime_ns if path.exists() else 0.0

    def _write_state(self, state: ReleaseState) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = json.dumps(
            {"current": state.current, "previous": state.previous, "rejected": state.rejected},
            indent=2,
        )
        write_atomically(self.root / STATE_FILE, (data + "\n").encode(), mode=0o600)

    # -- releases -----------------------------------------------------------------------

    def path(self, version: str) -> Path:
        if not _VERSION.fullmatch(version):
            raise ReleaseError(f"{version!r} is not a model version name")
        return self.root / version

    def has(self, version: str) -> bool:
        return (self.path(version) / MANIFEST_FILE).is_file()

    def base_of(self, version: str) -> str | None:
        """The model an installed release corrects (its manifest's `base`); None when the
        version is not installed here or is not a correction. Read from the manifest
        verified when the release was staged: releases are never changed in place."""
        if not _VERSION.fullmatch(version) or not self.has(version):
            return None
        try:
            manifest = json.loads((self.path(version) / MANIFEST_FILE).read_text())
        except (OSError, ValueError):
            return None
        base = manifest.get("base") if isinstance(manifest, dict) else None
        name = base.get("model_version") if isinstance(base, dict) else None
        return name if isinstance(name, str) else None

    def stage(
        self, version: str, files: Mapping[str, bytes], trusted: Sequence[PublicKey]
    ) -> Bundle:
        """Write, verify (signature + hashes + features) and keep a release; returns it."""
        unknown = set(files) - RELEASE_FILES
        if unknown:
            raise ReleaseError(f"release {version} carries unexpected files {sorted(unknown)}")
        target = self.path(version)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".staging-"))
        try:
            for name, content in files.items():
                (staging / name).write_bytes(content)
            try:
                bundle = load_verified_bundle(staging, trusted)
            except BundleError as exc:
                raise ReleaseError(f"release {version} refused: {exc}") from exc
            if bundle.model_version != version:
                raise ReleaseError(
                    f"release announced as {version} but its manifest says "
                    f"{bundle.model_version}; refused"
                )
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return load_verified_bundle(target, trusted)

    def load(self, version: str, trusted: Sequence[PublicKey]) -> Bundle:
        try:
            return load_verified_bundle(self.path(version), trusted)
        except BundleError as exc:
            raise ReleaseError(f"installed release {version} no longer verifies: {exc}") from exc

    def activate(self, version: str) -> ReleaseState:
        state = self.state()
        if state.current != version:
            state.previous, state.current = state.current, version
        if version in state.rejected:
            state.rejected.remove(version)
        self._write_state(state)
        return state

    def rollback(self) -> ReleaseState:
        """Go back to the previous release (None: the configured bundle); the abandoned
        one is not taken again."""
        state = self.state()
        if state.current is None:
            raise ReleaseError(
                f"no release is active (releases dir: {self.root}): the gateway already runs "
                "its configured bundle"
            )
        if state.previous is not None and not self.has(state.previous):
            raise ReleaseError(f"previous release {state.previous} is missing from {self.root}")
        abandoned = state.current
        state.current, state.previous = state.previous, abandoned
        if abandoned is not None and abandoned not in state.rejected:
            state.rejected.append(abandoned)
        self._write_state(state)
        return state


def describe_releases(
    store: ReleaseStore, configured_bundle: Path, trusted_keys: Sequence[str]
) -> list[str]:
    """`fraudscreen model status`: the releases on disk and the keys updates must be signed
    with; no current release means the gateway runs its configured bundle."""
    state = store.state()
    shipped = f"(none: the configured bundle {configured_bundle})"
    return [
        f"releases in {store.root}",
        f"current:  {state.current or shipped}",
        f"previous: {state.previous or '(none)'}",
        f"rejected: {', '.join(state.rejected) or '(none)'}",
        f"trusted keys: {', '.join(trusted_keys) or '(none: updates disabled)'}",
    ]
