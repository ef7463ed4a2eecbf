"""Keeps one camera source running: open, forward packets, and reconnect with backoff.

Theory of operation. `run` loops over *sessions*. A session opens the source, reports the
stream configurations (`on_open`), then forwards every packet (`on_packet`) until the
source fails. Any failure of the source (SourceUnavailable, SourceConfigError, or an
unexpected exception from a buggy source) ends the session: the source is closed, a
`camera_lost` event is emitted the first time (not again while it stays lost), and the
next session starts after a backoff delay. The first packet of a later session emits
`camera_restored`. Backoff grows exponentially from `initial_s` to `max_s` with upward
jitter from the injected `random.Random` (so a site's cameras do not all retry in step),
and starts again from `initial_s` once a session has stayed open for `stable_after_s`.

Each camera has its own supervisor task; nothing is shared between them, so one camera
failing never delays or stops another. Errors raised by the callbacks are not camera
failures: they close the source and propagate out of `run`. Cancelling `run` closes the
source and re-raises.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping

from agent.reconnect import reconnect_forever
from agent.sources.base import CameraSource, SourceConfigError, SourceUnavailable
from agent.system_events import SystemEvent, SystemEventKind
from shared.backoff import BackoffPolicy
from shared.clock import Clock
from shared.media import CodecConfig, MediaPacket

_log = logging.getLogger(__name__)


class CameraSupervisor:
    """Runs one `CameraSource` for one device until cancelled (see module doc)."""

    def __init__(
        self,
        source: CameraSource,
        *,
        device_id: str,
        on_packet: Callable[[MediaPacket], Awaitable[None]],
        on_event: Callable[[SystemEvent], None],
        clock: Clock,
        rng: random.Random,
        backoff: BackoffPolicy | None = None,
        on_open: Callable[[Mapping[str, CodecConfig]], Awaitable[None]] | None = None,
    ) -> None:
        self._source = source
        self._device_id = device_id
        self._on_packet = on_packet
        self._on_event = on_event
        self._on_open = on_open
        self._clock = clock
        self._rng = rng
        self._backoff = backoff or BackoffPolicy()
        self._lost = False
        self.connected = False
        self.last_error: str | None = None
        self.configs: Mapping[str, CodecConfig] | None = None

    async def run(self) -> None:
        """Supervise until cancelled; only callback errors end it otherwise."""
        await reconnect_forever(
            self._session,
            backoff=self._backoff,
            clock=self._clock,
            rng=self._rng,
            before_retry=lambda delay_s: _log.info(
                "%s: retrying %s in %.1f s", self._device_id, self._source.describe(), delay_s
            ),
        )

    async def _session(self) -> int | None:
        """Open, forward until the source fails; return when it opened (monotonic ns)."""
        opened_at_ns: int | None = None
        try:
            try:
                configs = await self._source.open()
            except Exception as exc:
                self._failed(exc)
                return None
            opened_at_ns = self._clock.monotonic_ns()
            self.configs = configs
            if self._on_open is not None:
                await self._on_open(configs)
            on_packet = self._on_packet
            while True:
                try:
                    packets = await self._source.read_batch()
                except Exception as exc:
                    self._failed(exc)
                    return opened_at_ns
                if not self.connected:
                    self._restored()
                for packet in packets:
                    await on_packet(packet)
        finally:
            self.connected = False
            # Shield the close so a cancellation arriving now still releases the camera.
            await asyncio.shield(self._source.close())

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, SourceUnavailable | SourceConfigError):
            detail = str(exc)
            _log.warning("%s: camera unavailable: %s", self._device_id, detail)
        else:
            # A bug in the source: its message may hold anything, so report only the type.
            detail = f"source error ({type(exc).__name__})"
            _log.error("%s: %s failed", self._device_id, self._source.describe(), exc_info=exc)
        self.last_error = detail
        if not self._lost:
            self._lost = True
            self._emit(SystemEventKind.CAMERA_LOST, detail)

    def _restored(self) -> None:
        self.connected = True
        if self._lost:
            self._lost = False
            self.last_error = None
            _log.info("%s: camera restored", self._device_id)
            self._emit(SystemEventKind.CAMERA_RESTORED, self._source.describe())

    def _emit(self, kind: SystemEventKind, detail: str) -> None:
        self._on_event(SystemEvent(kind, self._device_id, self._clock.now_ns(), detail))
