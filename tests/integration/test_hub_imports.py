"""Importing the hub in a fresh interpreter loads nothing of the gateway."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def test_importing_the_hub_loads_nothing_of_the_gateway() -> None:
    # The hub runs on its own host: it must not drag in the gateway's serving stack.
    script = textwrap.dedent(
        """
        import json, sys
        import fraudscreen.hub.server, fraudscreen.hub.commands
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("fraudscreen"))))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout
    loaded = set(json.loads(out))
    assert "fraudscreen.hub.server" in loaded
    gateway_only = {
        "fraudscreen.screening",
        "fraudscreen.storage.journal",
        "fraudscreen.model.compile",
        "fraudscreen.model.predictor",
        "fraudscreen.features.online",
    }
    assert loaded & gateway_only == set()
    assert not {m for m in loaded if m.startswith(("fraudscreen.transport", "fraudscreen.gateway"))}
    assert not {m for m in loaded if m.startswith("fraudscreen.storage.journal")}
