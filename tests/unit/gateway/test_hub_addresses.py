"""A gateway's list of hub addresses, checked when the settings load."""

from __future__ import annotations

import pytest

from fraudscreen.config import SyncConfig


def test_a_bad_hub_address_in_the_list_is_named() -> None:
    from fraudscreen.config import InvalidSettingError

    with pytest.raises(InvalidSettingError, match="hub"):
        SyncConfig(hub="127.0.0.1:50061,not-an-address")
