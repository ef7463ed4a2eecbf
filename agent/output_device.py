"""Digital outputs (a relay, a siren): switched by the site, recorded like inputs.

`set(active, by=...)` drives the output's GPIO line (source "gpio"; a synthetic output has
no hardware), then publishes `output_active` / `output_inactive` (the detail says who set
it) and records the state in the output's `state` stream with the inputs' record format
(`agent.input_device.state_record`). The state the output starts in (`initial`) is
recorded when the agent starts, or for a GPIO output when its line is first held; after
the line was lost, it is requested again driving the last state set.
"""

from __future__ import annotations

import asyncio
import logging
import random

from agent.config import OutputConfig
from agent.event_hub import EventHub
from agent.gpio_lines import GpiodLoader, GpioLineFailure, GpioOutputLine, load_gpiod
from agent.input_device import STATE_CODEC, STATE_STREAM, state_record
from agent.stream_recorder import StreamRecorder
from agent.system_events import SystemEvent, SystemEventKind
from shared.backoff import BackoffPolicy
from shared.clock import Clock
from shared.media import MediaPacket

_log = logging.getLogger(__name__)


class OutputUnavailable(Exception):
    """The output's line cannot be driven now; the message names the chip and line."""


class OutputDevice:
    """One output; see the module docstring."""

    def __init__(
        self,
        config: OutputConfig,
        recorder: StreamRecorder,
        events: EventHub,
        *,
        clock: Clock,
        rng: random.Random,
        gpiod_loader: GpiodLoader = load_gpiod,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self.config = config
        self.recorder = recorder
        self._events = events
        self._clock = clock
        self.active = False
        self._wanted = config.initial  # what the line is (to be) driven to
        self._recorded = False
        self._last_at_ns = 0
        self._lock = asyncio.Lock()
        self.line: GpioOutputLine | None = None
        if config.gpio is not None:
            self.line = GpioOutputLine(
                config.gpio,
                device_id=config.id,
                state=lambda: self._wanted,
                on_opened=self._line_opened,
                events=events,
                clock=clock,
                rng=rng,
                loader=gpiod_loader,
                backoff=backoff,
            )

    async def run(self) -> None:
        """A GPIO output: hold its line until cancelled. A synthetic one: record `initial`."""
        await self.recorder.set_codec(STATE_CODEC)
        if self.line is None:
            async with self._lock:
                await self._record(self._wanted, by="initial", initial=True)
            return
        await self.line.run()

    async def set(self, active: bool, *, by: str) -> None:
        """Drive the output to `active` and record it; `by` says who (a user, a rule).

        Raises `OutputUnavailable` when the GPIO line is not held (the state is then
        unchanged). Setting the state it already has records nothing.
        """
        async with self._lock:
            if self.line is not None:
                try:
                    self.line.drive(active)
                except GpioLineFailure as exc:
                    raise OutputUnavailable(str(exc)) from exc
            self._wanted = active
            await self.recorder.set_codec(STATE_CODEC)
            await self._record(active, by=by, initial=False)

    async def _line_opened(self, driven: bool) -> None:
        async with self._lock:
            await self._record(driven, by="initial", initial=True)

    async def _record(self, active: bool, *, by: str, initial: bool) -> None:
        """Record `active` if it is a change, or always when `initial` (as inputs do)."""
        changed = active != self.active
        if not changed and not initial and self._recorded:
            return
        at_ns = max(self._clock.now_ns(), self._last_at_ns)
        self._last_at_ns = at_ns
        self._recorded = True
        self.active = active
        if changed:
            kind = SystemEventKind.OUTPUT_ACTIVE if active else SystemEventKind.OUTPUT_INACTIVE
            self._events.publish(SystemEvent(kind, self.config.id, at_ns, f"set by {by}"))
            _log.info("%s: %s, set by %s", self.config.id, "on" if active else "off", by)
        await self.recorder.push(
            MediaPacket(STATE_STREAM, at_ns, at_ns, 0, True, state_record(at_ns, active), at_ns)
        )
