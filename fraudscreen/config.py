"""Gateway configuration: one TOML file plus ``FRAUDSCREEN_*`` environment variables.

Precedence, lowest to highest: the defaults below, the TOML file, the environment. With no
file and no variables the defaults give a working local gateway that listens on loopback
only and speaks plaintext there.

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
``config error: server.listen (from FRAUDSCREEN_SERVER_LISTEN): 'abc' is not host:port``.
All problems found are reported together, one per line.

The loader is generic: it walks the dataclasses below via their type hints. Each dataclass
checks its own ranges in ``__post_init__`` and raises :class:`InvalidSettingError` (a
``ValueError``) naming the offending fields; the loader adds the section and the source.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import re
import tomllib
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fraudscreen.currency import is_currency_code

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_BUNDLE",
    "ENV_PREFIX",
    "EXAMPLE_TOML",
    "RESERVED_ENV_NAMES",
    "RESERVED_ENV_PREFIXES",
    "ConfigError",
    "GatewayConfig",
    "InvalidSettingError",
    "JournalConfig",
    "LoggingConfig",
    "MetricsConfig",
    "ModelConfig",
    "PolicyConfig",
    "PrivacyConfig",
    "ScreeningConfig",
    "ServerConfig",
    "SiteConfig",
    "SyncConfig",
    "TLSConfig",
    "describe",
    "env_var_name",
    "load_config",
    "parse_host_port",
]

ENV_PREFIX = "FRAUDSCREEN_"
CONFIG_ENV = "FRAUDSCREEN_CONFIG"
# FRAUDSCREEN_ variables owned by other modules: never treated as (mistyped) settings here.
RESERVED_ENV_NAMES = frozenset({CONFIG_ENV, "FRAUDSCREEN_CACHE_DIR", "FRAUDSCREEN_HUB_TOKEN"})
RESERVED_ENV_PREFIXES: tuple[str, ...] = ()

DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "default"

_SITE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HOSTNAME_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_ENV_TRUE = frozenset({"true", "1", "yes"})
_ENV_FALSE = frozenset({"false", "0", "no"})
_DEFAULT_SOURCE = "default"

Durability = Literal["normal", "full"]
PredictorChoice = Literal["native", "lightgbm"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
RequestLogging = Literal["none", "non_approve", "all"]
# privacy.release.Mechanism (kept here too: the config must not import OpenDP)
ReleaseMechanism = Literal["known_domain", "threshold"]


class ConfigError(ValueError):
    """The configuration is unusable; ``problems`` holds one line per problem."""

    def __init__(self, *problems: str) -> None:
        self.problems: tuple[str, ...] = problems
        super().__init__("\n".join(problems))


class InvalidSettingError(ValueError):
    """Raised by a config dataclass: ``fields`` (names within that dataclass) are invalid."""

    def __init__(self, reason: str, *fields: str) -> None:
        self.reason = reason
        self.fields: tuple[str, ...] = fields
        super().__init__(f"{' and '.join(fields)}: {reason}" if fields else reason)


# ---------------------------------------------------------------------------------------
# host:port


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 as ``[::1]:50051``); the host comes back without brackets.

    The host must be an IPv4/IPv6 address or a DNS name; the port 0..65535 (0: ephemeral).
    Raises ValueError with a message that quotes ``text``.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r} is not host:port (no ']' after the IPv6 address)")
        host, rest = text[1:end], text[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"{text!r} is not host:port (no ':port' after ']')")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ValueError(f"{text!r} is not host:port")
        if ":" in host:
            raise ValueError(
                f"{text!r} is not host:port (write an IPv6 address in brackets, e.g. [::1]:50051)"
            )
        if not host:
            raise ValueError(
                f"{text!r} is not host:port (the host is missing; 0.0.0.0 or [::] listens "
                "on all interfaces)"
            )
        if not _is_ipv4_or_hostname(host):
            raise ValueError(f"{text!r}: {host!r} is not an IP address or host name")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number 0..65535")
    return host, int(port_text)


def _is_ipv4_or_hostname(host: str) -> bool:
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_HOSTNAME_LABEL.fullmatch(label) for label in labels)


# ---------------------------------------------------------------------------------------
# validation helpers for __post_init__


def _check(ok: bool, reason: str, *fields: str) -> None:
    if not ok:
        raise InvalidSettingError(reason, *fields)


def _check_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False
) -> None:
    # Written so that NaN fails every check.
    inside = (low < value if low_open else low <= value) and value <= high
    bound = f"> {_number(low)}" if low_open else f">= {_number(low)}"
    _check(inside, f"must be {bound} and <= {_number(high)}, got {value!r}", name)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _check_choice(name: str, value: str, choices: Any) -> None:
    allowed = get_args(choices)
    _check(value in allowed, f"must be one of {_or_list(allowed)}, got {value!r}", name)


def _check_readable_file(name: str, path: Path) -> None:
    _check(path.exists(), f"file {str(path)!r} does not exist", name)
    _check(path.is_file(), f"{str(path)!r} is not a regular file", name)
    _check(os.access(path, os.R_OK), f"file {str(path)!r} is not readable", name)


def _check_listen(name: str, value: str) -> None:
    try:
        parse_host_port(value)
    except ValueError as exc:
        raise InvalidSettingError(str(exc), name) from None


def _or_list(values: tuple[object, ...]) -> str:
    return ", ".join(repr(v) for v in values)


# ---------------------------------------------------------------------------------------
# the settings


@dataclass(frozen=True)
class TLSConfig:
    """TLS for a listener: cert+key enable TLS; client_ca_file makes it mutual TLS."""

    cert_file: Path | None = None  # certificate chain (PEM)
    key_file: Path | None = None  # private key (PEM)
    client_ca_file: Path | None = None  # clients must present a certificate signed by this CA

    def __post_init__(self) -> None:
        _check(
            (self.cert_file is None) == (self.key_file is None),
            "set both cert_file and key_file (TLS) or neither (plaintext)",
            "cert_file",
            "key_file",
        )
        _check(
            self.client_ca_file is None or self.cert_file is not None,
            "mutual TLS needs cert_file and key_file as well",
            "client_ca_file",
        )
        for name in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(self, name)
            if path is not None:
                _check_readable_file(name, path)

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None

    @property
    def mutual(self) -> bool:
        return self.enabled and self.client_ca_file is not None


@dataclass(frozen=True)
class SiteConfig:
    id: str = "site-local"  # [A-Za-z0-9._-]{1,64}
    timezone: str = "UTC"  # IANA name
    currencies: tuple[str, ...] = ("EUR",)  # accepted ISO 4217 codes
    key_file: Path = Path("var/site.key")  # HMAC key for PAN tokenization (created elsewhere)

    def __post_init__(self) -> None:
        _check(
            _SITE_ID.fullmatch(self.id) is not None,
            f"{self.id!r} must be 1 to 64 of the characters A-Z a-z 0-9 . _ -",
            "id",
        )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidSettingError(
                f"{self.timezone!r} is not an IANA time zone name (e.g. 'Europe/Paris', 'UTC')",
                "timezone",
            ) from None
        _check(len(self.currencies) > 0, "must name at least one currency", "currencies")
        for code in self.currencies:
            _check(
                is_currency_code(code),
                f"{code!r} is not an ISO 4217 code (three upper-case letters, e.g. 'EUR')",
                "currencies",
            )
        duplicates = sorted({c for c in self.currencies if self.currencies.count(c) > 1})
        _check(not duplicates, f"{', '.join(duplicates)} listed more than once", "currencies")


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"  # host:port, IPv6 as [::1]:50051; port 0 = ephemeral
    max_workers: int = 16  # health and reflection calls at once (each has a thread)
    max_concurrent_rpcs: int = 256  # unary screening calls at once; past it RESOURCE_EXHAUSTED
    max_streams: int = 64  # ScreenStream calls open at once; past it RESOURCE_EXHAUSTED
    idle_timeout: float = 60.0  # seconds without a request message before a call is ended
    max_message_bytes: int = 512 * 1024  # fits the answer to a full ScreenBatch (500)
    grace_seconds: float = 10.0  # drain time on SIGTERM
    pin_cpu: str = "auto"  # the process on one CPU: "auto", "off" or a CPU number
    tls: TLSConfig = field(default_factory=TLSConfig)

    def __post_init__(self) -> None:
        _check_listen("listen", self.listen)
        _check(
            self.pin_cpu in ("auto", "off") or (self.pin_cpu.isdigit() and len(self.pin_cpu) < 5),
            f"must be 'auto', 'off' or a CPU number like '0', got {self.pin_cpu!r}",
            "pin_cpu",
        )
        _check_range("max_workers", self.max_workers, 1, 1024)
        _check_range("max_concurrent_rpcs", self.max_concurrent_rpcs, 1, 10_000)
        _check_range("max_streams", self.max_streams, 1, 10_000)
        _check_range("idle_timeout", self.idle_timeout, 0.1, 86_400)
        _check_range("max_message_bytes", self.max_message_bytes, 1024, 64 * 1024 * 1024)
        _check_range("grace_seconds", self.grace_seconds, 0, 600)


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = "127.0.0.1:9464"  # "" disables the Prometheus HTTP endpoint
    tls: TLSConfig = field(default_factory=TLSConfig)  # client_ca: scraper needs a client cert

    def __post_init__(self) -> None:
        if self.listen != "":
            _check_listen("listen", self.listen)

    @property
    def enabled(self) -> bool:
        return self.listen != ""


@dataclass(frozen=True)
class ModelConfig:
    bundle: Path = DEFAULT_BUNDLE
    compiler: str = "gcc"
    cache_dir: Path | None = None  # None: $FRAUDSCREEN_CACHE_DIR, else ~/.cache/fraudscreen
    predictor: PredictorChoice = "native"
    # Signed releases from the hub: public keys trusted to sign them (none: no updates).
    trusted_keys: tuple[str, ...] = ()
    releases_dir: Path = Path("var/releases")
    # Score this many live transactions with a new release in shadow before swapping.
    shadow_transactions: int = 0

    def __post_init__(self) -> None:
        _check_choice("predictor", self.predictor, PredictorChoice)
        _check_range("shadow_transactions", self.shadow_transactions, 0, 10_000_000)
        _check(
            self.compiler.strip() != "" and self.compiler == self.compiler.strip(),
            f"{self.compiler!r} must be a compiler command or path (e.g. 'gcc')",
            "compiler",
        )


@dataclass(frozen=True)
class PolicyConfig:
    review_threshold: float | None = None  # overrides the bundle's threshold, 0..1
    decline_threshold: float | None = None  # 0..1, review <= decline when both are set
    blocked_cards_file: Path | None = None  # one card token per line (tokens, never PANs)
    decline_above_minor: int | None = None  # amount above => DECLINE
    review_above_minor: int | None = None  # amount above => at least REVIEW
    stand_in_review_above_minor: int = 20_000  # stand-in policy (no model): above => REVIEW

    def __post_init__(self) -> None:
        for name in ("review_threshold", "decline_threshold"):
            value = getattr(self, name)
            if value is not None:
                _check_range(name, value, 0, 1)
        if self.review_threshold is not None and self.decline_threshold is not None:
            _check(
                self.review_threshold <= self.decline_threshold,
                f"review_threshold {self.review_threshold!r} must be <= "
                f"decline_threshold {self.decline_threshold!r}",
                "review_threshold",
                "decline_threshold",
            )
        if self.blocked_cards_file is not None:
            _check_readable_file("blocked_cards_file", self.blocked_cards_file)
        for name in ("decline_above_minor", "review_above_minor", "stand_in_review_above_minor"):
            amount = getattr(self, name)
            if amount is not None:
                _check(amount > 0, f"must be > 0 (minor units), got {amount!r}", name)
        if self.review_above_minor is not None and self.decline_above_minor is not None:
            _check(
                self.review_above_minor <= self.decline_above_minor,
                f"review_above_minor {self.review_above_minor} must be <= "
                f"decline_above_minor {self.decline_above_minor}",
                "review_above_minor",
                "decline_above_minor",
            )


@dataclass(frozen=True)
class JournalConfig:
    path: Path = Path("var/journal.sqlite3")
    durability: Durability = "normal"  # SQLite synchronous=NORMAL or FULL
    retention_days: int = 60  # >= 38: features look back 37 days
    batch_max: int = 512
    flush_interval_ms: float = 5.0
    max_queue: int = 200_000

    def __post_init__(self) -> None:
        _check_choice("durability", self.durability, Durability)
        _check_range("retention_days", self.retention_days, 38, 3650)
        _check_range("batch_max", self.batch_max, 1, 100_000)
        _check_range("flush_interval_ms", self.flush_interval_ms, 0, 1000)
        _check_range("max_queue", self.max_queue, 1000, 10_000_000)


@dataclass(frozen=True)
class ScreeningConfig:
    idempotency_window_hours: float = 24.0
    max_transaction_age_days: float = 60.0  # older timestamps are rejected
    max_clock_skew_seconds: float = 300.0  # timestamps further in the future are rejected

    def __post_init__(self) -> None:
        _check_range(
            "idempotency_window_hours", self.idempotency_window_hours, 0, 24 * 30, low_open=True
        )
        _check_range(
            "max_transaction_age_days", self.max_transaction_age_days, 0, 3650, low_open=True
        )
        _check_range("max_clock_skew_seconds", self.max_clock_skew_seconds, 0, 86_400)


@dataclass(frozen=True)
class LoggingConfig:
    format: LogFormat = "auto"  # console on a terminal, JSON otherwise (logs.resolve_format)
    level: LogLevel = "info"
    requests: RequestLogging = "none"

    def __post_init__(self) -> None:
        _check_choice("format", self.format, LogFormat)
        _check_choice("level", self.level, LogLevel)
        _check_choice("requests", self.requests, RequestLogging)


@dataclass(frozen=True)
class PrivacyConfig:
    """What leaves the site: differentially private counts, per period (README, Privacy)."""

    epsilon_per_period: float = 1.0  # per card, per period, at this site
    delta: float = 1e-7
    max_contributions: int = 2  # transactions per card per period that count
    period_days: int = 1
    label_maturity_days: int = 14  # wait this long for chargebacks before releasing
    epsilon_budget: float = 365.0  # lifetime total; releases stop once spent
    # "known_domain": every cell of the schema's public domain, discrete Laplace, pure DP;
    # "threshold": only cells whose noisy total passes a DP threshold (uses delta).
    mechanism: ReleaseMechanism = "known_domain"

    def __post_init__(self) -> None:
        _check_range("epsilon_per_period", self.epsilon_per_period, 0, 50, low_open=True)
        _check_range("delta", self.delta, 0, 1e-3, low_open=True)
        _check_range("max_contributions", self.max_contributions, 1, 1000)
        _check_range("period_days", self.period_days, 1, 31)
        _check_range("label_maturity_days", self.label_maturity_days, 0, 180)
        _check_range("epsilon_budget", self.epsilon_budget, 0, 1_000_000, low_open=True)
        _check_choice("mechanism", self.mechanism, ReleaseMechanism)


@dataclass(frozen=True)
class SyncConfig:
    """Where aggregates go; empty `hub` keeps everything on site (the default)."""

    hub: str = ""  # host:port of `fraudscreen hub`, or several, comma-separated
    token_file: Path | None = None  # per-site bearer token (or env FRAUDSCREEN_HUB_TOKEN)
    ca_file: Path | None = None  # set => TLS to the hub
    cert_file: Path | None = None  # with key_file => mutual TLS
    key_file: Path | None = None
    interval_seconds: float = 60.0
    max_backoff_seconds: float = 900.0

    @property
    def hub_addresses(self) -> tuple[str, ...]:
        """The hub processes to rotate through (one address, or a comma-separated list)."""
        return tuple(a.strip() for a in self.hub.split(",") if a.strip())

    def __post_init__(self) -> None:
        for address in self.hub_addresses:
            _check_listen("hub", address)
        _check(
            (self.cert_file is None) == (self.key_file is None),
            "cert_file and key_file go together (mutual TLS)",
            "cert_file",
            "key_file",
        )
        _check(
            self.cert_file is None or self.ca_file is not None,
            "mutual TLS needs ca_file too",
            "ca_file",
        )
        _check_range("interval_seconds", self.interval_seconds, 1, 86_400)
        _check_range("max_backoff_seconds", self.max_backoff_seconds, 1, 86_400)


@dataclass(frozen=True)
class GatewayConfig:
    site: SiteConfig = field(default_factory=SiteConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    journal: JournalConfig = field(default_factory=JournalConfig)
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)

    def __post_init__(self) -> None:
        _check(
            self.journal.retention_days
            >= self.privacy.label_maturity_days + self.privacy.period_days + 1,
            "the journal must keep transactions until their period is released "
            "(retention_days >= label_maturity_days + period_days + 1)",
            "journal.retention_days",
            "privacy.label_maturity_days",
        )
        if not self.metrics.enabled:
            return
        server_host, server_port = parse_host_port(self.server.listen)
        metrics_host, metrics_port = parse_host_port(self.metrics.listen)
        wildcard = {"0.0.0.0", "::"}  # noqa: S104 - comparing, not binding
        overlap = server_host == metrics_host or bool({server_host, metrics_host} & wildcard)
        _check(
            server_port == 0 or server_port != metrics_port or not overlap,
            "gRPC and metrics listeners would use the same port",
            "server.listen",
            "metrics.listen",
        )


# ---------------------------------------------------------------------------------------
# loading


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


def describe(config: GatewayConfig) -> dict[str, object]:
    """Every setting as a JSON-able nested dict (paths as str), for the startup log line."""
    return _describe(config)


def _describe(obj: Any) -> dict[str, object]:
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _describe(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


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


class _BadValue(ValueError):
    """A value of the wrong type or shape; the message says what is expected."""


def _is_section(hint: object) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _leaves(cls: type[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every setting under ``cls`` as (dotted name, type hint)."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if _is_section(hint):
            yield from _leaves(hint, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hint


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


def _got(value: object) -> str:
    return f"got {_toml_type(value)} {value!r}"


def _from_toml(raw: object, hint: Any) -> object:
    inner, optional = _unwrap_optional(hint)
    if optional and raw == "":
        return None
    origin = get_origin(inner)
    if inner is bool:
        if isinstance(raw, bool):
            return raw
        raise _BadValue(f"expected a boolean (true or false), {_got(raw)}")
    if inner is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        raise _BadValue(f"expected an integer, {_got(raw)}")
    if inner is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        raise _BadValue(f"expected a number, {_got(raw)}")
    if inner is str:
        if isinstance(raw, str):
            return raw
        raise _BadValue(f"expected a string, {_got(raw)}")
    if inner is Path:
        if isinstance(raw, str) and raw != "":
            return Path(raw)
        raise _BadValue(f"expected a path (non-empty string), {_got(raw)}")
    if origin is Literal:
        if isinstance(raw, str) and raw in get_args(inner):
            return raw
        raise _BadValue(f"expected one of {_or_list(get_args(inner))}, {_got(raw)}")
    if origin is tuple and get_args(inner) == (str, ...):
        if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
            return tuple(raw)
        raise _BadValue(f'expected an array of strings like ["EUR", "USD"], {_got(raw)}')
    raise TypeError(f"unsupported setting type {hint!r}")  # a bug in this module


def _from_env(text: str, hint: Any) -> object:
    inner, optional = _unwrap_optional(hint)
    if optional and text.strip() == "":
        return None
    origin = get_origin(inner)
    if inner is bool:
        word = text.strip().lower()
        if word in _ENV_TRUE | _ENV_FALSE:
            return word in _ENV_TRUE
        raise _BadValue(f"expected true/false/1/0/yes/no, got {text!r}")
    if inner is int:
        try:
            return int(text)
        except ValueError:
            raise _BadValue(f"expected an integer, got {text!r}") from None
    if inner is float:
        try:
            return float(text)
        except ValueError:
            raise _BadValue(f"expected a number, got {text!r}") from None
    if inner is str:
        return text
    if inner is Path:
        if text != "":
            return Path(text)
        raise _BadValue("expected a path, got an empty string")
    if origin is Literal:
        if text in get_args(inner):
            return text
        raise _BadValue(f"expected one of {_or_list(get_args(inner))}, got {text!r}")
    if origin is tuple and get_args(inner) == (str, ...):
        return tuple(item.strip() for item in text.split(",")) if text.strip() else ()
    raise TypeError(f"unsupported setting type {hint!r}")  # a bug in this module


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
        known = {env_var_name(name) for name, _ in _leaves(GatewayConfig)}
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
                    for owner, _, leaf in (n.rpartition(".") for n, _ in _leaves(cls))
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
            if _is_section(hint):
                sub = table.get(f.name, {})
                if not isinstance(sub, dict):
                    self.problem(
                        f"{dotted} (from {self.file}): expected a table [{dotted}], {_got(sub)}"
                    )
                    complete = False
                    continue
                value = self.build(hint, dotted + ".", sub)
            else:
                value = self.leaf(f, hint, dotted, table)
            if value is None and (_is_section(hint) or dotted in self.failed):
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
                value = _from_env(self.environ[env_name], hint)
                base = self.cwd
            elif f.name in table:
                assert self.file is not None
                self.sources[dotted] = str(self.file)
                value = _from_toml(table[f.name], hint)
                base = self.file.parent
            else:
                value = (
                    f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                )
                base = self.cwd
        except _BadValue as exc:
            self.problem(f"{self.where(dotted)}: {exc}")
            self.failed.add(dotted)
            return None
        return _absolute(value, base) if isinstance(value, Path) else value


EXAMPLE_TOML = """\
# fraudscreen gateway configuration, every setting at its default: keep only what you change.
# The gateway reads the file named by FRAUDSCREEN_CONFIG=PATH.
# Any setting can also come from an environment variable FRAUDSCREEN_<SECTION>_<SETTING>,
# which wins over this file: FRAUDSCREEN_SERVER_LISTEN, FRAUDSCREEN_SERVER_TLS_CERT_FILE, ...
# Relative paths are resolved against the directory of this file. An empty string "" leaves
# an optional setting unset.

[site]
# Names this gateway in logs, metrics and the aggregates sent to the hub (A-Z a-z 0-9 . _ -).
id = "site-local"
# IANA time zone of the shop: time-of-day features use local time.
timezone = "UTC"
# ISO 4217 currencies terminals may send; other currencies are rejected.
currencies = ["EUR"]
# Secret HMAC key that turns card numbers into tokens. Keep it private and backed up:
# a new key makes every card look new to the model.
key_file = "var/site.key"

[server]
# gRPC address for terminals: host:port, IPv6 as "[::1]:50051", port 0 picks a free port.
# The default accepts connections from this machine only; to serve terminals use
# "0.0.0.0:50051" or "[::]:50051" together with [server.tls].
listen = "127.0.0.1:50051"
# Each kind of call has its own limit and its own threads (one per call admitted), so idle
# or slow callers of one kind cannot delay another; a call past its kind's limit is refused
# at once with RESOURCE_EXHAUSTED (README, "Reliability").
# Health and reflection calls at once (1..1024).
max_workers = 16
# Unary screening calls (Screen, ScreenBatch, ReportOutcome) at once (1..10000).
max_concurrent_rpcs = 256
# ScreenStream calls open at once (1..10000); keep it below the number of POS hosts' streams
# you expect plus a margin.
max_streams = 64
# Seconds a call may go without a request message (a quiet stream, a unary call whose request
# never arrives) before it is ended with UNAVAILABLE and the log names the peer (0.1..86400).
idle_timeout = 60.0
# Largest request or response message in bytes (1 KiB..64 MiB).
# A ScreenBatch is capped so its worst-case answer fits (500 at the default).
max_message_bytes = 524288
# On SIGTERM, seconds to let in-flight requests finish (0..600).
grace_seconds = 10.0
# Run the whole gateway process on one CPU: "auto" (the first allowed CPU, when there
# are two or more), "off", or a CPU number such as "1". Cross-core thread wake-ups cost
# more latency and throughput than the second core gave on a 2-core gateway (README).
pin_cpu = "auto"

[server.tls]
# Certificate chain and private key (PEM) to serve TLS; both or neither (plaintext).
cert_file = ""
key_file = ""
# CA (PEM) that signs terminal certificates: set it to require mutual TLS.
client_ca_file = ""

[metrics]
# Prometheus /metrics endpoint, host:port; "" disables it.
listen = "127.0.0.1:9464"

[metrics.tls]
# As [server.tls]; with client_ca_file the scraper must present a client certificate.
cert_file = ""
key_file = ""
client_ca_file = ""

[model]
# Model bundle directory (model.txt, manifest.json, manifest.sig). Default: the bundle
# shipped with fraudscreen (models/default).
# bundle = "/opt/fraudscreen/models/default"
# C compiler that builds the model into native code (command or path).
compiler = "gcc"
# Where compiled models are cached; "" means $FRAUDSCREEN_CACHE_DIR, else
# ~/.cache/fraudscreen/compiled.
cache_dir = ""
# "native": the compiled model (falls back to LightGBM, loudly, without a compiler);
# "lightgbm": LightGBM's own predictor, e.g. as the baseline in benchmarks.
predictor = "native"
# Public keys (PEM files) trusted to sign model releases; none disables updates.
trusted_keys = []
# Where verified releases are kept (and state.json: current, previous, rejected).
releases_dir = "var/releases"
# Live transactions a new release scores in shadow before it takes over (0: swap at once).
shadow_transactions = 0

[policy]
# Score thresholds overriding the model bundle's (0..1, review <= decline); unset: the bundle's.
# review_threshold = 0.5
# decline_threshold = 0.9
# Card tokens (never card numbers), one per line, always declined.
blocked_cards_file = ""
# Amount limits in minor units (cents for EUR); unset: no limit.
# Above decline_above_minor: DECLINE. Above review_above_minor: at least REVIEW.
# decline_above_minor = 500000
# review_above_minor = 100000
# With no model loaded the gateway answers by a stand-in policy: amounts above this
# (minor units) get at least REVIEW.
stand_in_review_above_minor = 20000

[journal]
# On-site SQLite journal of screened transactions (tokens only, no card numbers).
path = "var/journal.sqlite3"
# "normal": a power cut may lose the most recent commits (the journal stays consistent);
# "full": every commit is synced to disk before it counts (slower).
durability = "normal"
# Rows older than this are purged (38..3650; features look back 37 days).
retention_days = 60
# Group commit: at most this many rows per transaction (1..100000) ...
batch_max = 512
# ... written at least this often in milliseconds (0..1000).
flush_interval_ms = 5.0
# Most rows waiting to be written (1000..10000000).
max_queue = 200000

[screening]
# A retried Screen with the same terminal and transaction id within this window returns the
# first decision (hours, up to 720).
idempotency_window_hours = 24.0
# Transactions older than this are rejected (days).
max_transaction_age_days = 60.0
# Transactions timestamped further in the future than this are rejected (seconds, 0..86400).
max_clock_skew_seconds = 300.0

[privacy]
# What leaves the site, per period: DP counts over the model's bin schema (README, Privacy).
epsilon_per_period = 1.0
# Only the "threshold" mechanism spends delta; "known_domain" is pure epsilon-DP.
delta = 1e-7
# Transactions per card per period that count (contribution bound).
max_contributions = 2
period_days = 1
# Wait this long for chargebacks before releasing a period.
label_maturity_days = 14
# Lifetime epsilon; once spent, nothing more leaves this site.
epsilon_budget = 365.0
# How a period's table is released (both OpenDP discrete Laplace, same epsilon):
# "known_domain": every cell of the bin schema's domain (public: the schema alone fixes
#   it) gets noisy counts and none is selected away; pure epsilon-DP, delta 0.
# "threshold": only cells whose noisy total passes a DP threshold are released.
# known_domain is the default because fraud lives in sparse cells that never pass a
# per-site, per-day threshold. `fraudscreen evaluate --privacy` on the default simulation
# (5 sites, 28 daily periods, 2 transactions per card and period): average precision of
# the hub's model at epsilon 1 / 4 per period is 0.48 / 0.58 with known_domain and 0.01 /
# 0.02 with threshold (raw binned table without noise: 0.61; a random model: 0.007).
mechanism = "known_domain"

[sync]
# host:port of the hub; "" keeps everything on site. Several hub processes on one
# database: "hub-1:50061,hub-2:50061" (the gateway starts at a random one and moves to
# the next after a failed round).
hub = ""
# Per-site bearer token file (or FRAUDSCREEN_HUB_TOKEN); ca_file enables TLS,
# cert_file + key_file mutual TLS.
token_file = ""
ca_file = ""
cert_file = ""
key_file = ""
interval_seconds = 60.0
max_backoff_seconds = 900.0

[logging]
# "auto" (console lines when stderr is a terminal, JSON otherwise), "json" (one object
# per line) or "console" (for people). `fraudscreen --log-format` overrides it.
format = "auto"
# "debug", "info", "warning" or "error".
level = "info"
# Per-request log lines: "none" (metrics count every request), "non_approve" (REVIEW,
# DECLINE, outcomes and errors) or "all" (one line per screened transaction; ~10% CPU at
# full load). Card numbers never appear either way.
requests = "none"
"""
