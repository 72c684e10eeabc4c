"""What this gateway tells the hub about itself on each sync call (fraudscreen.v1
GatewayState): the model it runs and how, the stand-in flag, the last model update, the
outbox backlog and the privacy budget. Public or DP-protected facts only; nothing about a
transaction, card or terminal."""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections.abc import Callable

from fraudscreen.storage.outbox import PrivacyOutbox
from fraudscreen.v1 import sync_pb2 as sync_pb


def software_version() -> str:
    try:
        return importlib.metadata.version("fraudscreen")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class StateReporter:
    """Collects the gateway's state from its parts when a sync call is made."""

    def __init__(
        self,
        *,
        model: Callable[[], tuple[str, str]],  # (model_version, predictor kind) or ("", "")
        stand_in: Callable[[], bool],
        outbox: PrivacyOutbox,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._model = model
        self._stand_in = stand_in
        self._outbox = outbox
        self._clock = clock
        self._lock = threading.Lock()
        self._last_update = ("", 0.0)
        self._software = software_version()

    def update_result(self, result: str) -> None:
        """The model updater's last result: swapped, refused, failed, rolled_back."""
        with self._lock:
            self._last_update = (result, self._clock())

    def message(self) -> sync_pb.GatewayState:
        version, predictor = self._model()
        ledger = self._outbox.status()
        with self._lock:
            result, at = self._last_update
        return sync_pb.GatewayState(
            model_version=version,
            predictor=predictor,
            stand_in=self._stand_in(),
            last_update_result=result,
            last_update_at=at,
            pending_batches=ledger.pending,
            epsilon_spent=ledger.spent,
            epsilon_budget=ledger.budget,
            software_version=self._software,
        )
