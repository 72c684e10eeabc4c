"""Card tokens are HMAC-SHA256 of the PAN under the site key, as hex."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fraudscreen.tokenizer import (
    CardTokenizer,
    NotACardNumberError,
    load_or_create_site_key,
    tokenize_lines,
)


def test_token_is_hmac_sha256_hex_of_the_pan() -> None:
    key = bytes(range(32))
    token = CardTokenizer(key).tokenize("4111111111111111")
    assert token == hmac.new(key, b"4111111111111111", hashlib.sha256).hexdigest()
    assert CardTokenizer(bytes(32)).tokenize("4111111111111111") != token  # keyed


def test_short_key_and_repr_never_show_the_key() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        CardTokenizer(b"short")
    assert "hidden" in repr(CardTokenizer(b"k" * 32))


def test_tokenize_lines_skips_blanks_and_stops_at_the_first_bad_line() -> None:
    tokenizer = CardTokenizer(bytes(range(32)))
    lines = ["4111 1111 1111 1111\n", "\n", "5500000000000004\n", "4111111111111112\n", "x"]
    tokens = tokenize_lines(tokenizer, lines)
    assert next(tokens) == tokenizer.tokenize("4111111111111111")
    assert next(tokens) == tokenizer.tokenize("5500000000000004")
    with pytest.raises(NotACardNumberError, match=r"^line 4: not a card number \(12-19"):
        next(tokens)  # the Luhn digit is wrong; line numbers count the blank line


def test_tokenize_command_prints_tokens_and_names_bad_lines(tmp_path: Path) -> None:
    env = {**os.environ, "FRAUDSCREEN_SITE_KEY_FILE": str(tmp_path / "site.key")}
    env.pop("FRAUDSCREEN_CONFIG", None)
    command = [sys.executable, "-m", "fraudscreen", "tokenize"]
    load_or_create_site_key(tmp_path / "site.key")  # the gateway made it on its first start
    done = subprocess.run(
        command, input="4111 1111 1111 1111\n", env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    key = (tmp_path / "site.key").read_bytes()
    assert done.stdout.strip() == CardTokenizer(key).tokenize("4111111111111111")
    arabic_indic = "".join(chr(0x0660 + int(c)) for c in "4111111111111111")
    for bad in ("4111111111111112", arabic_indic):
        refused = subprocess.run(
            command, input=bad + "\n", env=env, capture_output=True, text=True, timeout=60
        )
        assert refused.returncode == 2
        assert "line 1: not a card number" in refused.stderr


def test_tokenize_never_creates_a_site_key(tmp_path: Path) -> None:
    """Run from a folder with no gateway: a made-up key would print tokens that match
    nothing, so the command refuses, names the setting and how to point at the gateway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSCREEN_")}
    done = subprocess.run(
        [sys.executable, "-m", "fraudscreen", "tokenize"],
        input="4111111111111111\n",
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert "site.key_file" in done.stderr and "--config" in done.stderr
    assert not (tmp_path / "var").exists()


def test_tokenize_reads_the_key_named_by_the_gateway_config(tmp_path: Path) -> None:
    gateway = tmp_path / "gateway"
    gateway.mkdir()
    (gateway / "gateway.toml").write_text('[site]\nkey_file = "keys/site.key"\n')
    key = load_or_create_site_key(gateway / "keys" / "site.key")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSCREEN_")}
    env["FRAUDSCREEN_CONFIG"] = str(gateway / "gateway.toml")
    done = subprocess.run(
        [sys.executable, "-m", "fraudscreen", "tokenize"],
        input="4111111111111111\n",
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == CardTokenizer(key).tokenize("4111111111111111")
    assert not (elsewhere / "var").exists()
