"""Gateway configuration's validation rules: ranges, cross-field rules, paths, TLS, host:port."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from fraudscreen.config import (
    ConfigError,
    TLSConfig,
    env_var_name,
    load_config,
    parse_host_port,
)
from tests.support.config_files import ALL_SETTINGS, config_error, get, write

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
    ("privacy.epsilon_per_day", "0", "must be > 0 and <= 50"),
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
