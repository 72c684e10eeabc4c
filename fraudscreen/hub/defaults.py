"""Where the hub listens and keeps its files unless told otherwise (no heavy imports, so
the CLI can show them in --help without loading gRPC)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:50061"  # loopback: expose it deliberately, with TLS
DEFAULT_DB = Path("var/hub.sqlite3")
DEFAULT_SITE_TOKENS = Path("var/hub-sites.tokens")
DEFAULT_PUBLISHER_TOKENS = Path("var/hub-publishers.tokens")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a release carries the whole bundle
STALE_AFTER_SECONDS = 3 * 3600.0  # a gateway syncs every minute by default
