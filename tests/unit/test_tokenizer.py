"""Card tokens are HMAC-SHA256 of the PAN under the site key, as hex."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from fraudscreen.tokenizer import CardTokenizer, NotACardNumberError, tokenize_lines


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


@pytest.mark.parametrize("length", [32, 63, 64, 65, 200])
def test_token_is_hmac_for_any_key_length(length: int) -> None:
    """Keys longer than SHA-256's 64-byte block are hashed first, as HMAC says."""
    key = bytes((7 * i + length) % 256 for i in range(length))
    tokenizer = CardTokenizer(key)
    for pan in ("4111111111111111", "5500000000000004", "4000001234567899123"):
        assert tokenizer.tokenize(pan) == hmac.new(key, pan.encode(), hashlib.sha256).hexdigest()
