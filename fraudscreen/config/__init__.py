"""Gateway configuration: one TOML file plus ``FRAUDSCREEN_*`` environment variables.

settings (the typed sections and their checks), loader (file + environment -> settings,
errors naming setting and source), example (EXAMPLE_TOML), host_port (``host:port``).
Everything importers use is re-exported here: ``from fraudscreen.config import X``.
The loader's docstring says why it is hand-written rather than pydantic-settings.
"""

from fraudscreen.config.errors import ConfigError, InvalidSettingError
from fraudscreen.config.example import EXAMPLE_TOML
from fraudscreen.config.host_port import parse_host_port
from fraudscreen.config.loader import (
    CONFIG_ENV,
    ENV_PREFIX,
    RESERVED_ENV_NAMES,
    RESERVED_ENV_PREFIXES,
    env_var_name,
    load_config,
)
from fraudscreen.config.settings import (
    DEFAULT_BUNDLE,
    Durability,
    GatewayConfig,
    JournalConfig,
    LogFormat,
    LoggingConfig,
    LogLevel,
    MetricsConfig,
    ModelConfig,
    PolicyConfig,
    PredictorChoice,
    PrivacyConfig,
    ReleaseMechanism,
    RequestLogging,
    ScreeningConfig,
    ServerConfig,
    SiteConfig,
    SyncConfig,
    TLSConfig,
    describe,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_BUNDLE",
    "ENV_PREFIX",
    "EXAMPLE_TOML",
    "RESERVED_ENV_NAMES",
    "RESERVED_ENV_PREFIXES",
    "ConfigError",
    "Durability",
    "GatewayConfig",
    "InvalidSettingError",
    "JournalConfig",
    "LogFormat",
    "LogLevel",
    "LoggingConfig",
    "MetricsConfig",
    "ModelConfig",
    "PolicyConfig",
    "PredictorChoice",
    "PrivacyConfig",
    "ReleaseMechanism",
    "RequestLogging",
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
