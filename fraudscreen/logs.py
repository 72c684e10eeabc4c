"""Structured logging: JSON lines for operators, console lines for people at a terminal.

A last-line-of-defence processor masks anything that looks like a card number in every
logged value (nested ones and exception text included) and in stdlib logging lines, so a
mistake elsewhere, or a terminal that puts a card number in an id, still cannot write a PAN
to a log. "Looks like a card number": 12-19 digits passing the Luhn check, unbroken or in
groups separated by single spaces or dashes (4111 1111 1111 1111, 3454-2938-2574).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any, TextIO

import structlog

# A maximal run of digit groups joined by single spaces or dashes, at least 12 digits long.
_DIGIT_RUN = re.compile(r"(?<!\d)(?<!\d[ -])\d(?:[ -]?\d){11,}")
_GROUP_SEPARATOR = re.compile(r"[ -]")
MASK = "[PAN REDACTED]"
MIN_PAN_DIGITS = 12
MAX_PAN_DIGITS = 19


_DIGIT_VALUE = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED_DIGIT = bytes.maketrans(b"0123456789", bytes((0, 2, 4, 6, 8, 1, 3, 5, 7, 9)))


def luhn_valid(digits: str) -> bool:
    """The card number check digit. Runs on every screened PAN, so the digit sums are
    done by `bytes.translate` and `sum` in C (~0.4 µs) instead of a Python loop (~1.1 µs)."""
    if not digits.isascii():  # other scripts' decimal digits, as `\d` matches in logs
        digits = "".join(str(int(c)) if c.isdecimal() else c for c in digits)
    data = digits.encode("ascii")[::-1]
    total = sum(data[0::2].translate(_DIGIT_VALUE)) + sum(data[1::2].translate(_DOUBLED_DIGIT))
    return total % 10 == 0


def mask_pans(text: str) -> str:
    """`text` with every Luhn-valid run of 12-19 digits (groups joined by single spaces or
    dashes allowed) replaced by [PAN REDACTED].

    Inside a longer run of groups, any consecutive groups that make such a number are
    masked (a PAN logged next to other digits, "ref 12 4111 1111 1111 1111"); a card
    number is never split inside a group."""
    return _DIGIT_RUN.sub(_mask_run, text)


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if len(run) <= MAX_PAN_DIGITS and run.isdigit():  # the common case: one plain number
        return MASK if luhn_valid(run) else run
    groups = _GROUP_SEPARATOR.split(run)
    separators = _GROUP_SEPARATOR.findall(run)
    masked = [False] * len(groups)
    for first in range(len(groups)):
        digits = ""
        for last in range(first, len(groups)):
            digits += groups[last]
            if len(digits) > MAX_PAN_DIGITS:
                break
            if len(digits) >= MIN_PAN_DIGITS and luhn_valid(digits):
                masked[first : last + 1] = [True] * (last + 1 - first)
    if not any(masked):
        return run
    out: list[str] = []
    for index, group in enumerate(groups):
        if masked[index]:
            if index == 0 or not masked[index - 1]:
                out.append(MASK)
        else:
            out.append(group)
        if index < len(separators) and not (masked[index] and masked[index + 1]):
            out.append(separators[index])
    return "".join(out)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_pans(value) if len(value) >= MIN_PAN_DIGITS else value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return mask_pans(str(value)) if abs(value) >= 10 ** (MIN_PAN_DIGITS - 1) else value
    if isinstance(value, list | tuple):
        return type(value)(_masked(item) for item in value)
    if isinstance(value, dict):
        return {_masked(k): _masked(v) for k, v in value.items()}
    if isinstance(value, bytes | bytearray):
        return mask_pans(value.decode("utf-8", "replace"))
    return value


def _redact_pans(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event.items():
        event[key] = _masked(value)
    return event


LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


def resolve_format(name: str, stream: TextIO | None = None) -> str:
    """`auto`: console lines for a person at a terminal, JSON for a file, pipe or collector.
    Logs go to stderr, so that is the stream whose terminal-ness decides."""
    if name != "auto":
        return name
    stream = sys.stderr if stream is None else stream
    return "console" if stream.isatty() else "json"


def configure_logging(*, json: bool = True, level: str = "info") -> None:
    """Configure structlog once per process; stdlib logging (third-party libraries and
    Python warnings) is rendered by the same processors, so a JSON stream stays JSON."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None or level.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; use {', '.join(LOG_LEVELS)}")
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _redact_pans, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact_pans,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "fraudscreen", False)]:
        root.removeHandler(old)  # ours from an earlier call; others' handlers stay
    handler.fraudscreen = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)


_STDOUT_CAPTURE = threading.Lock()


@contextlib.contextmanager
def third_party_output_logged(source: str) -> Iterator[None]:
    """Lines a library prints to stdout (TL2cgen and Treelite print their native log
    there, e.g. `[12:00:00] .../split.cc:35: ...`) become debug log events instead, so
    they never interleave with a command's output or break a JSON log stream."""
    captured = io.StringIO()
    try:
        # sys.stdout is process-wide: one capture at a time, or two threads compiling
        # could restore each other's buffer and leave stdout captured for good.
        with _STDOUT_CAPTURE, contextlib.redirect_stdout(captured):
            yield
    finally:
        for line in captured.getvalue().splitlines():
            if line.strip():
                structlog.get_logger(source).debug("third_party.output", line=line.strip())
