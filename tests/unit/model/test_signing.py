"""A gateway serves a bundle only if a trusted analyst key signed exactly these files."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path

import lightgbm
import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fraudscreen.features.definitions import FEATURE_NAMES
from fraudscreen.model.bundle import (
    GOLDEN_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SIGNATURE_FILE,
    BundleError,
    GoldenRows,
    Thresholds,
    load_bundle,
    write_bundle,
)
from fraudscreen.model.signing import (
    PublicKey,
    SignatureError,
    generate_keypair,
    load_private_key,
    load_trusted_keys,
    load_verified_bundle,
    sign_bundle,
    verify_bundle_signature,
)


def _write_tiny_bundle(path: Path, *, model_version: str = "t") -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(FEATURE_NAMES)))
    y = (x[:, 0] > 0).astype(int)
    booster = lightgbm.train(
        {"objective": "binary", "verbosity": -1},
        lightgbm.Dataset(x, y),
        num_boost_round=3,
    )
    write_bundle(
        path,
        model_text=booster.model_to_string(),
        golden=GoldenRows([list(x[0])], [float(booster.predict(x[:1])[0])]),
        model_version=model_version,
        thresholds=Thresholds(0.5, 0.9),
        training={},
        metrics={},
        created_at="",
    )


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bundle"
    _write_tiny_bundle(path)
    return path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, PublicKey]:
    private = tmp_path / "keys" / "analyst.pem"
    private.parent.mkdir()
    public = generate_keypair(private, tmp_path / "keys" / "analyst.pub")
    return private, public


@pytest.fixture
def signed(bundle_dir: Path, keys: tuple[Path, PublicKey]) -> Path:
    sign_bundle(bundle_dir, load_private_key(keys[0]))
    return bundle_dir


def _flip_byte(path: Path, index: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if index is None else index] ^= 0x01
    path.write_bytes(bytes(data))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- the happy path ---------------------------------------------------------------------


def test_sign_then_verify(bundle_dir: Path, keys: tuple[Path, PublicKey]) -> None:
    private, public = keys
    key_id = sign_bundle(bundle_dir, load_private_key(private))
    assert key_id == public.key_id
    assert len(key_id) == 16
    assert int(key_id, 16) >= 0  # hex

    document = json.loads((bundle_dir / SIGNATURE_FILE).read_text())
    assert document["algorithm"] == "ed25519"
    assert document["key_id"] == key_id
    assert len(base64.b64decode(document["signature"])) == 64
    assert _mode(bundle_dir / SIGNATURE_FILE) == 0o644

    assert verify_bundle_signature(bundle_dir, [public]) == key_id
    bundle = load_verified_bundle(bundle_dir, [public])
    assert bundle.manifest == load_bundle(bundle_dir).manifest
    assert bundle.model_version == "t"


def test_public_key_from_file_matches_generated(tmp_path: Path) -> None:
    public = generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    assert PublicKey.from_file(tmp_path / "k.pub") == public
    assert load_trusted_keys([tmp_path / "k.pub"]) == [public]


def test_one_of_several_trusted_keys_verifies(
    signed: Path, keys: tuple[Path, PublicKey], tmp_path: Path
) -> None:
    other = generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    assert verify_bundle_signature(signed, [other, keys[1]]) == keys[1].key_id


def test_public_key_verify(keys: tuple[Path, PublicKey]) -> None:
    private, public = keys
    signature = load_private_key(private).sign(b"message")
    assert public.verify(b"message", signature)
    assert not public.verify(b"messagE", signature)
    assert not public.verify(b"message", signature[:-1])


def test_public_key_with_wrong_id_is_refused(keys: tuple[Path, PublicKey]) -> None:
    with pytest.raises(SignatureError, match="does not belong"):
        PublicKey(key_id="0" * 16, raw=keys[1].raw)


# --- tampering --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [MODEL_FILE, GOLDEN_FILE])
def test_altered_file_is_refused(signed: Path, keys: tuple[Path, PublicKey], name: str) -> None:
    _flip_byte(signed / name)
    with pytest.raises(BundleError, match=re.escape(f"{name} does not match its sha256")):
        verify_bundle_signature(signed, [keys[1]])
    with pytest.raises(BundleError, match="altered"):
        load_verified_bundle(signed, [keys[1]])


def test_altered_manifest_is_refused(signed: Path, keys: tuple[Path, PublicKey]) -> None:
    _flip_byte(signed / MANIFEST_FILE)
    with pytest.raises(
        SignatureError, match=r"does not match manifest\.json: the bundle was altered"
    ):
        verify_bundle_signature(signed, [keys[1]])
    with pytest.raises(SignatureError, match="altered"):
        load_verified_bundle(signed, [keys[1]])


def test_valid_but_edited_manifest_is_refused(signed: Path, keys: tuple[Path, PublicKey]) -> None:
    """An edit that keeps the manifest loadable (lower thresholds) is still caught."""
    manifest = json.loads((signed / MANIFEST_FILE).read_text())
    manifest["thresholds"]["decline"] = 1.0
    (signed / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    load_bundle(signed)  # the hashes alone would not notice
    with pytest.raises(SignatureError, match="altered"):
        verify_bundle_signature(signed, [keys[1]])


def test_altered_signature_is_refused(signed: Path, keys: tuple[Path, PublicKey]) -> None:
    sig_path = signed / SIGNATURE_FILE
    document = json.loads(sig_path.read_text())
    raw = bytearray(base64.b64decode(document["signature"]))
    raw[10] ^= 0x01
    document["signature"] = base64.b64encode(bytes(raw)).decode()
    sig_path.write_text(json.dumps(document))
    with pytest.raises(SignatureError, match="altered"):
        verify_bundle_signature(signed, [keys[1]])


def test_any_flipped_byte_of_signature_file_is_refused(
    signed: Path, keys: tuple[Path, PublicKey]
) -> None:
    sig_path = signed / SIGNATURE_FILE
    original = sig_path.read_bytes()
    for index in range(len(original)):
        if original[index : index + 1].isspace():
            continue  # JSON whitespace carries nothing
        _flip_byte(sig_path, index)
        with pytest.raises(SignatureError):
            verify_bundle_signature(signed, [keys[1]])
        sig_path.write_bytes(original)
    assert verify_bundle_signature(signed, [keys[1]]) == keys[1].key_id


def test_signature_from_another_bundle_is_refused(
    signed: Path, keys: tuple[Path, PublicKey], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    _write_tiny_bundle(other, model_version="other")
    (other / SIGNATURE_FILE).write_bytes((signed / SIGNATURE_FILE).read_bytes())
    with pytest.raises(SignatureError, match="altered"):
        verify_bundle_signature(other, [keys[1]])


# --- who signed -------------------------------------------------------------------------


def test_unsigned_bundle_is_refused(bundle_dir: Path, keys: tuple[Path, PublicKey]) -> None:
    with pytest.raises(SignatureError, match=r"unsigned bundle; sign it with `fraudscreen sign`"):
        verify_bundle_signature(bundle_dir, [keys[1]])
    with pytest.raises(SignatureError, match="unsigned"):
        load_verified_bundle(bundle_dir, [keys[1]])


def test_bundle_signed_by_untrusted_key_is_refused(
    bundle_dir: Path, keys: tuple[Path, PublicKey], tmp_path: Path
) -> None:
    rogue = generate_keypair(tmp_path / "rogue.pem", tmp_path / "rogue.pub")
    sign_bundle(bundle_dir, load_private_key(tmp_path / "rogue.pem"))
    with pytest.raises(SignatureError, match=f"signed by untrusted key {rogue.key_id}"):
        verify_bundle_signature(bundle_dir, [keys[1]])


def test_claiming_a_trusted_key_id_does_not_help(
    bundle_dir: Path, keys: tuple[Path, PublicKey], tmp_path: Path
) -> None:
    generate_keypair(tmp_path / "rogue.pem", tmp_path / "rogue.pub")
    sign_bundle(bundle_dir, load_private_key(tmp_path / "rogue.pem"))
    sig_path = bundle_dir / SIGNATURE_FILE
    document = json.loads(sig_path.read_text())
    document["key_id"] = keys[1].key_id
    sig_path.write_text(json.dumps(document))
    with pytest.raises(SignatureError, match="altered"):
        verify_bundle_signature(bundle_dir, [keys[1]])


def test_no_trusted_keys_refuses_everything(signed: Path) -> None:
    with pytest.raises(SignatureError, match="no trusted public keys"):
        verify_bundle_signature(signed, [])
    with pytest.raises(SignatureError, match="no trusted public keys"):
        load_trusted_keys([])


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("not json", "malformed"),
        ("[]", "malformed"),
        ('{"algorithm": "ed25519", "key_id": "ab"}', "malformed"),
        ('{"algorithm": "ed25519", "key_id": "ab", "signature": "AAAA"}', "key_id"),
        ('{"algorithm": "ed25519", "key_id": "0123456789abcdef", "signature": "%%%"}', "base64"),
        ('{"algorithm": "ed25519", "key_id": "0123456789abcdef", "signature": "AAAA"}', "64 bytes"),
        ('{"algorithm": "rsa", "key_id": "0123456789abcdef", "signature": "AAAA"}', "'rsa'"),
    ],
)
def test_bad_signature_file_is_refused(
    signed: Path, keys: tuple[Path, PublicKey], content: str, match: str
) -> None:
    (signed / SIGNATURE_FILE).write_text(content)
    with pytest.raises(SignatureError, match=match):
        verify_bundle_signature(signed, [keys[1]])


def test_rewriting_bundle_drops_stale_signature(signed: Path, keys: tuple[Path, PublicKey]) -> None:
    assert (signed / SIGNATURE_FILE).exists()
    _write_tiny_bundle(signed, model_version="retrained")
    assert not (signed / SIGNATURE_FILE).exists()
    with pytest.raises(SignatureError, match="unsigned"):
        verify_bundle_signature(signed, [keys[1]])


def test_broken_bundle_is_not_signed(bundle_dir: Path, keys: tuple[Path, PublicKey]) -> None:
    _flip_byte(bundle_dir / MODEL_FILE)
    with pytest.raises(BundleError, match="does not match its sha256"):
        sign_bundle(bundle_dir, load_private_key(keys[0]))
    assert not (bundle_dir / SIGNATURE_FILE).exists()


# --- key files --------------------------------------------------------------------------


def test_key_files_are_created_with_safe_modes(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)  # even a strict umask must not make the public key 0600
    try:
        generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    finally:
        os.umask(old_umask)
    assert _mode(tmp_path / "k.pem") == 0o600
    assert _mode(tmp_path / "k.pub") == 0o644
    assert b"BEGIN PRIVATE KEY" in (tmp_path / "k.pem").read_bytes()
    assert b"BEGIN PUBLIC KEY" in (tmp_path / "k.pub").read_bytes()


@pytest.mark.parametrize("existing", ["k.pem", "k.pub"])
def test_existing_key_files_are_not_overwritten(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    assert (tmp_path / existing).read_bytes() == b"precious"
    other = "k.pub" if existing == "k.pem" else "k.pem"
    assert not (tmp_path / other).exists()


def test_readable_private_key_is_refused(keys: tuple[Path, PublicKey]) -> None:
    private = keys[0]
    private.chmod(0o644)
    with pytest.raises(SignatureError, match=re.escape(f"chmod 600 {private}")):
        load_private_key(private)
    private.chmod(0o640)
    with pytest.raises(SignatureError, match="chmod 600"):
        load_private_key(private)
    private.chmod(0o600)
    load_private_key(private)


def test_passphrase_protected_key(bundle_dir: Path, tmp_path: Path) -> None:
    public = generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub", passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "k.pem").read_bytes()
    key = load_private_key(tmp_path / "k.pem", passphrase=b"correct horse")
    assert sign_bundle(bundle_dir, key) == public.key_id
    assert verify_bundle_signature(bundle_dir, [public]) == public.key_id

    with pytest.raises(SignatureError, match="wrong passphrase"):
        load_private_key(tmp_path / "k.pem", passphrase=b"wrong")
    with pytest.raises(SignatureError, match="is encrypted; give its passphrase"):
        load_private_key(tmp_path / "k.pem")


def test_passphrase_for_plain_key_is_refused(keys: tuple[Path, PublicKey]) -> None:
    with pytest.raises(SignatureError, match="not encrypted"):
        load_private_key(keys[0], passphrase=b"x")


def test_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="passphrase is empty"):
        generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub", passphrase=b"")
    assert not (tmp_path / "k.pem").exists()


def test_missing_key_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="does not exist"):
        load_private_key(tmp_path / "nope.pem")
    with pytest.raises(SignatureError, match="does not exist"):
        load_trusted_keys([tmp_path / "nope.pub"])


def test_non_ed25519_keys_are_refused(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pub").write_bytes(
        ec_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(SignatureError, match="not an Ed25519 public key"):
        PublicKey.from_file(tmp_path / "ec.pub")
    with pytest.raises(SignatureError, match="not an Ed25519 public key"):
        load_trusted_keys([tmp_path / "ec.pub"])

    private = tmp_path / "ec.pem"
    private.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    with pytest.raises(SignatureError, match="not an Ed25519 private key"):
        load_private_key(private)


def test_garbage_and_private_keys_are_not_public_keys(
    keys: tuple[Path, PublicKey], tmp_path: Path
) -> None:
    (tmp_path / "junk.pub").write_text("hello")
    with pytest.raises(SignatureError, match="not a PEM public key"):
        PublicKey.from_file(tmp_path / "junk.pub")
    with pytest.raises(SignatureError, match="holds a private key"):
        PublicKey.from_file(keys[0])


def test_sign_with_in_memory_key(bundle_dir: Path) -> None:
    key = Ed25519PrivateKey.generate()
    public = PublicKey.from_key(key.public_key())
    assert sign_bundle(bundle_dir, key) == public.key_id
    assert load_verified_bundle(bundle_dir, [public]).path == bundle_dir
