"""The site's wall clock: weekend and night are local notions, transactions carry UTC."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

_BUCKET = 900  # every UTC offset in use is a multiple of 15 minutes


class SiteClock:
    """Local (weekday, hour) of an epoch second, cached per 15-minute bucket."""

    def __init__(self, timezone: str) -> None:
        self.zone = ZoneInfo(timezone)
        self._bucket = lru_cache(maxsize=4096)(self._compute)

    def weekday_hour(self, timestamp: int) -> tuple[int, int]:
        return self._bucket(timestamp // _BUCKET)

    def _compute(self, bucket: int) -> tuple[int, int]:
        local = dt.datetime.fromtimestamp(bucket * _BUCKET, self.zone)
        return local.weekday(), local.hour
