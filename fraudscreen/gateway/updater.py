"""Signed model releases on the gateway: fetch, verify, compile, shadow, swap, roll back.

Polls the hub for the release meant for this site. A release is installed only if its
signature comes from a configured trusted key and every file hash matches; it is then
compiled here (never a shipped .so), checked on its golden rows, optionally scored in
shadow beside the live model, and swapped in between two requests. Any failure keeps the
running model and shows in the log, the metrics and the `fraudscreen.model_update`
health status. `fraudscreen model rollback` rewrites the release state; this watcher
notices and swaps back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import structlog

from fraudscreen.config import GatewayConfig
from fraudscreen.gateway.hub_link import HubWorker, hub_metadata
from fraudscreen.model.bundle import Bundle, load_bundle
from fraudscreen.model.compile import CompileError, CompileOptions
from fraudscreen.model.releases import ReleaseError, ReleaseStore
from fraudscreen.model.signing import PublicKey, load_trusted_keys
from fraudscreen.policy import Policy
from fraudscreen.screening import ActiveModel, ModelSlot, ScreeningEngine
from fraudscreen.v1 import sync_pb2 as sync_pb

log = structlog.get_logger(__name__)

STATE_POLL_SECONDS = 2.0
SHADOW_TIMEOUT_SECONDS = 6 * 3600.0


class ModelUpdater(HubWorker):
    def __init__(
        self,
        config: GatewayConfig,
        *,
        slot: ModelSlot,
        engine: ScreeningEngine,
        policy: Policy,
        on_swap: Callable[[ActiveModel], None],
        on_result: Callable[[str, str | None], None],
    ) -> None:
        super().__init__(config.sync, "model-updater")
        self.config = config
        self.slot = slot
        self.engine = engine
        self.policy = policy
        self.store = ReleaseStore(config.model.releases_dir)
        self.trusted: list[PublicKey] = (
            load_trusted_keys([Path(p) for p in config.model.trusted_keys])
            if config.model.trusted_keys
            else []
        )
        self.compile_options = CompileOptions(
            compiler=config.model.compiler, cache_dir=config.model.cache_dir
        )
        self._on_swap = on_swap
        self._on_result = on_result
        self._failed: set[str] = set()
        self._stamp = self.store.state_stamp()

    @property
    def enabled(self) -> bool:
        return bool(self.trusted)

    # -- startup ------------------------------------------------------------------------

    def current_release(self) -> Bundle | None:
        """The release state.json names as current, verified again; None if there is none.

        With updates off (no trusted keys) state.json is not read at all: a damaged file
        left from an earlier setup must not send the gateway to the stand-in policy."""
        if not self.enabled:
            return None
        version = self.store.state().current
        if version is None:
            return None
        return self.store.load(version, self.trusted)

    # -- one install --------------------------------------------------------------------

    def install(self, version: str, files: dict[str, bytes]) -> bool:
        """Verify, compile, shadow and swap one release. False (old model kept) on failure."""
        live = self.slot.current
        try:
            bundle = self.store.stage(version, files, self.trusted)
            candidate = ActiveModel.from_bundle(
                bundle, self.policy, self.compile_options, require_native=True
            )
        except (ReleaseError, CompileError, OSError, ValueError) as exc:
            self._failed.add(version)
            log.error(
                "model.update_refused",
                model_version=version,
                reason=str(exc),
                running=live.version if live else None,
                action="the running model stays; check the release and this gateway's trusted keys",
            )
            self._on_result("refused", str(exc))
            return False
        if live is not None and self.config.model.shadow_transactions > 0:
            trial = self.engine.start_shadow(candidate, self.config.model.shadow_transactions)
            finished = trial.done.wait(SHADOW_TIMEOUT_SECONDS)
            self.engine.stop_shadow()
            log.info(
                "model.shadow_result",
                model_version=version,
                live=live.version,
                transactions=trial.seen,
                same_decision=round(trial.agreement, 4),
                max_score_diff=round(trial.max_score_diff, 6),
                completed=finished,
            )
        self.store.activate(version)  # state first: a rollback right after must see it
        self._stamp = self.store.state_stamp()
        self.slot.swap(candidate)
        self._on_swap(candidate)
        self._on_result("swapped", None)
        log.info("model.swapped", model_version=version, previous=live.version if live else None)
        return True

    # -- background ---------------------------------------------------------------------

    def start(self) -> None:
        if not self.enabled:
            log.info("model.updates_disabled", reason="no trusted release keys configured")
            return
        super().start()

    def _run(self) -> None:
        next_poll = time.monotonic()
        while not self._stop.is_set():
            try:
                self.follow_local_state()
                if self.config.sync.hub and time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.config.sync.interval_seconds
                    self.poll_hub()
            except Exception as exc:  # keep serving; try again next round
                self.hub_failed()
                log.warning("model.update_check_failed", error=str(exc))
                self._on_result("failed", str(exc))
            self._stop.wait(STATE_POLL_SECONDS)

    def follow_local_state(self) -> None:
        """Swap to what state.json names (after `fraudscreen model rollback`)."""
        stamp = self.store.state_stamp()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        version = self.store.state().current
        live = self.slot.current
        bundle = (
            self.store.load(version, self.trusted)
            if version is not None
            else load_bundle(self.config.model.bundle)
        )
        if live is not None and live.version == bundle.model_version:
            return
        model = ActiveModel.from_bundle(bundle, self.policy, self.compile_options)
        self.slot.swap(model)
        self._on_swap(model)
        self._on_result("rolled_back", None)
        log.warning(
            "model.rolled_back",
            model_version=model.version,
            from_version=live.version if live else None,
        )

    def poll_hub(self) -> None:
        live = self.slot.current
        reply = self.hub_stub().FetchRelease(
            sync_pb.FetchReleaseRequest(
                current_version=live.version if live else "", state=self.state_message()
            ),
            timeout=60,
            metadata=hub_metadata(self.config.sync),
        )
        if not reply.available:
            return
        version = reply.release.model_version
        state = self.store.state()
        if version in state.rejected or version in self._failed:
            return
        if live is not None and live.version == version:
            return
        self.install(version, {f.name: f.content for f in reply.release.files})
