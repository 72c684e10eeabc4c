"""Ed25519 signatures on model releases, so a gateway serves only what an analyst signed.

Why: a gateway must not trust the network. The hub, a proxy or anyone on the path could
hand it a different model, and a model decides which card payments are declined. So every
release is signed by a risk analyst's private key, and a gateway refuses any bundle whose
signature does not verify against one of the public keys it was configured to trust.

What is signed: the exact bytes of `manifest.json`. The manifest holds the sha256 of every
other file and `load_bundle` re-hashes each file against it, so one signature covers the
whole bundle: change any byte of any file and either the hash check or the signature fails.
Verification checks the signature over the manifest bytes first, then loads the bundle (hashes,
feature list, model compatibility), so nothing unsigned is ever parsed into a `Bundle`.

Keys live in files, never in the repository: the private key on the analyst's machine
(PKCS8 PEM, mode 0600, optionally passphrase-encrypted), the public keys on each gateway
(SubjectPublicKeyInfo PEM). A key is named by its key id, the first 16 hex characters of the
sha256 of its raw 32 bytes; `manifest.sig` records which key signed.

All cryptography is `cryptography`'s Ed25519; nothing here is hand-rolled.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from fraudscreen.atomic_file import write_atomically
from fraudscreen.model.bundle import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Bundle,
    BundleError,
    Manifest,
    load_bundle,
)

ALGORITHM = "ed25519"
KEY_ID_HEX_CHARS = 16
_RAW_KEY_BYTES = 32
_SIGNATURE_BYTES = 64


class SignatureError(BundleError):
    """A signature or key that must not be trusted; the message says what to do about it."""


def _key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_CHARS]


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key a gateway trusts, with its id."""

    key_id: str
    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != _RAW_KEY_BYTES:
            raise SignatureError(
                f"an Ed25519 public key is {_RAW_KEY_BYTES} bytes, got {len(self.raw)}"
            )
        if self.key_id != _key_id(self.raw):
            raise SignatureError(
                f"key id {self.key_id!r} does not belong to this key (its id is "
                f"{_key_id(self.raw)}); build keys with PublicKey.from_raw or from_file"
            )

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        return cls(key_id=_key_id(raw), raw=bytes(raw))

    @classmethod
    def from_key(cls, key: Ed25519PublicKey) -> PublicKey:
        return cls.from_raw(
            key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )

    @classmethod
    def from_file(cls, path: Path) -> PublicKey:
        """Read a PEM SubjectPublicKeyInfo file holding an Ed25519 public key."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise SignatureError(
                f"public key file {path} does not exist; check the trusted key paths"
            ) from exc
        except OSError as exc:
            raise SignatureError(f"cannot read public key file {path}: {exc}") from exc
        if b"PRIVATE KEY" in data:
            raise SignatureError(
                f"{path} holds a private key; give the gateway the public key file instead "
                "and keep the private key off it"
            )
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise SignatureError(
                f"{path} is not a PEM public key ({exc}); expected an Ed25519 public key "
                "as written by generate_keypair"
            ) from exc
        if not isinstance(key, Ed25519PublicKey):
            raise SignatureError(
                f"{path} is not an Ed25519 public key (it holds {type(key).__name__}); "
                "model releases are signed with Ed25519 keys only"
            )
        return cls.from_key(key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True iff `signature` is this key's Ed25519 signature of `message`."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def generate_keypair(
    private_path: Path, public_path: Path, *, passphrase: bytes | None = None
) -> PublicKey:
    """Create a signing key pair; refuses to overwrite either file.

    The private key is PKCS8 PEM (encrypted if `passphrase` is given), created with mode
    0600 so it is never readable by others, not even briefly; the public key is PEM 0644.
    """
    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.resolve() == public_path.resolve():
        raise ValueError("the private and public key paths must differ")
    for existing in (private_path, public_path):
        if existing.exists() or existing.is_symlink():
            raise FileExistsError(
                f"{existing} already exists; refusing to overwrite a key. Move it away or "
                "choose another path"
            )
    if passphrase is not None and not passphrase:
        raise ValueError("the passphrase is empty; give a non-empty one or none at all")
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase is not None
        else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _create_exclusive(private_path, private_pem, 0o600)
    try:
        _create_exclusive(public_path, public_pem, 0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)  # ours, just created: no orphan private key
        raise
    return PublicKey.from_key(key.public_key())


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read a signing key; refuses one that group or others can read."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise SignatureError(
            f"private key file {path} does not exist; generate a key pair first"
        ) from exc
    except OSError as exc:
        raise SignatureError(f"cannot read private key file {path}: {exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise SignatureError(
                f"private key file {path} is accessible by group or others (mode "
                f"{stat.S_IMODE(mode):o}); run `chmod 600 {path}`, and treat the key as "
                "compromised if others could have read it"
            )
        data = handle.read()
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        if passphrase is None:
            raise SignatureError(f"private key {path} is encrypted; give its passphrase") from exc
        raise SignatureError(
            f"private key {path} is not encrypted, but a passphrase was given; give none"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise SignatureError(f"cannot decrypt private key {path}: wrong passphrase?") from exc
        if b"PUBLIC KEY-----" in data:
            raise SignatureError(
                f"{path} is a public key; sign with the private key written by "
                "`fraudscreen keys generate --private FILE`"
            ) from exc
        raise SignatureError(
            f"{path} is not a PEM private key; expected the Ed25519 private key written by "
            "`fraudscreen keys generate --private FILE`"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(
            f"{path} is not an Ed25519 private key (it holds {type(key).__name__}); "
            "model releases are signed with Ed25519 keys only"
        )
    return key


def sign_bundle(bundle_dir: Path, private_key: Ed25519PrivateKey) -> str:
    """Check the bundle, sign its manifest bytes, write `manifest.sig`; returns the key id."""
    bundle_dir = Path(bundle_dir)
    manifest_bytes = _read_manifest_bytes(bundle_dir)
    load_bundle(bundle_dir)  # never sign something a gateway would refuse anyway
    if _read_manifest_bytes(bundle_dir) != manifest_bytes:
        raise BundleError(
            f"{bundle_dir / MANIFEST_FILE} changed while it was being signed; try again"
        )
    signature = private_key.sign(manifest_bytes)
    public = PublicKey.from_key(private_key.public_key())
    if not public.verify(manifest_bytes, signature):  # pragma: no cover - cryptography bug
        raise SignatureError("a fresh signature does not verify; do not publish this bundle")
    document = {
        "algorithm": ALGORITHM,
        "key_id": public.key_id,
        "signature": base64.b64encode(signature).decode("ascii"),
    }
    signature = (json.dumps(document, indent=2) + "\n").encode()
    write_atomically(bundle_dir / SIGNATURE_FILE, signature, mode=0o644)  # public, like the bundle
    return public.key_id


def verify_bundle_signature(bundle_dir: Path, trusted: Sequence[PublicKey]) -> str:
    """Check `manifest.sig` against trusted keys, then the bundle; returns the signing key id."""
    key_id, _ = _verify(Path(bundle_dir), trusted)
    return key_id


def load_trusted_keys(paths: Sequence[Path]) -> list[PublicKey]:
    """Read the public keys a gateway trusts; at least one is required."""
    if not paths:
        raise SignatureError(
            "no trusted public keys are configured; a gateway needs at least one analyst "
            "public key to accept model releases"
        )
    keys: list[PublicKey] = []
    for path in paths:
        key = PublicKey.from_file(Path(path))
        if key not in keys:
            keys.append(key)
    return keys


def load_verified_bundle(bundle_dir: Path, trusted: Sequence[PublicKey]) -> Bundle:
    """The bundle, only if a trusted key signed its manifest and every file matches it."""
    _, bundle = _verify(Path(bundle_dir), trusted)
    return bundle


def _verify(bundle_dir: Path, trusted: Sequence[PublicKey]) -> tuple[str, Bundle]:
    if not trusted:
        raise SignatureError(
            "no trusted public keys are configured; refusing every bundle until one is added"
        )
    sig_path = bundle_dir / SIGNATURE_FILE
    if not sig_path.is_file():
        raise SignatureError(f"{bundle_dir}: unsigned bundle; sign it with `fraudscreen sign`")
    manifest_bytes = _read_manifest_bytes(bundle_dir)
    algorithm, key_id, signature = _parse_signature_file(sig_path)
    if algorithm != ALGORITHM:
        raise SignatureError(
            f"{sig_path} uses algorithm {algorithm!r}; only {ALGORITHM!r} is accepted. "
            "Re-sign the bundle with `fraudscreen sign`"
        )
    candidates = [key for key in trusted if key.key_id == key_id]
    if not candidates:
        raise SignatureError(
            f"{bundle_dir}: signed by untrusted key {key_id}; add its public key to the "
            "gateway's trusted keys if this is intended"
        )
    if not any(key.verify(manifest_bytes, signature) for key in candidates):
        raise SignatureError(
            f"{bundle_dir}: {SIGNATURE_FILE} does not match {MANIFEST_FILE}: the bundle was "
            "altered or damaged after signing; fetch it again, and do not serve it"
        )
    bundle = load_bundle(bundle_dir)
    # The manifest load_bundle parsed must be the one whose bytes were verified.
    try:
        signed = Manifest.from_json(json.loads(manifest_bytes))
    except ValueError as exc:  # signed but unparsable: load_bundle would have refused it
        raise BundleError(f"{bundle_dir}: signed {MANIFEST_FILE} is malformed") from exc
    if signed.encode() != bundle.manifest.encode():
        raise SignatureError(
            f"{bundle_dir}: {MANIFEST_FILE} changed while it was being verified; "
            "the bundle was altered, fetch it again"
        )
    return key_id, bundle


def _parse_signature_file(sig_path: Path) -> tuple[str, str, bytes]:
    def malformed(why: str) -> SignatureError:
        return SignatureError(
            f"{sig_path} is malformed ({why}); re-sign the bundle with `fraudscreen sign` "
            "or fetch it again"
        )

    try:
        document = json.loads(sig_path.read_bytes())
    except (ValueError, OSError) as exc:
        raise malformed(f"not readable JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise malformed("expected a JSON object")
    fields = {}
    for name in ("algorithm", "key_id", "signature"):
        value = document.get(name)
        if not isinstance(value, str):
            raise malformed(f"{name!r} must be a string")
        fields[name] = value
    if not re.fullmatch(f"[0-9a-f]{{{KEY_ID_HEX_CHARS}}}", fields["key_id"]):
        raise malformed(f"'key_id' must be {KEY_ID_HEX_CHARS} lowercase hex characters")
    try:
        signature = base64.b64decode(fields["signature"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise malformed("'signature' is not base64") from exc
    if base64.b64encode(signature).decode("ascii") != fields["signature"]:
        raise malformed("'signature' is not canonical base64")
    if fields["algorithm"] == ALGORITHM and len(signature) != _SIGNATURE_BYTES:
        raise malformed(
            f"an Ed25519 signature is {_SIGNATURE_BYTES} bytes, this one is {len(signature)}"
        )
    return fields["algorithm"], fields["key_id"], signature


def _read_manifest_bytes(bundle_dir: Path) -> bytes:
    manifest_path = bundle_dir / MANIFEST_FILE
    try:
        return manifest_path.read_bytes()
    except FileNotFoundError as exc:
        raise BundleError(
            f"{bundle_dir} is not a model bundle: {MANIFEST_FILE} is missing"
        ) from exc


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with exactly `mode`; fails if anything (even a symlink) is there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits; 0644 public keys need them
        remaining = memoryview(data)
        while remaining:
            remaining = remaining[os.write(fd, remaining) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
