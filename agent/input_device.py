"""Digital inputs (door contacts, buttons): their state changes as events and as a stream.

Each change is published as an `input_active` / `input_inactive` event, recorded as a
record in the input's `state` stream (chunked on time like any records stream), and handed
to listeners (cameras recording in event mode). The synthetic input toggles on a period, so
demos and tests see events without hardware; GPIO inputs are fed by agent.gpio_lines.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import msgpack

from agent.config import InputConfig
from agent.event_hub import EventHub
from agent.stream_recorder import StreamRecorder
from agent.system_events import SystemEvent, SystemEventKind
from shared.clock import NS_PER_S, Clock
from shared.media import RECORDS_CODEC, CodecConfig, MediaKind, MediaPacket

STATE_STREAM = "state"
STATE_CODEC = CodecConfig(MediaKind.EVENTS, RECORDS_CODEC, 1, NS_PER_S)
"""An events stream: pts in nanoseconds, each packet one msgpack state record."""
STATE_RECORD_TAG = "input_state"
STATE_RECORD_VERSION = 1

InputListener = Callable[[bool, int, str], Awaitable[None]]
"""(active, at_ns, input_id)."""


def state_record(at_ns: int, active: bool) -> bytes:
    """The bytes of one state change."""
    encoded: bytes = msgpack.packb(
        [STATE_RECORD_TAG, STATE_RECORD_VERSION, at_ns, active], use_bin_type=True
    )
    return encoded


class InputDevice:
    """One input; `set_state` is what an input driver (synthetic, agent.gpio_lines) calls."""

    def __init__(
        self,
        config: InputConfig,
        recorder: StreamRecorder,
        events: EventHub,
        *,
        clock: Clock,
        listeners: Sequence[InputListener],
    ) -> None:
        self.config = config
        self.recorder = recorder
        self._events = events
        self._clock = clock
        self._listeners = listeners
        self.active = False
        self._last_at_ns = 0

    async def start(self) -> None:
        await self.recorder.set_codec(STATE_CODEC)

    async def set_state(
        self, active: bool, *, at_ns: int | None = None, initial: bool = False
    ) -> None:
        """Record a change of state that happened at `at_ns` (default: now).

        A repeated state is not a change, except for an `initial` reading (the state found
        when the line is opened), which is always recorded. Instants never go backwards: an
        earlier `at_ns` than the last recorded one is recorded at the last one.
        """
        if active == self.active and not initial:
            return
        at_ns = max(self._clock.now_ns() if at_ns is None else at_ns, self._last_at_ns)
        self._last_at_ns = at_ns
        changed = active != self.active
        self.active = active
        packet = MediaPacket(
            STATE_STREAM, at_ns, at_ns, 0, True, state_record(at_ns, active), at_ns
        )
        if not changed:
            await self.recorder.push(packet)
            return
        kind = SystemEventKind.INPUT_ACTIVE if active else SystemEventKind.INPUT_INACTIVE
        self._events.publish(SystemEvent(kind, self.config.id, at_ns))
        await self.recorder.push(packet)
        for listener in self._listeners:
            await listener(active, at_ns, self.config.id)

    async def run_synthetic(self) -> None:
        """Toggle: active for a quarter of each period (a door opened now and then)."""
        await self.start()
        active_s = max(1.0, self.config.period_s / 4)
        while True:
            await self._clock.sleep(self.config.period_s - active_s)
            await self.set_state(True)
            await self._clock.sleep(active_s)
            await self.set_state(False)
