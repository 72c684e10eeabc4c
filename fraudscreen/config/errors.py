"""The two errors of the configuration: one for the whole load, one raised by a settings class.

A settings class knows which of its fields are wrong but not where their values came from;
the loader catches :class:`InvalidSettingError` and adds the section and the source.
"""

from __future__ import annotations


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
