"""Loading: defaults, then one TOML file, then ``FRAUDSCREEN_*`` environment variables.

Precedence, lowest to highest: the defaults of the settings classes, the TOML file, the
environment. With no file and no variables the defaults give a working local gateway that
listens on loopback only and speaks plaintext there.

Every setting has a dotted name (``server.tls.cert_file``), a place in the TOML file
(``cert_file`` in table ``[server.tls]``) and an environment variable
(``FRAUDSCREEN_SERVER_TLS_CERT_FILE``). Environment values are strings converted to the
setting's type: integers, numbers, booleans (true/false/1/0/yes/no), paths, lists as
comma-separated text; an empty string unsets an optional setting.

Relative paths in the file are resolved against the file's directory; relative paths from
the environment or the defaults against the current directory. ``load_config`` returns
absolute paths.

Errors name the setting, where its value came from (file path, variable name or default)
and what is expected, e.g.
``config error: server.listen (from FRAUDSCREEN_SERVER_LISTEN): 'abc' is not host:port``;
unknown sections, keys and variables get "did you mean". All problems found are reported
together, one per line.

The loader is generic: it walks the settings dataclasses via their type hints (``leaves``).
Each dataclass checks its own ranges in ``__post_init__`` and raises InvalidSettingError
naming the offending fields; the loader adds the section and the source.

Why not pydantic-settings (measured, pydantic-settings 2.16.3 / pydantic 2.14, issue 12):
it cannot say where a value came from (sources are merged into one dict before validation,
so ``server.max_workers`` fails the same way from the file or the environment); it has no
"did you mean" (an unknown key is "Extra inputs are not permitted", a mistyped variable
such as FRAUDSCREEN_SERVR_LISTEN is silently ignored); our variable names do not map onto
its nested delimiter (with ``_`` it splits ``max_workers``; with ``env_nested_max_split=1``
``FRAUDSCREEN_SERVER_TLS_CERT_FILE`` becomes the unknown ``server.tls_cert_file``); strict
or lax is per model, not per source (lax takes TOML ``max_workers = "16"`` and ``true``;
strict refuses the environment's ``"32"``); a comma list in a variable is a SettingsError
(it wants JSON); its errors are several lines each. Keeping today's messages would mean
writing our own environment source, source tracking, suggestions and formatting on top:
no less code. And it costs start time: importing the same settings as pydantic models
took ~140 ms against ~32 ms for this package (``python -X importtime``, median of 5),
and every ``fraudscreen`` command imports the config (``fraudscreen health --help`` runs
in ~0.13 s in all).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from fraudscreen.config.errors import ConfigError, InvalidSettingError
from fraudscreen.config.settings import GatewayConfig, is_section, leaves
from fraudscreen.config.values import BadValue, from_env, from_toml, got

ENV_PREFIX = "FRAUDSCREEN_"
CONFIG_ENV = "FRAUDSCREEN_CONFIG"
# FRAUDSCREEN_ variables owned by other modules: never treated as (mistyped) settings here.
RESERVED_ENV_NAMES = frozenset({CONFIG_ENV, "FRAUDSCREEN_CACHE_DIR", "FRAUDSCREEN_HUB_TOKEN"})
RESERVED_ENV_PREFIXES: tuple[str, ...] = ()

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_DEFAULT_SOURCE = "default"


def env_var_name(setting: str) -> str:
    """``server.tls.cert_file`` -> ``FRAUDSCREEN_SERVER_TLS_CERT_FILE``."""
    return ENV_PREFIX + setting.replace(".", "_").upper()


def load_config(
    path: Path | None = None, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """Defaults, overridden by the TOML file at ``path``, overridden by the environment.

    ``path`` None: the file named by ``FRAUDSCREEN_CONFIG`` if set and non-empty, else no
    file. ``environ`` None: ``os.environ``. Raises :class:`ConfigError` listing every problem.
    """
    env = os.environ if environ is None else environ
    cwd = Path.cwd()
    file_source = "the path argument"
    if path is None and env.get(CONFIG_ENV, "") != "":
        path, file_source = Path(env[CONFIG_ENV]), CONFIG_ENV
    table: dict[str, Any] = {}
    file: Path | None = None
    if path is not None:
        file = _absolute(path, cwd)
        table = _read_toml(file, file_source)
    loader = _Loader(environ=env, cwd=cwd, file=file)
    loader.check_environ()
    config = loader.build(GatewayConfig, "", table)
    if loader.problems or not isinstance(config, GatewayConfig):
        raise ConfigError(*loader.problems)
    return config


def _absolute(path: Path, base: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _read_toml(file: Path, file_source: str) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f"config error: config file {str(file)!r} (from {file_source}) does not exist"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"config error: cannot read config file {str(file)!r} (from {file_source}): "
            f"{exc.strerror or exc}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"config error: {file}: invalid TOML: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        if position is None:
            raise ConfigError(f"config error: {file}: invalid TOML: {message}") from None
        reason = message[: position.start()]
        line, column = position.group(1), position.group(2)
        raise ConfigError(
            f"config error: {file}, line {line}, column {column}: invalid TOML: {reason}"
        ) from None


def _suggest(word: str, candidates: list[str], cutoff: float = 0.6) -> str | None:
    matches = difflib.get_close_matches(word, candidates, n=1, cutoff=cutoff)
    return matches[0] if matches else None


@dataclass
class _Loader:
    environ: Mapping[str, str]
    cwd: Path
    file: Path | None
    problems: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # dotted name -> file or variable
    failed: set[str] = field(default_factory=set)  # settings whose value could not be read

    def where(self, dotted: str) -> str:
        source = self.sources.get(dotted, _DEFAULT_SOURCE)
        return f"{dotted} ({source})" if source == _DEFAULT_SOURCE else f"{dotted} (from {source})"

    def problem(self, text: str) -> None:
        self.problems.append(f"config error: {text}")

    def check_environ(self) -> None:
        """FRAUDSCREEN_<SECTION>_... must name a setting; near-misses of settings too."""
        known = {env_var_name(name) for name, _ in leaves(GatewayConfig)}
        sections = {f.name.upper() for f in dataclasses.fields(GatewayConfig)}
        short_known = sorted(name.removeprefix(ENV_PREFIX) for name in known)
        for name in sorted(self.environ):
            if not name.startswith(ENV_PREFIX) or name in known or name in RESERVED_ENV_NAMES:
                continue
            if name.startswith(RESERVED_ENV_PREFIXES):
                continue
            rest = name.removeprefix(ENV_PREFIX)
            section = rest.split("_", 1)[0]
            if section in sections:
                near = _suggest(rest, [s for s in short_known if s.startswith(section + "_")])
                hint = (
                    f"did you mean {ENV_PREFIX}{near}?"
                    if near
                    else f"[{section.lower()}] has no such setting"
                )
                self.problem(f"{name}: not a setting; {hint}")
                continue
            near = _suggest(rest, short_known, cutoff=0.8)
            if near is not None:
                self.problem(
                    f"{name}: not a setting; did you mean {ENV_PREFIX}{near}? "
                    f"(other {ENV_PREFIX}* variables are ignored unless they look like a typo)"
                )

    def check_keys(self, cls: type[Any], prefix: str, table: Mapping[str, object]) -> None:
        names = [f.name for f in dataclasses.fields(cls)]
        source = f"from {self.file}"
        for key in table:
            if key in names:
                continue
            near = _suggest(key, names)
            if prefix == "" and not isinstance(table[key], dict):
                owners = [
                    owner
                    for owner, _, leaf in (n.rpartition(".") for n, _ in leaves(cls))
                    if leaf == key
                ]
                hint = (
                    f"put it under {' or '.join(f'[{o}]' for o in owners)}"
                    if owners
                    else f"settings belong under one of the sections {', '.join(names)}"
                )
                self.problem(f"{key} ({source}): setting outside any section; {hint}")
            elif prefix == "":
                hint = f"did you mean [{near}]?" if near else f"sections are {', '.join(names)}"
                self.problem(f"[{key}] ({source}): unknown section; {hint}")
            else:
                hint = (
                    f"did you mean {prefix}{near}?"
                    if near
                    else f"[{prefix.rstrip('.')}] has {', '.join(names)}"
                )
                self.problem(f"{prefix}{key} ({source}): unknown setting; {hint}")

    def build(self, cls: type[Any], prefix: str, table: Mapping[str, object]) -> object | None:
        """An instance of ``cls`` from file table, environment and defaults; None on error."""
        self.check_keys(cls, prefix, table)
        hints = get_type_hints(cls)
        values: dict[str, object] = {}
        complete = True
        for f in dataclasses.fields(cls):
            hint, dotted = hints[f.name], prefix + f.name
            if is_section(hint):
                sub = table.get(f.name, {})
                if not isinstance(sub, dict):
                    self.problem(
                        f"{dotted} (from {self.file}): expected a table [{dotted}], {got(sub)}"
                    )
                    complete = False
                    continue
                value = self.build(hint, dotted + ".", sub)
            else:
                value = self.leaf(f, hint, dotted, table)
            if value is None and (is_section(hint) or dotted in self.failed):
                complete = False
                continue
            values[f.name] = value
        if not complete:
            return None
        try:
            instance: object = cls(**values)
        except InvalidSettingError as exc:
            names = " and ".join(self.where(prefix + name) for name in exc.fields)
            self.problem(f"{names}: {exc.reason}" if names else exc.reason)
        except (ValueError, TypeError) as exc:
            self.problem(f"[{prefix.rstrip('.') or 'config'}]: {exc}")
        else:
            return instance
        return None

    def leaf(
        self, f: dataclasses.Field[Any], hint: Any, dotted: str, table: Mapping[str, object]
    ) -> object:
        env_name = env_var_name(dotted)
        try:
            if env_name in self.environ:
                self.sources[dotted] = env_name
                value = from_env(self.environ[env_name], hint)
                base = self.cwd
            elif f.name in table:
                assert self.file is not None
                self.sources[dotted] = str(self.file)
                value = from_toml(table[f.name], hint)
                base = self.file.parent
            else:
                value = (
                    f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                )
                base = self.cwd
        except BadValue as exc:
            self.problem(f"{self.where(dotted)}: {exc}")
            self.failed.add(dotted)
            return None
        return _absolute(value, base) if isinstance(value, Path) else value
