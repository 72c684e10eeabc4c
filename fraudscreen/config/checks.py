"""Checks the settings classes run in ``__post_init__``; each raises InvalidSettingError.

The reasons read as the second half of a config error line ("must be >= 1 and <= 1024, got
0"); the loader writes the first half (setting and source).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, get_args

from fraudscreen.config.errors import InvalidSettingError
from fraudscreen.config.host_port import parse_host_port


def check(ok: bool, reason: str, *fields: str) -> None:
    if not ok:
        raise InvalidSettingError(reason, *fields)


def check_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False
) -> None:
    # Written so that NaN fails every check.
    inside = (low < value if low_open else low <= value) and value <= high
    bound = f"> {_number(low)}" if low_open else f">= {_number(low)}"
    check(inside, f"must be {bound} and <= {_number(high)}, got {value!r}", name)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def check_choice(name: str, value: str, choices: Any) -> None:
    allowed = get_args(choices)
    check(value in allowed, f"must be one of {or_list(allowed)}, got {value!r}", name)


def check_readable_file(name: str, path: Path) -> None:
    check(path.exists(), f"file {str(path)!r} does not exist", name)
    check(path.is_file(), f"{str(path)!r} is not a regular file", name)
    check(os.access(path, os.R_OK), f"file {str(path)!r} is not readable", name)


def check_listen(name: str, value: str) -> None:
    try:
        parse_host_port(value)
    except ValueError as exc:
        raise InvalidSettingError(str(exc), name) from None


def or_list(values: tuple[object, ...]) -> str:
    return ", ".join(repr(v) for v in values)
