"""Signed model releases for tests: a copy of a bundle signed (or not) with a given key,
its files as the hub would send them, and a validly signed but wrong manifest."""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from fraudscreen.model.bundle import MANIFEST_FILE, SIGNATURE_FILE
from fraudscreen.model.signing import PublicKey, load_private_key, sign_bundle


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    untrusted_private: Path


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
