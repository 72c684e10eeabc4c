"""The gateway's settings: one frozen dataclass per TOML section, each checking its own values.

A dataclass validates in ``__post_init__`` (so a config built in code is checked too) and
raises InvalidSettingError naming its fields; it never knows about files or variables.
The comments beside the fields say units and meaning; EXAMPLE_TOML says it for operators.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fraudscreen.config.checks import (
    check,
    check_choice,
    check_listen,
    check_range,
    check_readable_file,
)
from fraudscreen.config.errors import InvalidSettingError
from fraudscreen.config.host_port import parse_host_port
from fraudscreen.currency import is_currency_code

# The shipped bundle: <repo>/models/default, beside the fraudscreen package.
DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"

_SITE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

Durability = Literal["normal", "full"]
PredictorChoice = Literal["native", "lightgbm"]
LogFormat = Literal["auto", "json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]
RequestLogging = Literal["none", "non_approve", "all"]
# privacy.release.Mechanism (kept here too: the config must not import OpenDP)
ReleaseMechanism = Literal["known_domain", "threshold"]


@dataclass(frozen=True)
class TLSConfig:
    """TLS for a listener: cert+key enable TLS; client_ca_file makes it mutual TLS."""

    cert_file: Path | None = None  # certificate chain (PEM)
    key_file: Path | None = None  # private key (PEM)
    client_ca_file: Path | None = None  # clients must present a certificate signed by this CA

    def __post_init__(self) -> None:
        check(
            (self.cert_file is None) == (self.key_file is None),
            "set both cert_file and key_file (TLS) or neither (plaintext)",
            "cert_file",
            "key_file",
        )
        check(
            self.client_ca_file is None or self.cert_file is not None,
            "mutual TLS needs cert_file and key_file as well",
            "client_ca_file",
        )
        for name in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(self, name)
            if path is not None:
                check_readable_file(name, path)

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
        check(
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
        check(len(self.currencies) > 0, "must name at least one currency", "currencies")
        for code in self.currencies:
            check(
                is_currency_code(code),
                f"{code!r} is not an ISO 4217 code (three upper-case letters, e.g. 'EUR')",
                "currencies",
            )
        duplicates = sorted({c for c in self.currencies if self.currencies.count(c) > 1})
        check(not duplicates, f"{', '.join(duplicates)} listed more than once", "currencies")


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
        check_listen("listen", self.listen)
        check(
            self.pin_cpu in ("auto", "off") or (self.pin_cpu.isdigit() and len(self.pin_cpu) < 5),
            f"must be 'auto', 'off' or a CPU number like '0', got {self.pin_cpu!r}",
            "pin_cpu",
        )
        check_range("max_workers", self.max_workers, 1, 1024)
        check_range("max_concurrent_rpcs", self.max_concurrent_rpcs, 1, 10_000)
        check_range("max_streams", self.max_streams, 1, 10_000)
        check_range("idle_timeout", self.idle_timeout, 0.1, 86_400)
        check_range("max_message_bytes", self.max_message_bytes, 1024, 64 * 1024 * 1024)
        check_range("grace_seconds", self.grace_seconds, 0, 600)


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = "127.0.0.1:9464"  # "" disables the Prometheus HTTP endpoint
    tls: TLSConfig = field(default_factory=TLSConfig)  # client_ca: scraper needs a client cert

    def __post_init__(self) -> None:
        if self.listen != "":
            check_listen("listen", self.listen)

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
        check_choice("predictor", self.predictor, PredictorChoice)
        check_range("shadow_transactions", self.shadow_transactions, 0, 10_000_000)
        check(
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
                check_range(name, value, 0, 1)
        if self.review_threshold is not None and self.decline_threshold is not None:
            check(
                self.review_threshold <= self.decline_threshold,
                f"review_threshold {self.review_threshold!r} must be <= "
                f"decline_threshold {self.decline_threshold!r}",
                "review_threshold",
                "decline_threshold",
            )
        if self.blocked_cards_file is not None:
            check_readable_file("blocked_cards_file", self.blocked_cards_file)
        for name in ("decline_above_minor", "review_above_minor", "stand_in_review_above_minor"):
            amount = getattr(self, name)
            if amount is not None:
                check(amount > 0, f"must be > 0 (minor units), got {amount!r}", name)
        if self.review_above_minor is not None and self.decline_above_minor is not None:
            check(
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
        check_choice("durability", self.durability, Durability)
        check_range("retention_days", self.retention_days, 38, 3650)
        check_range("batch_max", self.batch_max, 1, 100_000)
        check_range("flush_interval_ms", self.flush_interval_ms, 0, 1000)
        check_range("max_queue", self.max_queue, 1000, 10_000_000)


@dataclass(frozen=True)
class ScreeningConfig:
    idempotency_window_hours: float = 24.0
    max_transaction_age_days: float = 60.0  # older timestamps are rejected
    max_clock_skew_seconds: float = 300.0  # timestamps further in the future are rejected

    def __post_init__(self) -> None:
        check_range(
            "idempotency_window_hours", self.idempotency_window_hours, 0, 24 * 30, low_open=True
        )
        check_range(
            "max_transaction_age_days", self.max_transaction_age_days, 0, 3650, low_open=True
        )
        check_range("max_clock_skew_seconds", self.max_clock_skew_seconds, 0, 86_400)


@dataclass(frozen=True)
class LoggingConfig:
    format: LogFormat = "auto"  # console on a terminal, JSON otherwise (logs.resolve_format)
    level: LogLevel = "info"
    requests: RequestLogging = "none"

    def __post_init__(self) -> None:
        check_choice("format", self.format, LogFormat)
        check_choice("level", self.level, LogLevel)
        check_choice("requests", self.requests, RequestLogging)


@dataclass(frozen=True)
class PrivacyConfig:
    """What leaves the site: differentially private counts, per period (README, Privacy)."""

    epsilon_per_day: float = 1.0  # per card, per day, at this site
    delta: float = 1e-7
    max_contributions: int = 2  # transactions per card per day that count
    # days per released table: the noise is per table, so a week's table carries 1/7 of the
    # noise variance of seven daily ones for the same epsilon per card and day (README)
    period_days: int = 7
    label_maturity_days: int = 14  # wait this long for chargebacks before releasing
    epsilon_budget: float = 365.0  # lifetime total; releases stop once spent
    # "known_domain": every cell of the schema's public domain, discrete Laplace, pure DP;
    # "threshold": only cells whose noisy total passes a DP threshold (uses delta).
    mechanism: ReleaseMechanism = "known_domain"

    def __post_init__(self) -> None:
        check_range("epsilon_per_day", self.epsilon_per_day, 0, 50, low_open=True)
        check_range("delta", self.delta, 0, 1e-3, low_open=True)
        check_range("max_contributions", self.max_contributions, 1, 1000)
        check_range("period_days", self.period_days, 1, 31)
        check_range("label_maturity_days", self.label_maturity_days, 0, 180)
        check_range("epsilon_budget", self.epsilon_budget, 0, 1_000_000, low_open=True)
        check_choice("mechanism", self.mechanism, ReleaseMechanism)


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
            check_listen("hub", address)
        check(
            (self.cert_file is None) == (self.key_file is None),
            "cert_file and key_file go together (mutual TLS)",
            "cert_file",
            "key_file",
        )
        check(
            self.cert_file is None or self.ca_file is not None,
            "mutual TLS needs ca_file too",
            "ca_file",
        )
        check_range("interval_seconds", self.interval_seconds, 1, 86_400)
        check_range("max_backoff_seconds", self.max_backoff_seconds, 1, 86_400)


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
        check(
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
        check(
            server_port == 0 or server_port != metrics_port or not overlap,
            "gRPC and metrics listeners would use the same port",
            "server.listen",
            "metrics.listen",
        )


# ---------------------------------------------------------------------------------------
# walking the settings


def is_section(hint: object) -> bool:
    """A field whose type is a settings dataclass is a TOML table, not a setting."""
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def leaves(cls: type[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every setting under ``cls`` as (dotted name, type hint)."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if is_section(hint):
            yield from leaves(hint, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hint


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
