"""Gateway configuration: defaults, TOML file, FRAUDSCREEN_* environment, validation."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from fraudscreen.config import (
    DEFAULT_BUNDLE,
    EXAMPLE_TOML,
    ConfigError,
    GatewayConfig,
    InvalidSettingError,
    PolicyConfig,
    ServerConfig,
    SiteConfig,
    TLSConfig,
    describe,
    env_var_name,
    load_config,
    parse_host_port,
)
from fraudscreen.config.settings import leaves
from fraudscreen.config.values import from_env

ALL_SETTINGS = [name for name, _ in leaves(GatewayConfig)]


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths from env and defaults resolve against the cwd: make it known."""
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def get(config: object, dotted: str) -> Any:
    for part in dotted.split("."):
        config = getattr(config, part)
    return config


def config_error(path: Path | None = None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={} if environ is None else environ)
    return str(info.value)


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, Path]:
    """Dummy PEM files: only existence and readability are checked here."""
    names = ("server.crt", "server.key", "ca.crt")
    return {name: write(tmp_path / "pki" / name, f"dummy {name}\n") for name in names}


# --- defaults ----------------------------------------------------------------------------


def test_defaults_without_file_or_env(tmp_path: Path) -> None:
    config = load_config(None, environ={})
    expected = GatewayConfig(
        site=SiteConfig(key_file=tmp_path / "var" / "site.key"),
        journal=dataclasses.replace(GatewayConfig().journal, path=tmp_path / "var/journal.sqlite3"),
        model=dataclasses.replace(GatewayConfig().model, releases_dir=tmp_path / "var/releases"),
    )
    assert config == expected
    assert config.model.bundle == DEFAULT_BUNDLE
    assert (DEFAULT_BUNDLE / "manifest.json").is_file()


def test_defaults_listen_on_loopback_only_and_plaintext() -> None:
    config = load_config(None, environ={})
    for listen in (config.server.listen, config.metrics.listen):
        host, port = parse_host_port(listen)
        assert ipaddress.ip_address(host).is_loopback
        assert port > 0
    assert not config.server.tls.enabled
    assert not config.metrics.tls.enabled
    assert config.metrics.enabled


def test_all_loaded_paths_are_absolute() -> None:
    config = load_config(None, environ={})
    paths = [get(config, name) for name in ALL_SETTINGS if isinstance(get(config, name), Path)]
    assert len(paths) == 4
    assert all(path.is_absolute() for path in paths)


def test_os_environ_is_used_when_environ_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRAUDSCREEN_SITE_ID", "from-os-environ")
    assert load_config().site.id == "from-os-environ"


def test_direct_construction_validates_and_names_the_field() -> None:
    with pytest.raises(InvalidSettingError, match=r"^max_workers: must be >= 1 and <= 1024"):
        ServerConfig(max_workers=0)
    with pytest.raises(ValueError, match="review_threshold and decline_threshold"):
        PolicyConfig(review_threshold=0.9, decline_threshold=0.5)


# --- file and environment ----------------------------------------------------------------

FULL_TOML = """
[site]
id = "shop-17.paris_north"
timezone = "Europe/Paris"
currencies = ["EUR", "CHF", "JPY"]
key_file = "/srv/keys/site.key"

[server]
listen = "0.0.0.0:6000"
max_workers = 4
max_concurrent_rpcs = 1000
max_message_bytes = 1024
grace_seconds = 2
pin_cpu = "off"

[metrics]
listen = ""

[model]
bundle = "/srv/models/current"
compiler = "clang"
predictor = "lightgbm"
cache_dir = "/srv/cache"
trusted_keys = ["/srv/keys/release-a.pem", "/srv/keys/release-b.pem"]
releases_dir = "/srv/releases"
shadow_transactions = 500

[policy]
review_threshold = 0.25
decline_threshold = 0.75
decline_above_minor = 1000000
review_above_minor = 250000
stand_in_review_above_minor = 5000

[journal]
path = "/srv/journal.db"
durability = "full"
retention_days = 90
batch_max = 64
flush_interval_ms = 0
max_queue = 1000

[screening]
idempotency_window_hours = 48
max_transaction_age_days = 7.5
max_clock_skew_seconds = 0

[logging]
format = "console"
level = "debug"
requests = "non_approve"

[privacy]
epsilon_per_period = 2.0
delta = 1e-8
max_contributions = 3
period_days = 7
label_maturity_days = 30
epsilon_budget = 50.0
mechanism = "threshold"

[sync]
hub = "hub.example:50061"
token_file = "/srv/hub.token"
ca_file = "/srv/hub-ca.pem"
cert_file = "/srv/site.pem"
key_file = "/srv/site.key"
interval_seconds = 30
max_backoff_seconds = 600
"""

FULL_EXPECTED: dict[str, object] = {
    "site.id": "shop-17.paris_north",
    "site.timezone": "Europe/Paris",
    "site.currencies": ("EUR", "CHF", "JPY"),
    "site.key_file": Path("/srv/keys/site.key"),
    "server.listen": "0.0.0.0:6000",
    "server.max_workers": 4,
    "server.max_concurrent_rpcs": 1000,
    "server.max_message_bytes": 1024,
    "server.grace_seconds": 2.0,
    "server.pin_cpu": "off",
    "metrics.listen": "",
    "model.bundle": Path("/srv/models/current"),
    "model.compiler": "clang",
    "model.predictor": "lightgbm",
    "model.cache_dir": Path("/srv/cache"),
    "model.trusted_keys": ("/srv/keys/release-a.pem", "/srv/keys/release-b.pem"),
    "model.releases_dir": Path("/srv/releases"),
    "model.shadow_transactions": 500,
    "policy.review_threshold": 0.25,
    "policy.decline_threshold": 0.75,
    "policy.decline_above_minor": 1_000_000,
    "policy.review_above_minor": 250_000,
    "policy.stand_in_review_above_minor": 5000,
    "journal.path": Path("/srv/journal.db"),
    "journal.durability": "full",
    "journal.retention_days": 90,
    "journal.batch_max": 64,
    "journal.flush_interval_ms": 0.0,
    "journal.max_queue": 1000,
    "screening.idempotency_window_hours": 48.0,
    "screening.max_transaction_age_days": 7.5,
    "screening.max_clock_skew_seconds": 0.0,
    "logging.format": "console",
    "logging.level": "debug",
    "logging.requests": "non_approve",
    "privacy.epsilon_per_period": 2.0,
    "privacy.delta": 1e-8,
    "privacy.max_contributions": 3,
    "privacy.period_days": 7,
    "privacy.label_maturity_days": 30,
    "privacy.epsilon_budget": 50.0,
    "privacy.mechanism": "threshold",
    "sync.hub": "hub.example:50061",
    "sync.token_file": Path("/srv/hub.token"),
    "sync.ca_file": Path("/srv/hub-ca.pem"),
    "sync.cert_file": Path("/srv/site.pem"),
    "sync.key_file": Path("/srv/site.key"),
    "sync.interval_seconds": 30.0,
    "sync.max_backoff_seconds": 600.0,
}


def test_file_values(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "gw.toml", FULL_TOML), environ={})
    for name, value in FULL_EXPECTED.items():
        assert get(config, name) == value, name
        assert type(get(config, name)) is type(value), name
    assert not config.metrics.enabled


def test_env_beats_file(tmp_path: Path) -> None:
    file = write(tmp_path / "gw.toml", FULL_TOML)
    environ = {
        "FRAUDSCREEN_SERVER_MAX_WORKERS": "8",
        "FRAUDSCREEN_SITE_CURRENCIES": "USD",
        "FRAUDSCREEN_POLICY_REVIEW_THRESHOLD": "",  # empty: back to unset
        "FRAUDSCREEN_LOGGING_LEVEL": "warning",
    }
    config = load_config(file, environ=environ)
    assert config.server.max_workers == 8
    assert config.site.currencies == ("USD",)
    assert config.policy.review_threshold is None
    assert config.policy.decline_threshold == 0.75
    assert config.logging.level == "warning"
    assert config.logging.format == "console"


def test_config_file_from_env_variable(tmp_path: Path) -> None:
    file = write(tmp_path / "etc" / "gw.toml", '[site]\nid = "via-env"\n')
    assert load_config(None, {"FRAUDSCREEN_CONFIG": str(file)}).site.id == "via-env"
    assert load_config(None, {"FRAUDSCREEN_CONFIG": "etc/gw.toml"}).site.id == "via-env"
    assert load_config(None, {"FRAUDSCREEN_CONFIG": ""}).site.id == "site-local"
    other = write(tmp_path / "other.toml", '[site]\nid = "explicit"\n')
    assert load_config(other, {"FRAUDSCREEN_CONFIG": str(file)}).site.id == "explicit"


def test_missing_config_file_names_its_source(tmp_path: Path) -> None:
    message = config_error(None, {"FRAUDSCREEN_CONFIG": "nope.toml"})
    assert "FRAUDSCREEN_CONFIG" in message
    assert str(tmp_path / "nope.toml") in message
    assert "does not exist" in message
    assert "does not exist" in config_error(tmp_path / "absent.toml")
    assert "cannot read config file" in config_error(tmp_path)  # a directory


@pytest.mark.parametrize(
    ("variable", "text", "expected"),
    [
        ("FRAUDSCREEN_SERVER_MAX_WORKERS", "32", 32),
        ("FRAUDSCREEN_SERVER_MAX_WORKERS", " 32 ", 32),
        ("FRAUDSCREEN_JOURNAL_MAX_QUEUE", "1_000_000", 1_000_000),
        ("FRAUDSCREEN_SERVER_GRACE_SECONDS", "2.5", 2.5),
        ("FRAUDSCREEN_SERVER_GRACE_SECONDS", "3", 3.0),
        ("FRAUDSCREEN_SCREENING_MAX_CLOCK_SKEW_SECONDS", "1e3", 1000.0),
        ("FRAUDSCREEN_SITE_CURRENCIES", "EUR, USD ,GBP", ("EUR", "USD", "GBP")),
        ("FRAUDSCREEN_JOURNAL_DURABILITY", "full", "full"),
        ("FRAUDSCREEN_LOGGING_FORMAT", "console", "console"),
        ("FRAUDSCREEN_MODEL_CACHE_DIR", "/var/cache/fs", Path("/var/cache/fs")),
        ("FRAUDSCREEN_MODEL_CACHE_DIR", "", None),
        ("FRAUDSCREEN_POLICY_REVIEW_THRESHOLD", "0.3", 0.3),
        ("FRAUDSCREEN_POLICY_REVIEW_THRESHOLD", "", None),
        ("FRAUDSCREEN_POLICY_DECLINE_ABOVE_MINOR", "150000", 150_000),
        ("FRAUDSCREEN_POLICY_DECLINE_ABOVE_MINOR", "", None),
        ("FRAUDSCREEN_METRICS_LISTEN", "", ""),
        ("FRAUDSCREEN_SERVER_TLS_CERT_FILE", "", None),
        ("FRAUDSCREEN_SITE_TIMEZONE", "America/New_York", "America/New_York"),
    ],
)
def test_env_conversions(variable: str, text: str, expected: object) -> None:
    setting = next(name for name in ALL_SETTINGS if env_var_name(name) == variable)
    value = get(load_config(None, {variable: text}), setting)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        (" Yes ", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("No", False),
    ],
)
def test_env_bool_conversion(text: str, expected: bool) -> None:
    # No setting is a bool yet; the converter supports them for the ones to come.
    assert from_env(text, bool) is expected
    assert from_env("", bool | None) is None


def test_env_bool_conversion_rejects_other_words() -> None:
    with pytest.raises(ValueError, match="expected true/false/1/0/yes/no, got 'on'"):
        from_env("on", bool)


@pytest.mark.parametrize(
    ("variable", "text", "expected"),
    [
        ("FRAUDSCREEN_SERVER_MAX_WORKERS", "lots", "expected an integer, got 'lots'"),
        ("FRAUDSCREEN_SERVER_MAX_WORKERS", "4.0", "expected an integer, got '4.0'"),
        ("FRAUDSCREEN_SERVER_MAX_WORKERS", "", "expected an integer, got ''"),
        ("FRAUDSCREEN_SERVER_GRACE_SECONDS", "10s", "expected a number, got '10s'"),
        ("FRAUDSCREEN_POLICY_REVIEW_THRESHOLD", "high", "expected a number, got 'high'"),
        ("FRAUDSCREEN_JOURNAL_DURABILITY", "FULL", "expected one of 'normal', 'full', got"),
        ("FRAUDSCREEN_LOGGING_LEVEL", "trace", "expected one of 'debug', 'info', 'warning'"),
        ("FRAUDSCREEN_JOURNAL_PATH", "", "expected a path, got an empty string"),
    ],
)
def test_env_conversion_errors(variable: str, text: str, expected: str) -> None:
    setting = next(name for name in ALL_SETTINGS if env_var_name(name) == variable)
    message = config_error(None, {variable: text})
    assert message.startswith(f"config error: {setting} (from {variable}): ")
    assert expected in message


@pytest.mark.parametrize(
    ("toml", "setting", "expected"),
    [
        ('[server]\nmax_workers = "16"', "server.max_workers", "expected an integer, got string"),
        ("[server]\nmax_workers = 1.5", "server.max_workers", "expected an integer, got float"),
        ("[server]\nmax_workers = true", "server.max_workers", "expected an integer, got bool"),
        ("[server]\ngrace_seconds = true", "server.grace_seconds", "expected a number"),
        ("[server]\nlisten = 50051", "server.listen", "expected a string, got integer 50051"),
        ('[site]\ncurrencies = "EUR"', "site.currencies", "expected an array of strings"),
        ("[site]\ncurrencies = [978]", "site.currencies", "expected an array of strings"),
        ('[site]\nkey_file = ""', "site.key_file", "expected a path (non-empty string)"),
        ("[site]\nkey_file = 1", "site.key_file", "expected a path"),
        ('[journal]\ndurability = "fast"', "journal.durability", "expected one of 'normal'"),
        ("[policy]\nreview_threshold = [1]", "policy.review_threshold", "got array [1]"),
        ("[journal]\npath = 2024-01-01", "journal.path", "got date"),
        ("server = 5", "server", "expected a table [server], got integer 5"),
        ("[server]\ntls = 1", "server.tls", "expected a table [server.tls]"),
    ],
)
def test_file_type_errors(tmp_path: Path, toml: str, setting: str, expected: str) -> None:
    file = write(tmp_path / "gw.toml", toml + "\n")
    message = config_error(file)
    assert message.startswith(f"config error: {setting} (from {file}): ")
    assert expected in message


# --- validation rules --------------------------------------------------------------------

INVALID = [
    ("site.id", '"shop 17"', "must be 1 to 64 of the characters"),
    ("site.id", '""', "must be 1 to 64"),
    ("site.id", '"' + "x" * 65 + '"', "must be 1 to 64"),
    ("site.timezone", '"Mars/Olympus_Mons"', "is not an IANA time zone"),
    ("site.timezone", '"../etc/passwd"', "is not an IANA time zone"),
    ("site.currencies", "[]", "at least one currency"),
    ("site.currencies", '["eur"]', "'eur' is not an ISO 4217 code"),
    ("site.currencies", '["EURO"]', "'EURO' is not an ISO 4217 code"),
    ("site.currencies", '["EUR", "USD", "EUR"]', "EUR listed more than once"),
    ("server.listen", '"abc"', "'abc' is not host:port"),
    ("server.listen", '"127.0.0.1:65536"', "is not a number 0..65535"),
    ("server.listen", '"127.0.0.1:http"', "is not a number 0..65535"),
    ("server.listen", '"::1:50051"', "write an IPv6 address in brackets"),
    ("server.listen", '":50051"', "the host is missing"),
    ("server.listen", '"300.1.2.3:1"', "is not an IP address or host name"),
    ("server.listen", '"[::1]50051"', "no ':port' after ']'"),
    ("server.max_workers", "0", "must be >= 1 and <= 1024, got 0"),
    ("server.max_workers", "1025", "must be >= 1 and <= 1024"),
    ("server.max_concurrent_rpcs", "0", "must be >= 1 and <= 10000"),
    ("server.max_concurrent_rpcs", "10001", "must be >= 1 and <= 10000"),
    ("server.max_streams", "0", "must be >= 1 and <= 10000"),
    ("server.idle_timeout", "0", "must be >= 0.1 and <= 86400"),
    ("server.max_message_bytes", "1023", "must be >= 1024 and <= 67108864"),
    ("server.max_message_bytes", "67108865", "must be >= 1024 and <= 67108864"),
    ("server.grace_seconds", "-1", "must be >= 0 and <= 600"),
    ("server.pin_cpu", '"first"', "must be 'auto', 'off' or a CPU number"),
    ("server.pin_cpu", '"-1"', "must be 'auto', 'off' or a CPU number"),
    ("server.grace_seconds", "600.5", "must be >= 0 and <= 600"),
    ("server.grace_seconds", "nan", "must be >= 0 and <= 600, got nan"),
    ("metrics.listen", '"localhost"', "'localhost' is not host:port"),
    ("model.compiler", '""', "must be a compiler command"),
    ("model.predictor", '"gpu"', "expected one of 'native', 'lightgbm'"),
    ("model.shadow_transactions", "-1", "must be >= 0 and <= 10000000"),
    ("model.compiler", '" gcc"', "must be a compiler command"),
    ("policy.review_threshold", "1.5", "must be >= 0 and <= 1, got 1.5"),
    ("policy.review_threshold", "-0.1", "must be >= 0 and <= 1"),
    ("policy.decline_threshold", "2", "must be >= 0 and <= 1, got 2.0"),
    ("policy.blocked_cards_file", '"missing-blocklist.txt"', "does not exist"),
    ("policy.decline_above_minor", "0", "must be > 0 (minor units), got 0"),
    ("policy.review_above_minor", "-5", "must be > 0"),
    ("policy.stand_in_review_above_minor", "0", "must be > 0"),
    ("journal.retention_days", "37", "must be >= 38 and <= 3650, got 37"),
    ("journal.retention_days", "3651", "must be >= 38 and <= 3650"),
    ("journal.batch_max", "0", "must be >= 1 and <= 100000"),
    ("journal.batch_max", "100001", "must be >= 1 and <= 100000"),
    ("journal.flush_interval_ms", "-1", "must be >= 0 and <= 1000"),
    ("journal.flush_interval_ms", "1000.5", "must be >= 0 and <= 1000"),
    ("journal.max_queue", "999", "must be >= 1000 and <= 10000000"),
    ("journal.max_queue", "10000001", "must be >= 1000 and <= 10000000"),
    ("journal.durability", '"fast"', "expected one of 'normal', 'full'"),
    ("screening.idempotency_window_hours", "0", "must be > 0 and <= 720, got 0.0"),
    ("screening.idempotency_window_hours", "721", "must be > 0 and <= 720"),
    ("screening.max_transaction_age_days", "0", "must be > 0 and <= 3650"),
    ("screening.max_transaction_age_days", "inf", "must be > 0 and <= 3650, got inf"),
    ("screening.max_clock_skew_seconds", "-1", "must be >= 0 and <= 86400"),
    ("screening.max_clock_skew_seconds", "86401", "must be >= 0 and <= 86400"),
    ("logging.format", '"xml"', "expected one of 'auto', 'json', 'console'"),
    ("logging.level", '"trace"', "expected one of 'debug', 'info', 'warning', 'error'"),
    ("logging.requests", '"some"', "expected one of 'none', 'non_approve', 'all'"),
    ("privacy.epsilon_per_period", "0", "must be > 0 and <= 50"),
    ("privacy.delta", "0.1", "must be > 0 and <= 0.001"),
    ("privacy.max_contributions", "0", "must be >= 1 and <= 1000"),
    ("privacy.period_days", "32", "must be >= 1 and <= 31"),
    ("privacy.label_maturity_days", "181", "must be >= 0 and <= 180"),
    ("privacy.epsilon_budget", "0", "must be > 0"),
    ("privacy.mechanism", '"laplace"', "expected one of 'known_domain', 'threshold'"),
    ("sync.hub", '"nowhere"', "host:port"),
    ("sync.interval_seconds", "0", "must be >= 1 and <= 86400"),
    ("sync.max_backoff_seconds", "0", "must be >= 1 and <= 86400"),
]


def toml_for(setting: str, literal: str) -> str:
    table, _, key = setting.rpartition(".")
    return f"[{table}]\n{key} = {literal}\n"


def env_text_for(literal: str) -> str:
    value = tomllib.loads(f"v = {literal}")["v"]
    return ",".join(value) if isinstance(value, list) else str(value)


@pytest.mark.parametrize(("setting", "literal", "expected"), INVALID)
def test_invalid_value_from_file(tmp_path: Path, setting: str, literal: str, expected: str) -> None:
    file = write(tmp_path / "conf" / "gw.toml", toml_for(setting, literal))
    message = config_error(file)
    assert message.startswith(f"config error: {setting} (from {file}): ")
    assert expected in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(("setting", "literal", "expected"), INVALID)
def test_invalid_value_from_env(setting: str, literal: str, expected: str) -> None:
    variable = env_var_name(setting)
    message = config_error(None, {variable: env_text_for(literal)})
    assert message.startswith(f"config error: {setting} (from {variable}): ")
    assert expected in message


def test_every_range_rule_is_covered() -> None:
    settings = {setting for setting, _, _ in INVALID}
    unchecked = {
        "site.key_file",
        "model.bundle",
        "model.cache_dir",
        "journal.path",
        "model.trusted_keys",
        "model.releases_dir",
        "sync.token_file",
        "sync.ca_file",
        "sync.cert_file",
        "sync.key_file",
    }
    tls = {name for name in ALL_SETTINGS if ".tls." in name}  # covered by the TLS tests
    assert settings == set(ALL_SETTINGS) - unchecked - tls


def test_cross_field_rules_name_both_settings_and_sources(tmp_path: Path) -> None:
    file = write(tmp_path / "gw.toml", "[policy]\ndecline_threshold = 0.4\n")
    message = config_error(file, {"FRAUDSCREEN_POLICY_REVIEW_THRESHOLD": "0.6"})
    assert message == (
        "config error: policy.review_threshold (from FRAUDSCREEN_POLICY_REVIEW_THRESHOLD) and "
        f"policy.decline_threshold (from {file}): "
        "review_threshold 0.6 must be <= decline_threshold 0.4"
    )
    message = config_error(
        None,
        {
            "FRAUDSCREEN_POLICY_REVIEW_ABOVE_MINOR": "50000",
            "FRAUDSCREEN_POLICY_DECLINE_ABOVE_MINOR": "10000",
        },
    )
    assert "policy.review_above_minor (from FRAUDSCREEN_POLICY_REVIEW_ABOVE_MINOR) and " in message
    assert "must be <= decline_above_minor 10000" in message


def test_equal_thresholds_and_limits_are_allowed() -> None:
    environ = {
        "FRAUDSCREEN_POLICY_REVIEW_THRESHOLD": "0.5",
        "FRAUDSCREEN_POLICY_DECLINE_THRESHOLD": "0.5",
        "FRAUDSCREEN_POLICY_REVIEW_ABOVE_MINOR": "100",
        "FRAUDSCREEN_POLICY_DECLINE_ABOVE_MINOR": "100",
    }
    policy = load_config(None, environ).policy
    assert policy.review_threshold == policy.decline_threshold == 0.5


def test_blocked_cards_file_relative_to_config_file(tmp_path: Path) -> None:
    blocklist = write(tmp_path / "conf" / "blocked.txt", "tok_abc\n")
    file = write(tmp_path / "conf" / "gw.toml", '[policy]\nblocked_cards_file = "blocked.txt"\n')
    assert load_config(file, environ={}).policy.blocked_cards_file == blocklist


def test_listeners_on_the_same_port_are_rejected() -> None:
    message = config_error(None, {"FRAUDSCREEN_METRICS_LISTEN": "127.0.0.1:50051"})
    assert message == (
        "config error: server.listen (default) and metrics.listen (from "
        "FRAUDSCREEN_METRICS_LISTEN): gRPC and metrics listeners would use the same port"
    )
    assert "same port" in config_error(None, {"FRAUDSCREEN_METRICS_LISTEN": "0.0.0.0:50051"})
    ok = {"FRAUDSCREEN_SERVER_LISTEN": "127.0.0.1:0", "FRAUDSCREEN_METRICS_LISTEN": "[::1]:0"}
    assert load_config(None, ok).server.listen == "127.0.0.1:0"
    assert load_config(None, {"FRAUDSCREEN_METRICS_LISTEN": "[::1]:50051"}).metrics.enabled


def test_all_problems_are_reported_together(tmp_path: Path) -> None:
    file = write(tmp_path / "gw.toml", '[server]\nmax_workers = 0\n[journal]\nbatch_max = "x"\n')
    environ = {"FRAUDSCREEN_SITE_ID": "a b", "FRAUDSCREEN_SERVER_LISTN": "x"}
    with pytest.raises(ConfigError) as info:
        load_config(file, environ)
    problems = info.value.problems
    assert len(problems) == 4
    assert all(problem.startswith("config error: ") for problem in problems)
    assert str(info.value) == "\n".join(problems)
    for fragment in ("site.id", "server.max_workers", "journal.batch_max", "SERVER_LISTN"):
        assert sum(fragment in problem for problem in problems) == 1


# --- unknown names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[servr]\nlisten = "x"', "[servr] (from {file}): unknown section; did you mean [server]?"),
        ("[bogus]\nx = 1", "[bogus] (from {file}): unknown section; sections are site, server,"),
        (
            '[server]\nlistn = "x"',
            "server.listn (from {file}): unknown setting; did you mean server.listen?",
        ),
        (
            '[server.tls]\ncert = "x"',
            "server.tls.cert (from {file}): unknown setting; did you mean server.tls.cert_file?",
        ),
        ("[journal]\nzzz = 1", "journal.zzz (from {file}): unknown setting; [journal] has path,"),
        (
            'listen = "x"',
            "listen (from {file}): setting outside any section; put it under [server] or [metrics]",
        ),
        ("foo = 1", "foo (from {file}): setting outside any section; settings belong under"),
    ],
)
def test_unknown_names_in_file(tmp_path: Path, toml: str, expected: str) -> None:
    file = write(tmp_path / "gw.toml", toml + "\n")
    assert f"config error: {expected.format(file=file)}" in config_error(file)


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("FRAUDSCREEN_SERVER_LISTN", "did you mean FRAUDSCREEN_SERVER_LISTEN?"),
        ("FRAUDSCREEN_SERVER_TLS_CERT", "did you mean FRAUDSCREEN_SERVER_TLS_CERT_FILE?"),
        ("FRAUDSCREEN_JOURNAL_RETENTION", "did you mean FRAUDSCREEN_JOURNAL_RETENTION_DAYS?"),
        ("FRAUDSCREEN_SITE_QQQQQQQQQQQQ", "[site] has no such setting"),
        ("FRAUDSCREEN_SERVR_LISTEN", "did you mean FRAUDSCREEN_SERVER_LISTEN?"),
        ("FRAUDSCREEN_LOG_LEVEL", "did you mean FRAUDSCREEN_LOGGING_LEVEL?"),
    ],
)
def test_env_typos_are_errors(variable: str, expected: str) -> None:
    message = config_error(None, {variable: "x"})
    assert message.startswith(f"config error: {variable}: not a setting; {expected}")


def test_other_environment_variables_are_ignored(tmp_path: Path) -> None:
    environ = {
        "FRAUDSCREEN_CONFIG": str(write(tmp_path / "gw.toml", "")),
        "FRAUDSCREEN_CACHE_DIR": "/tmp/cache",
        "FRAUDSCREEN_HUB_TOKEN": "secret",
        "FRAUDSCREEN_SYNC_INTERVAL_SECONDS": "60",  # the default, so configs compare equal
        "FRAUDSCREEN_HUB_URL": "https://hub.example",
        "FRAUDSCREEN_DEBUGGER": "1",
        "fraudscreen_server_listen": "lower case is not ours",
        "SERVER_LISTEN": "nor is this",
        "PATH": "/usr/bin",
    }
    assert load_config(None, environ) == load_config(None, {})


def test_env_names_are_unique_and_derived_from_setting_names() -> None:
    names = [env_var_name(setting) for setting in ALL_SETTINGS]
    assert len(set(names)) == len(names) == 58
    assert env_var_name("server.tls.cert_file") == "FRAUDSCREEN_SERVER_TLS_CERT_FILE"
    assert env_var_name("metrics.tls.key_file") == "FRAUDSCREEN_METRICS_TLS_KEY_FILE"


# --- TOML syntax -------------------------------------------------------------------------


def test_bad_toml_reports_file_and_line(tmp_path: Path) -> None:
    file = write(tmp_path / "gw.toml", '[server]\nlisten = "127.0.0.1:1"\nmax_workers = \n')
    message = config_error(file)
    assert message.startswith(f"config error: {file}, line 3, column ")
    assert "invalid TOML" in message


def test_duplicate_key_is_a_toml_error(tmp_path: Path) -> None:
    file = write(tmp_path / "gw.toml", "[journal]\nbatch_max = 1\nbatch_max = 2\n")
    assert f"{file}, line 3" in config_error(file)


def test_non_utf8_file(tmp_path: Path) -> None:
    file = tmp_path / "gw.toml"
    file.write_bytes(b'[site]\nid = "caf\xe9"\n')
    assert config_error(file) == f"config error: {file}: invalid TOML: not UTF-8 text"


# --- paths -------------------------------------------------------------------------------


def test_relative_paths(tmp_path: Path) -> None:
    file = write(
        tmp_path / "etc" / "fraudscreen" / "gw.toml",
        '[site]\nkey_file = "keys/site.key"\n[journal]\npath = "../../data/j.db"\n'
        '[model]\nbundle = "/abs/bundle"\n',
    )
    environ = {"FRAUDSCREEN_MODEL_CACHE_DIR": "cache"}
    config = load_config(file, environ)
    assert config.site.key_file == tmp_path / "etc" / "fraudscreen" / "keys" / "site.key"
    assert config.journal.path == tmp_path / "etc" / "fraudscreen" / "../../data/j.db"
    assert config.model.bundle == Path("/abs/bundle")
    assert config.model.cache_dir == tmp_path / "cache"  # env: relative to the cwd

    config = load_config(None, {"FRAUDSCREEN_JOURNAL_PATH": "j.db"})
    assert config.journal.path == tmp_path / "j.db"
    assert config.site.key_file == tmp_path / "var" / "site.key"  # default: the cwd


def test_relative_config_path_argument(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "gw.toml", '[site]\nkey_file = "k"\n')
    assert load_config(Path("conf/gw.toml"), {}).site.key_file == tmp_path / "conf" / "k"


def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    config = load_config(None, {"FRAUDSCREEN_SITE_KEY_FILE": "~/site.key"})
    assert config.site.key_file == tmp_path / "home" / "site.key"


# --- TLS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("section", ["server", "metrics"])
def test_tls_and_mutual_tls(tmp_path: Path, pem_files: dict[str, Path], section: str) -> None:
    prefix = f"FRAUDSCREEN_{section.upper()}_TLS_"
    environ = {prefix + "CERT_FILE": "pki/server.crt", prefix + "KEY_FILE": "pki/server.key"}
    tls = get(load_config(None, environ), f"{section}.tls")
    assert tls == TLSConfig(pem_files["server.crt"], pem_files["server.key"])
    assert tls.enabled
    assert not tls.mutual

    environ[prefix + "CLIENT_CA_FILE"] = str(pem_files["ca.crt"])
    tls = get(load_config(None, environ), f"{section}.tls")
    assert tls.enabled
    assert tls.mutual
    assert tls.client_ca_file == pem_files["ca.crt"]


def test_tls_from_file_is_relative_to_file(
    tmp_path: Path, pem_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    file = write(
        tmp_path / "gw.toml",
        '[server.tls]\ncert_file = "pki/server.crt"\nkey_file = "pki/server.key"\n'
        'client_ca_file = "pki/ca.crt"\n',
    )
    other_cwd = tmp_path / "elsewhere"
    other_cwd.mkdir()
    monkeypatch.chdir(other_cwd)
    assert load_config(file, {}).server.tls.mutual


@pytest.mark.parametrize(
    ("section", "variables", "expected"),
    [
        (
            "server",
            {"CERT_FILE": "pki/server.crt"},
            "server.tls.cert_file (from FRAUDSCREEN_SERVER_TLS_CERT_FILE) and "
            "server.tls.key_file (default): set both cert_file and key_file (TLS) or neither",
        ),
        (
            "metrics",
            {"KEY_FILE": "pki/server.key"},
            "metrics.tls.cert_file (default) and metrics.tls.key_file (from "
            "FRAUDSCREEN_METRICS_TLS_KEY_FILE): set both",
        ),
        (
            "server",
            {"CLIENT_CA_FILE": "pki/ca.crt"},
            "server.tls.client_ca_file (from FRAUDSCREEN_SERVER_TLS_CLIENT_CA_FILE): "
            "mutual TLS needs cert_file and key_file as well",
        ),
        (
            "server",
            {"CERT_FILE": "pki/missing.crt", "KEY_FILE": "pki/server.key"},
            "server.tls.cert_file (from FRAUDSCREEN_SERVER_TLS_CERT_FILE): file '{tmp}/pki/"
            "missing.crt' does not exist",
        ),
        (
            "metrics",
            {"CERT_FILE": "pki/server.crt", "KEY_FILE": "pki"},
            "metrics.tls.key_file (from FRAUDSCREEN_METRICS_TLS_KEY_FILE): '{tmp}/pki' is not "
            "a regular file",
        ),
        (
            "server",
            {"CERT_FILE": "pki/server.crt", "KEY_FILE": "pki/server.key", "CLIENT_CA_FILE": "x"},
            "server.tls.client_ca_file (from FRAUDSCREEN_SERVER_TLS_CLIENT_CA_FILE): file "
            "'{tmp}/x' does not exist",
        ),
    ],
)
def test_tls_errors(
    tmp_path: Path,
    pem_files: dict[str, Path],
    section: str,
    variables: dict[str, str],
    expected: str,
) -> None:
    prefix = f"FRAUDSCREEN_{section.upper()}_TLS_"
    message = config_error(None, {prefix + key: value for key, value in variables.items()})
    assert message.startswith("config error: " + expected.format(tmp=tmp_path))
    assert len(message.splitlines()) == 1


def test_tls_unreadable_key(
    tmp_path: Path, pem_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = pem_files["server.key"]
    real_access = os.access

    def access(path: Any, mode: int) -> bool:  # chmod 0 does not stop root: simulate it
        return Path(path) != key and real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    environ = {
        "FRAUDSCREEN_SERVER_TLS_CERT_FILE": str(pem_files["server.crt"]),
        "FRAUDSCREEN_SERVER_TLS_KEY_FILE": str(key),
    }
    assert config_error(None, environ) == (
        "config error: server.tls.key_file (from FRAUDSCREEN_SERVER_TLS_KEY_FILE): "
        f"file '{key}' is not readable"
    )


# --- the example file --------------------------------------------------------------------


def test_example_toml_gives_exactly_the_defaults(tmp_path: Path) -> None:
    # Its relative paths resolve against its own directory: put it in the cwd.
    file = write(tmp_path / "fraudscreen.toml", EXAMPLE_TOML)
    assert load_config(file, environ={}) == load_config(None, environ={})


def test_example_toml_mentions_every_setting_in_its_table(tmp_path: Path) -> None:
    """Uncommenting the commented-out settings gives a file with every setting exactly once."""
    uncommented = re.sub(r"^# (\w+ = )", r"\1", EXAMPLE_TOML, flags=re.MULTILINE)
    data = tomllib.loads(uncommented)

    def flatten(table: dict[str, Any], prefix: str = "") -> list[str]:
        names: list[str] = []
        for key, value in table.items():
            if isinstance(value, dict):
                names += flatten(value, f"{prefix}{key}.")
            else:
                names.append(prefix + key)
        return names

    assert sorted(flatten(data)) == sorted(ALL_SETTINGS)
    config = load_config(write(tmp_path / "full.toml", uncommented), environ={})
    assert config.policy.review_threshold is not None


# --- host:port ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:50051", ("127.0.0.1", 50051)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:9464", ("localhost", 9464)),
        ("gateway-1.shop.example:443", ("gateway-1.shop.example", 443)),
        ("[::1]:50051", ("::1", 50051)),
        ("[::]:65535", ("::", 65535)),
        ("[2001:db8::7]:8443", ("2001:db8::7", 8443)),
        ("[fe80::1%eth0]:50051", ("fe80::1%eth0", 50051)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", "'abc' is not host:port"),
        ("", "'' is not host:port"),
        ("::1", "write an IPv6 address in brackets"),
        ("[::1", "no ']'"),
        ("[::1]", "no ':port'"),
        ("[127.0.0.1]:80", "is not an IPv6 address"),
        ("1.2.3:80", "is not an IP address or host name"),
        ("-bad-.example:80", "is not an IP address or host name"),
        ("host:", "port '' is not a number"),
        ("host:-1", "port '-1' is not a number"),
        ("host:99999", "port '99999' is not a number 0..65535"),
        ("host:٣", "port '٣' is not a number"),
    ],
)
def test_parse_host_port_errors(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)) as info:
        parse_host_port(text)
    assert not isinstance(info.value, ConfigError)


def test_ipv6_listen_addresses_load() -> None:
    environ = {"FRAUDSCREEN_SERVER_LISTEN": "[::1]:0", "FRAUDSCREEN_METRICS_LISTEN": "[::]:9464"}
    config = load_config(None, environ)
    assert parse_host_port(config.server.listen) == ("::1", 0)
    assert parse_host_port(config.metrics.listen) == ("::", 9464)


# --- describe ----------------------------------------------------------------------------


def test_describe_is_json_and_complete(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "gw.toml", FULL_TOML), environ={})
    described = describe(config)
    assert json.loads(json.dumps(described)) == described
    assert described["site"] == {
        "id": "shop-17.paris_north",
        "timezone": "Europe/Paris",
        "currencies": ["EUR", "CHF", "JPY"],
        "key_file": "/srv/keys/site.key",
    }
    for setting in ALL_SETTINGS:
        node: Any = described
        for part in setting.split("."):
            node = node[part]
        value = get(config, setting)
        if isinstance(value, Path):
            assert node == str(value)
        elif isinstance(value, tuple):
            assert node == list(value)
        else:
            assert node == value
