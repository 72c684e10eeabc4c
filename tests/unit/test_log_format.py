"""Which log format `auto` picks."""

from __future__ import annotations

import io

from fraudscreen.logs import resolve_format


def test_auto_format_follows_the_log_stream() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", Terminal()) == "console"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("json", Terminal()) == "json"
