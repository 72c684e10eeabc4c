"""One raw value -> the setting's type: a TOML value as parsed, or an environment string.

TOML values are typed already, so they are taken as they are or refused (``"16"`` is not an
integer there); environment values are text and are converted (``"16"`` is). Both say what
was expected and what came; the loader adds the setting and its source.
"""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from fraudscreen.config.checks import or_list

_ENV_TRUE = frozenset({"true", "1", "yes"})
_ENV_FALSE = frozenset({"false", "0", "no"})


class BadValue(ValueError):
    """A value of the wrong type or shape; the message says what is expected."""


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return args[0], True
    return hint, False


_TOML_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "float"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
)


def _toml_type(value: object) -> str:
    for cls, name in _TOML_TYPE_NAMES:
        if isinstance(value, cls):
            return name
    return type(value).__name__  # dates and times


def got(value: object) -> str:
    return f"got {_toml_type(value)} {value!r}"


def from_toml(raw: object, hint: Any) -> object:
    inner, optional = _unwrap_optional(hint)
    if optional and raw == "":
        return None
    origin = get_origin(inner)
    if inner is bool:
        if isinstance(raw, bool):
            return raw
        raise BadValue(f"expected a boolean (true or false), {got(raw)}")
    if inner is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        raise BadValue(f"expected an integer, {got(raw)}")
    if inner is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        raise BadValue(f"expected a number, {got(raw)}")
    if inner is str:
        if isinstance(raw, str):
            return raw
        raise BadValue(f"expected a string, {got(raw)}")
    if inner is Path:
        if isinstance(raw, str) and raw != "":
            return Path(raw)
        raise BadValue(f"expected a path (non-empty string), {got(raw)}")
    if origin is Literal:
        if isinstance(raw, str) and raw in get_args(inner):
            return raw
        raise BadValue(f"expected one of {or_list(get_args(inner))}, {got(raw)}")
    if origin is tuple and get_args(inner) == (str, ...):
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        raise BadValue(f'expected an array of strings like ["EUR", "USD"], {got(raw)}')
    raise TypeError(f"unsupported setting type {hint!r}")  # a bug in this module


def from_env(text: str, hint: Any) -> object:
    inner, optional = _unwrap_optional(hint)
    if optional and text.strip() == "":
        return None
    origin = get_origin(inner)
    if inner is bool:
        word = text.strip().lower()
        if word in _ENV_TRUE | _ENV_FALSE:
            return word in _ENV_TRUE
        raise BadValue(f"expected true/false/1/0/yes/no, got {text!r}")
    if inner is int:
        try:
            return int(text)
        except ValueError:
            raise BadValue(f"expected an integer, got {text!r}") from None
    if inner is float:
        try:
            return float(text)
        except ValueError:
            raise BadValue(f"expected a number, got {text!r}") from None
    if inner is str:
        return text
    if inner is Path:
        if text != "":
            return Path(text)
        raise BadValue("expected a path, got an empty string")
    if origin is Literal:
        if text in get_args(inner):
            return text
        raise BadValue(f"expected one of {or_list(get_args(inner))}, got {text!r}")
    if origin is tuple and get_args(inner) == (str, ...):
        return tuple(item.strip() for item in text.split(",")) if text.strip() else ()
    raise TypeError(f"unsupported setting type {hint!r}")  # a bug in this module
