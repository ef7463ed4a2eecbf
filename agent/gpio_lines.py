"""GPIO lines (door contacts, ignition, relays) through libgpiod's v2 Python bindings.

Theory of operation. Each configured line is held by one *runner* that loops over
sessions, like a camera's supervisor: a session requests the line from the kernel
(`gpiod.request_lines`), reports what it found, then serves the line until the line fails;
then the request is released and the next session starts after a backoff delay
(`BackoffPolicy`, reset after a session that stayed up `stable_after_s`). A line that cannot
be requested (no such chip, line busy, permission denied, library missing) or that fails
while held (the chip was removed) emits `input_lost` / `output_lost` once per episode, with
a detail naming the chip, the line and the likely fix; the next successful request emits
`input_restored` / `output_restored`. Nothing here ends the agent.

Inputs. The line is requested with edge detection on both edges and the kernel's debounce;
its current value is read and recorded as the initial state (a door already open at boot is
state). The request's file descriptor is watched with `loop.add_reader` (no thread, no
polling); when it is readable the queued edge events are read and handed to the
`InputDevice` in order. Each event carries the kernel's CLOCK_MONOTONIC timestamp (with
debounce: when the line had been stable for the debounce period); it is placed on the wall
clock with the offset between the injected clock's `now_ns()` and `monotonic_ns()` taken
when the batch is read, so a busy event loop does not move the recorded instant. A gap in
the events' per-line sequence numbers means the kernel's event buffer overflowed; it keeps
the newest events, so the state stays right and only the dropped changes are missing (logged
and counted in `overflows`).

Outputs. The line is requested as an output driving the output's state (its configured
`initial` state at first, the last state set after a reconnection); `drive` sets it.
The output's descriptor is watched too: the kernel wakes it when the chip goes away.

gpiod is imported only when a session starts (through the injected loader), so a site
without GPIO never imports it.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import ModuleType
from typing import Any

from agent.config import GpioLine
from agent.event_hub import EventHub
from agent.input_device import InputDevice
from agent.reconnect import reconnect_forever
from agent.system_events import SystemEvent, SystemEventKind
from shared.backoff import BackoffPolicy
from shared.clock import Clock

_log = logging.getLogger(__name__)

GpiodLoader = Callable[[], ModuleType]
"""Returns the `gpiod` module (libgpiod v2 bindings); raises `GpioLibraryMissing`."""

_BIAS_NAMES = {
    "as_is": "AS_IS",
    "pull_up": "PULL_UP",
    "pull_down": "PULL_DOWN",
    "disabled": "DISABLED",
}


class GpioLibraryMissing(Exception):
    """The libgpiod v2 Python bindings cannot be imported; the message says what to install."""


class GpioLineFailure(Exception):
    """A line could not be requested or failed while held; the message names chip and line."""


def load_gpiod() -> ModuleType:
    """Import `gpiod` (PyPI's libgpiod v2 bindings) or explain what to install."""
    try:
        gpiod = importlib.import_module("gpiod")
    except ImportError:
        raise GpioLibraryMissing(
            "the gpiod library (libgpiod v2 Python bindings) is not installed: "
            "pip install 'siteline[gpio]'"
        ) from None
    if not hasattr(gpiod, "request_lines"):
        # Debian 12's python3-libgpiod (1.6) is also imported as `gpiod`, with the v1 API.
        raise GpioLibraryMissing(
            f"the gpiod module found ({getattr(gpiod, '__file__', '?')}) is the libgpiod v1 "
            "API (Debian's python3-libgpiod 1.x); install gpiod>=2 with pip: "
            "pip install 'siteline[gpio]'"
        )
    return gpiod


def describe_failure(exc: BaseException, gpio: GpioLine) -> str:
    """What went wrong with `gpio`, with the likely fix, for the lost event and the log."""
    if isinstance(exc, GpioLineFailure):
        return str(exc)
    where = f"{gpio.chip} line {gpio.line}"
    if isinstance(exc, GpioLibraryMissing):
        return f"{where}: {exc}"
    if isinstance(exc, FileNotFoundError):
        return (
            f"{where}: no such GPIO chip; check `chip` (gpiodetect lists the chips; on a "
            "Raspberry Pi 5 the 40-pin header is the chip labelled pinctrl-rp1)"
        )
    if isinstance(exc, PermissionError):
        return (
            f"{where}: permission denied opening {gpio.chip}; add the agent's user to the "
            "group that owns it (on Raspberry Pi OS: sudo usermod -aG gpio USER), then "
            "restart the agent"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EBUSY:
        return (
            f"{where}: the line is busy, held by another program or a kernel driver "
            "(gpioinfo shows its consumer)"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENODEV, errno.ENOTTY, errno.ENXIO):
        return f"{where}: {gpio.chip} is not a GPIO chip, or it was removed; check `chip`"
    if isinstance(exc, ValueError):
        # The library's own range check ("line offset of out range") or the kernel's EINVAL.
        return (
            f"{where}: refused ({exc}); check `line` against the chip's lines (gpioinfo lists them)"
        )
    if isinstance(exc, OSError):
        return f"{where}: {exc.strerror or type(exc).__name__}"
    return f"{where}: GPIO error ({type(exc).__name__})"


class _LineRunner(ABC):
    """Requests one line, serves it until it fails, requests it again (see module doc)."""

    def __init__(
        self,
        gpio: GpioLine,
        *,
        device_id: str,
        lost: SystemEventKind,
        restored: SystemEventKind,
        events: EventHub,
        clock: Clock,
        rng: random.Random,
        loader: GpiodLoader,
        backoff: BackoffPolicy | None,
    ) -> None:
        self.gpio = gpio
        self.device_id = device_id
        self._lost_kind = lost
        self._restored_kind = restored
        self._events = events
        self._clock = clock
        self._rng = rng
        self._loader = loader
        self._backoff = backoff or BackoffPolicy()
        self._lost = False
        self._wake = asyncio.Event()
        self._broken: GpioLineFailure | None = None
        self._gpiod: ModuleType | None = None
        self._request: Any = None
        self.last_error: str | None = None

    @property
    def held(self) -> bool:
        """Whether the line is requested and working now."""
        return self._request is not None and self._broken is None

    async def run(self) -> None:
        """Hold the line until cancelled; only errors of the callbacks end it otherwise."""
        await reconnect_forever(
            self._session,
            backoff=self._backoff,
            clock=self._clock,
            rng=self._rng,
            before_retry=lambda delay_s: _log.info(
                "%s: requesting %s again in %.1f s", self.device_id, self._where(), delay_s
            ),
        )

    def _where(self) -> str:
        return f"{self.gpio.chip} line {self.gpio.line}"

    @abstractmethod
    def _settings(self, gpiod: ModuleType) -> Any:
        """The `gpiod.LineSettings` to request the line with."""

    @abstractmethod
    async def _opened(self, gpiod: ModuleType, request: Any) -> None:
        """The line is requested; report what is on it."""

    @abstractmethod
    async def _readable(self, gpiod: ModuleType, request: Any) -> None:
        """The request's descriptor is readable: edge events, or the chip went away."""

    def hw(self, call: Callable[..., Any], *args: Any) -> Any:
        """Call the library; any failure of it becomes a `GpioLineFailure` naming the line."""
        try:
            return call(*args)
        except Exception as exc:
            raise GpioLineFailure(describe_failure(exc, self.gpio)) from exc

    def broke(self, failure: GpioLineFailure) -> None:
        """A call on the held line failed outside the session's task: end the session."""
        self._broken = failure
        self._wake.set()

    async def _session(self) -> int | None:
        """Request, serve until the line fails; return when it was requested (monotonic)."""
        try:
            gpiod = self._loader()
            request = gpiod.request_lines(
                self.gpio.chip,
                config={self.gpio.line: self._settings(gpiod)},
                consumer=f"siteline:{self.device_id}",
            )
        except Exception as exc:
            self._failed(exc)
            return None
        opened_at_ns = self._clock.monotonic_ns()
        loop = asyncio.get_running_loop()
        self._broken = None
        self._wake.clear()
        fd: int | None = None
        try:
            fd = self.hw(lambda: request.fd)
            loop.add_reader(fd, self._wake.set)
            self._gpiod, self._request = gpiod, request
            self._restored()
            await self._opened(gpiod, request)
            while True:
                await self._wake.wait()
                # Cleared before the read in the same step: a wake-up that comes later
                # means new data, so the read below never blocks.
                self._wake.clear()
                if self._broken is not None:
                    raise self._broken
                await self._readable(gpiod, request)
        except GpioLineFailure as exc:
            self._failed(exc)
            return opened_at_ns
        finally:
            self._request = None
            if fd is not None:
                loop.remove_reader(fd)
            try:
                request.release()
            except Exception as exc:  # the chip may be gone already
                _log.debug("%s: release: %s", self.device_id, exc)

    def _failed(self, exc: Exception) -> None:
        detail = describe_failure(exc, self.gpio)
        # Warn once per cause, not at every retry.
        level = logging.DEBUG if detail == self.last_error else logging.WARNING
        _log.log(level, "%s: %s", self.device_id, detail)
        self.last_error = detail
        if not self._lost:
            self._lost = True
            self._emit(self._lost_kind, detail)

    def _restored(self) -> None:
        if self._lost:
            self._lost = False
            self.last_error = None
            _log.info("%s: %s restored", self.device_id, self._where())
            self._emit(self._restored_kind, self._where())

    def _emit(self, kind: SystemEventKind, detail: str) -> None:
        self._events.publish(SystemEvent(kind, self.device_id, self._clock.now_ns(), detail))


class GpioInput(_LineRunner):
    """Feeds an `InputDevice` from its GPIO line (see module doc)."""

    def __init__(
        self,
        device: InputDevice,
        *,
        events: EventHub,
        clock: Clock,
        rng: random.Random,
        loader: GpiodLoader = load_gpiod,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        if device.config.gpio is None:
            raise ValueError(f"input {device.config.id} has no GPIO line")
        super().__init__(
            device.config.gpio,
            device_id=device.config.id,
            lost=SystemEventKind.INPUT_LOST,
            restored=SystemEventKind.INPUT_RESTORED,
            events=events,
            clock=clock,
            rng=rng,
            loader=loader,
            backoff=backoff,
        )
        self.device = device
        self._last_seqno = 0
        self.overflows = 0

    async def run(self) -> None:
        await self.device.start()
        await super().run()

    def _settings(self, gpiod: ModuleType) -> Any:
        line = gpiod.line
        return gpiod.LineSettings(
            direction=line.Direction.INPUT,
            edge_detection=line.Edge.BOTH,
            bias=getattr(line.Bias, _BIAS_NAMES[self.gpio.bias]),
            active_low=self.gpio.active_low,
            debounce_period=timedelta(milliseconds=self.gpio.debounce_ms),
        )

    async def _opened(self, gpiod: ModuleType, request: Any) -> None:
        self._last_seqno = 0  # each request numbers its events from 1
        value = self.hw(request.get_value, self.gpio.line)
        active = value == gpiod.line.Value.ACTIVE
        await self.device.set_state(active, at_ns=self._clock.now_ns(), initial=True)

    async def _readable(self, gpiod: ModuleType, request: Any) -> None:
        if not self.hw(request.wait_edge_events, 0):
            return
        events = self.hw(request.read_edge_events)
        # The kernel stamps events on CLOCK_MONOTONIC; both clocks are read together.
        now_ns = self._clock.now_ns()
        wall_offset_ns = now_ns - self._clock.monotonic_ns()
        rising = gpiod.EdgeEvent.Type.RISING_EDGE
        missed = False
        for event in events:
            if event.line_offset != self.gpio.line:
                continue
            missed |= event.line_seqno != self._last_seqno + 1
            self._last_seqno = event.line_seqno
            at_ns = min(event.timestamp_ns + wall_offset_ns, now_ns)
            await self.device.set_state(event.event_type == rising, at_ns=at_ns)
        if missed:
            # The kernel drops the oldest events of a full buffer: the newest are kept, so
            # the state recorded last is still the line's state; only changes were lost.
            self.overflows += 1
            _log.warning(
                "%s: %s: edge events were lost (the kernel's event buffer overflowed)",
                self.device_id,
                self._where(),
            )


class GpioOutputLine(_LineRunner):
    """Holds an output's GPIO line and drives it; `state` gives the value to drive at a
    (re)request, `on_opened` is told when the line is held and driven to it."""

    def __init__(
        self,
        gpio: GpioLine,
        *,
        device_id: str,
        state: Callable[[], bool],
        on_opened: Callable[[bool], Awaitable[None]],
        events: EventHub,
        clock: Clock,
        rng: random.Random,
        loader: GpiodLoader = load_gpiod,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        super().__init__(
            gpio,
            device_id=device_id,
            lost=SystemEventKind.OUTPUT_LOST,
            restored=SystemEventKind.OUTPUT_RESTORED,
            events=events,
            clock=clock,
            rng=rng,
            loader=loader,
            backoff=backoff,
        )
        self._state = state
        self._on_opened = on_opened

    def _value(self, gpiod: ModuleType, active: bool) -> Any:
        return gpiod.line.Value.ACTIVE if active else gpiod.line.Value.INACTIVE

    def _settings(self, gpiod: ModuleType) -> Any:
        return gpiod.LineSettings(
            direction=gpiod.line.Direction.OUTPUT,
            active_low=self.gpio.active_low,
            output_value=self._value(gpiod, self._state()),
        )

    async def _opened(self, gpiod: ModuleType, request: Any) -> None:
        await self._on_opened(self._state())

    async def _readable(self, gpiod: ModuleType, request: Any) -> None:
        # An output has no edge detection: its descriptor wakes when the chip goes away,
        # and reading then fails (ENODEV), which ends the session.
        if self.hw(request.wait_edge_events, 0):
            self.hw(request.read_edge_events)

    def drive(self, active: bool) -> None:
        """Set the line; `GpioLineFailure` when it is not held or the chip refuses."""
        request, gpiod = self._request, self._gpiod
        if request is None or gpiod is None or self._broken is not None:
            raise GpioLineFailure(
                f"{self._where()}: the line is not available ({self.last_error or 'not open'})"
            )
        try:
            self.hw(request.set_value, self.gpio.line, self._value(gpiod, active))
        except GpioLineFailure as failure:
            self.broke(failure)
            raise
