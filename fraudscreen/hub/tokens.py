"""Token files: who may call the hub, stored as SHA-256 hashes of bearer tokens.

Format (one entry per line; blank lines and `#` comments ignored):

    # NAME  SHA256-HEX-OF-TOKEN
    shop-0042 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08

NAME is a site id (sites file) or an analyst's name (publisher file): 1 to 64 of
A-Z a-z 0-9 . _ -. Why hashes: a copied hub disk or backup must not let anyone push as a
site or publish a model. Tokens are 256-bit random, so a plain SHA-256 cannot be reversed.

`add_token` writes the file atomically with mode 0600; a running hub notices the change
and reloads it, so adding or rotating a site needs no restart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from fraudscreen.atomic_file import write_atomically

log = structlog.get_logger(__name__)

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HASH = re.compile(r"[0-9a-f]{64}")
TOKEN_BYTES = 32
_HEADER = "# fraudscreen hub tokens: NAME SHA256-HEX-OF-TOKEN (never the token itself)\n"


class TokenFileError(ValueError):
    """A token file that cannot be used; the message names the file and line."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_token_file(path: Path) -> dict[str, str]:
    """NAME -> token hash; raises TokenFileError naming the line of any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenFileError(
            f"token file {path} does not exist; create it with `fraudscreen hub add-site`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"cannot read token file {path}: {exc}") from exc
    return _parse_token_text(text, path)


def _parse_token_text(text: str, path: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{path}, line {number}"
        if len(parts) != 2:
            raise TokenFileError(f"{where}: expected 'NAME SHA256HEX', got {len(parts)} fields")
        name, digest = parts
        if not NAME.fullmatch(name):
            raise TokenFileError(
                f"{where}: {name[:80]!r} is not a name (1-64 of A-Z a-z 0-9 . _ -)"
            )
        if not _HASH.fullmatch(digest):
            raise TokenFileError(
                f"{where}: the second field must be the 64 lower-case hex digits of the "
                "token's SHA-256, not the token; add entries with `fraudscreen hub add-site`"
            )
        if name in entries:
            raise TokenFileError(f"{where}: {name} is listed twice; keep one line per name")
        entries[name] = digest
    return entries


@dataclass(frozen=True)
class _Snapshot:
    stamp: tuple[int, int, int]
    entries: tuple[tuple[str, str], ...]


class TokenFile:
    """The entries of one token file, reloaded when the file changes (thread-safe).

    With `missing_ok`, a missing file means no entries until it is created."""

    def __init__(self, path: Path, *, missing_ok: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._snapshot = (
            _Snapshot((0, 0, 0), ()) if missing_ok and not self.path.exists() else self._load()
        )

    def _stamp(self) -> tuple[int, int, int]:
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> _Snapshot:
        stamp = self._stamp() if self.path.exists() else (0, 0, 0)
        return _Snapshot(stamp, tuple(sorted(parse_token_file(self.path).items())))

    def _current(self) -> _Snapshot:
        try:
            stamp = self._stamp()
        except OSError:
            return self._snapshot  # briefly missing (editor, restore): keep what we had
        if stamp == self._snapshot.stamp:
            return self._snapshot
        with self._lock:
            if stamp != self._snapshot.stamp:
                try:
                    self._snapshot = self._load()
                    log.info("tokens.reloaded", path=str(self.path), entries=self.size)
                except TokenFileError as exc:
                    log.error(
                        "tokens.reload_failed",
                        error=str(exc),
                        action="fix the file; the previous entries stay in force until then",
                    )
                    self._snapshot = _Snapshot(stamp, self._snapshot.entries)
            return self._snapshot

    @property
    def size(self) -> int:
        return len(self._snapshot.entries)

    def names(self) -> frozenset[str]:
        return frozenset(name for name, _ in self._current().entries)

    def lookup(self, token: str) -> str | None:
        """The name the token belongs to, or None. Compares every entry in constant time."""
        presented = hash_token(token)
        found: str | None = None
        for name, digest in self._current().entries:
            if hmac.compare_digest(presented, digest) and found is None:
                found = name
        return found


def add_token(path: Path, name: str, *, rotate: bool = False) -> str:
    """Generate a token for `name`, store only its hash, return the token (show it once).

    Refuses an existing name unless `rotate` (then the old token stops working)."""
    path = Path(path)
    if not NAME.fullmatch(name):
        raise TokenFileError(f"{name[:80]!r} is not a name (1-64 of A-Z a-z 0-9 . _ -)")
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.splitlines(keepends=True)
    existing = _parse_token_text(text, path)  # the very text rewritten below
    if name in existing and not rotate:
        raise TokenFileError(
            f"{name} already has a token in {path}; pass --rotate to replace it (the old "
            "token stops working at once)"
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    kept = [line for line in lines if line.split("#", 1)[0].split()[:1] != [name]]
    if not kept:
        kept = [_HEADER]
    if not kept[-1].endswith("\n"):
        kept[-1] += "\n"
    kept.append(f"{name} {hash_token(token)}\n")
    _write_private(path, "".join(kept))
    return token


def _write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a 0600 file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, text.encode("utf-8"), mode=0o600)
