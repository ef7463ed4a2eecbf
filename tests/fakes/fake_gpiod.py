"""A stand-in for the `gpiod` module (libgpiod v2 Python bindings, PyPI gpiod 2.x) and a
simulated GPIO chip behind it, for machines without GPIO.

Names, signatures and values follow gpiod 2.5.0's sources (gpiod/__init__.py, chip.py,
line.py, line_settings.py, line_request.py, edge_event.py, exception.py, _internal.py,
ext/common.c): `request_lines(path, config, consumer=None, event_buffer_size=None,
output_values=None)`, `Chip(path)` with `request_lines`, `get_info`, `line_offset_from_id`,
`close`; `LineSettings` (a dataclass with the same fields and defaults); `LineRequest` with
`fd`, `fileno()`, `wait_edge_events(timeout=None)`, `read_edge_events(max_events=None)`,
`get_value(line)`, `get_values(lines=None)`, `set_value(line, value)`,
`set_values(values)`, `release()`, `offsets`, `num_lines`, `chip_name`, `lines`;
`EdgeEvent(event_type, timestamp_ns, line_offset, global_seqno, line_seqno)` with
`EdgeEvent.Type.RISING_EDGE`/`FALLING_EDGE`; the enums of `gpiod.line` with the C library's
values. `tests/gpio/test_fake_gpiod.py` compares these with the real module when it is
installed.

Behaviour mirrored from the kernel (gpiolib-cdev) and libgpiod:
- Opening a chip: a missing path raises FileNotFoundError; a path that is not a GPIO chip
  OSError(ENODEV); no permission PermissionError (EACCES); out-of-range offsets
  ValueError("line offset of out range"); a line held by another request (or by a kernel
  driver) OSError(EBUSY).
- Values are logical: `active_low` inverts between the pin's level and the value; an
  input's floating pin reads as its bias pulls it (pull-up high, pull-down low).
- Edge events are logical too (RISING_EDGE: became active), stamped on CLOCK_MONOTONIC,
  numbered per line and per request from 1, queued in a buffer of `event_buffer_size`
  (default 16 per line) that drops its oldest event when full. The request's `fd` is a real
  descriptor (a pipe) readable exactly while events are queued, so `loop.add_reader` works.
- Debounce: a change is reported once the pin has kept its new level for the debounce
  period, stamped when the period ended (the kernel stamps when its debounce timer runs).
  The kernel's timer is simulated by `settle()` (and by every `drive`/`disconnect`): events whose
  period has ended by the board's clock are emitted then, with the instant they were due.
- A removed chip (`FakeGpioBoard.remove_chip`) wakes its requests' descriptors, and reading,
  getting or setting then fails with OSError(ENODEV), as the kernel does.
- Where the real `read_edge_events` would block forever (nothing queued), the fake raises
  AssertionError, so a test fails instead of hanging.
"""

from __future__ import annotations

import errno
import os
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from select import select
from types import ModuleType, TracebackType
from typing import Any

API_VERSION = "2.3"
VERSION = "2.5.0"


def _os_error(code: int) -> OSError:
    # As PyErr_SetFromErrno(OSError): OSError picks the subclass (PermissionError...).
    return OSError(code, os.strerror(code))


# gpiod.line


class Value(Enum):
    INACTIVE = 0
    ACTIVE = 1

    def __bool__(self) -> bool:
        return self == self.ACTIVE


class Direction(Enum):
    AS_IS = 1
    INPUT = 2
    OUTPUT = 3


class Bias(Enum):
    AS_IS = 1
    UNKNOWN = 2
    DISABLED = 3
    PULL_UP = 4
    PULL_DOWN = 5


class Drive(Enum):
    PUSH_PULL = 1
    OPEN_DRAIN = 2
    OPEN_SOURCE = 3


class Edge(Enum):
    NONE = 1
    RISING = 2
    FALLING = 3
    BOTH = 4


class Clock(Enum):
    MONOTONIC = 1
    REALTIME = 2
    HTE = 3


# gpiod.exception


class ChipClosedError(Exception):
    def __init__(self) -> None:
        super().__init__("I/O operation on closed chip")


class RequestReleasedError(Exception):
    def __init__(self) -> None:
        super().__init__("GPIO lines have been released")


# gpiod.line_settings, gpiod.edge_event, gpiod.chip_info


@dataclass(repr=False)
class LineSettings:
    direction: Direction = Direction.AS_IS
    edge_detection: Edge = Edge.NONE
    bias: Bias = Bias.AS_IS
    drive: Drive = Drive.PUSH_PULL
    active_low: bool = False
    debounce_period: timedelta = timedelta()
    event_clock: Clock = Clock.MONOTONIC
    output_value: Value = Value.INACTIVE


@dataclass(frozen=True, init=False, repr=False)
class EdgeEvent:
    class Type(Enum):
        RISING_EDGE = 1
        FALLING_EDGE = 2

    event_type: Type
    timestamp_ns: int
    line_offset: int
    global_seqno: int
    line_seqno: int

    def __init__(
        self,
        event_type: int,
        timestamp_ns: int,
        line_offset: int,
        global_seqno: int,
        line_seqno: int,
    ):
        object.__setattr__(self, "event_type", EdgeEvent.Type(event_type))
        object.__setattr__(self, "timestamp_ns", timestamp_ns)
        object.__setattr__(self, "line_offset", line_offset)
        object.__setattr__(self, "global_seqno", global_seqno)
        object.__setattr__(self, "line_seqno", line_seqno)


@dataclass(frozen=True, repr=False)
class ChipInfo:
    name: str
    label: str
    num_lines: int


def _poll_fd(fd: int, timeout: timedelta | float | None = None) -> bool:
    """gpiod._internal.poll_fd."""
    sec = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    readable, _, _ = select([fd], [], [], sec)
    return fd in readable


def _config_iter(
    config: dict[Iterable[int | str] | int | str, LineSettings | None],
) -> Generator[tuple[int | str, LineSettings | None]]:
    """gpiod._internal.config_iter."""
    for key, settings in config.items():
        if isinstance(key, int | str):
            yield key, settings
        else:
            for subkey in key:
                yield subkey, settings


# The simulated hardware


@dataclass
class _SimLine:
    """One pin: what drives it from outside, its bias, and who holds it."""

    offset: int
    external: bool | None = None  # level driven from outside; None: floating
    bias: Bias = Bias.AS_IS
    held_by: str | None = None  # consumer of the request (or kernel driver) holding it
    request: LineRequest | None = None
    settings: LineSettings = field(default_factory=LineSettings)
    driven: bool = False  # an output's pin level
    last_level: bool = False  # a floating pin without bias keeps its last level
    # Edge detection state (inputs): the level last reported and a pending debounce.
    reported: bool = False
    pending_since_ns: int | None = None
    line_seqno: int = 0

    def level(self) -> bool:
        """The pin's electrical level now."""
        if self.settings.direction is Direction.OUTPUT and self.request is not None:
            return self.driven
        if self.external is not None:
            return self.external
        if self.bias is Bias.PULL_UP:
            return True
        if self.bias is Bias.PULL_DOWN:
            return False
        return self.last_level


class SimulatedChip:
    """One GPIO chip of the board: the test drives its pins (see module doc)."""

    def __init__(self, board: FakeGpioBoard, path: str, num_lines: int, label: str) -> None:
        self.board = board
        self.path = path
        self.name = os.path.basename(path)
        self.label = label
        self.lines = [_SimLine(offset) for offset in range(num_lines)]
        self.permission_denied = False  # opening raises PermissionError, as without group gpio
        self.present = True

    # What the test does to the pins

    def drive(self, offset: int, high: bool) -> None:
        """Drive pin `offset` high or low from outside (a contact to 3.3 V or to ground)."""
        self.settle()
        line = self.lines[offset]
        line.external = high
        self._changed(line)

    def disconnect(self, offset: int) -> None:
        """Stop driving pin `offset` (an open contact): its bias decides its level."""
        self.settle()
        line = self.lines[offset]
        line.external = None
        self._changed(line)

    def hold(self, offset: int, consumer: str) -> None:
        """Let another program or a kernel driver hold the line (requests get EBUSY)."""
        self.lines[offset].held_by = consumer

    def level(self, offset: int) -> bool:
        """The pin's electrical level (what a relay on an output sees)."""
        return self.lines[offset].level()

    def settle(self) -> None:
        """Run the debounce timers due by the board's clock (the kernel's timer firing)."""
        now_ns = self.board.monotonic_ns()
        for line in self.lines:
            if line.pending_since_ns is None or line.request is None:
                continue
            due_ns = line.pending_since_ns + _debounce_ns(line.settings)
            if due_ns <= now_ns:
                line.pending_since_ns = None
                self._report(line, line.level(), due_ns)

    # Kernel side

    def _changed(self, line: _SimLine) -> None:
        level = line.level()
        if level == line.last_level:
            return
        line.last_level = level
        if line.request is None or line.settings.direction is not Direction.INPUT:
            return
        now_ns = self.board.monotonic_ns()
        if _debounce_ns(line.settings) > 0:
            line.pending_since_ns = now_ns  # (re)start the debounce timer
        else:
            self._report(line, level, now_ns)

    def _report(self, line: _SimLine, level: bool, at_ns: int) -> None:
        if level == line.reported:
            return
        line.reported = level
        active = level != line.settings.active_low
        wanted = {
            Edge.BOTH: True,
            Edge.RISING: active,
            Edge.FALLING: not active,
            Edge.NONE: False,
        }[line.settings.edge_detection]
        request = line.request
        if not wanted or request is None:
            return
        line.line_seqno += 1
        kind = EdgeEvent.Type.RISING_EDGE if active else EdgeEvent.Type.FALLING_EDGE
        request._put(kind.value, at_ns, line.offset, line.line_seqno)


def _debounce_ns(settings: LineSettings) -> int:
    return round(settings.debounce_period.total_seconds() * 1e9)


class LineRequest:
    """gpiod.LineRequest on a simulated chip."""

    def __init__(
        self,
        chip: SimulatedChip,
        offsets: list[int],
        lines: list[int | str],
        buffer_size: int,
    ) -> None:
        self._chip: SimulatedChip | None = chip
        self._chip_name = chip.name
        self._offsets = offsets
        self._lines = lines
        self._events: deque[EdgeEvent] = deque(maxlen=buffer_size)
        self._global_seqno = 0
        self._read_fd, self._write_fd = os.pipe()
        self._signalled = False

    def __bool__(self) -> bool:
        return self._chip is not None

    def __enter__(self) -> LineRequest:
        self._check_released()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _check_released(self) -> None:
        if self._chip is None:
            raise RequestReleasedError()

    def _live_chip(self) -> SimulatedChip:
        self._check_released()
        assert self._chip is not None
        if not self._chip.present:
            raise _os_error(errno.ENODEV)
        return self._chip

    def release(self) -> None:
        if self._chip is None:
            return
        for offset in self._offsets:
            line = self._chip.lines[offset]
            if line.request is self:
                line.request = None
                line.pending_since_ns = None
        self._chip = None
        os.close(self._read_fd)
        os.close(self._write_fd)

    def get_value(self, line: int | str) -> Value:
        return self.get_values([line])[0]

    def get_values(self, lines: Iterable[int | str] | None = None) -> list[Value]:
        chip = self._live_chip()
        values = []
        for item in lines or self._lines:
            sim = chip.lines[self._to_offset(item)]
            level = sim.level()
            values.append(Value.ACTIVE if level != sim.settings.active_low else Value.INACTIVE)
        return values

    def set_value(self, line: int | str, value: Value) -> None:
        self.set_values({line: value})

    def set_values(self, values: dict[int | str, Value]) -> None:
        chip = self._live_chip()
        for item, value in values.items():
            sim = chip.lines[self._to_offset(item)]
            if sim.settings.direction is not Direction.OUTPUT:
                raise _os_error(errno.EPERM)  # the kernel refuses to set an input
            sim.driven = (value is Value.ACTIVE) != sim.settings.active_low

    def wait_edge_events(self, timeout: timedelta | float | None = None) -> bool:
        self._check_released()
        return _poll_fd(self.fd, timeout)

    def read_edge_events(self, max_events: int | None = None) -> list[EdgeEvent]:
        self._live_chip()
        if not self._events:
            raise AssertionError("read_edge_events would block: no edge event is queued")
        count = 64 if max_events is None else max_events
        events = [self._events.popleft() for _ in range(min(count, len(self._events)))]
        if not self._events:
            os.read(self._read_fd, 1)
            self._signalled = False
        return events

    def fileno(self) -> int:
        return self.fd

    @property
    def chip_name(self) -> str:
        self._check_released()
        return self._chip_name

    @property
    def num_lines(self) -> int:
        self._check_released()
        return len(self._offsets)

    @property
    def offsets(self) -> list[int]:
        self._check_released()
        return self._offsets

    @property
    def lines(self) -> list[int | str]:
        self._check_released()
        return self._lines

    @property
    def fd(self) -> int:
        self._check_released()
        return self._read_fd

    # Simulation side

    def _to_offset(self, line: int | str) -> int:
        if not isinstance(line, int) or line not in self._offsets:
            raise ValueError(f"unknown line: {line}")
        return line

    def _put(self, event_type: int, at_ns: int, offset: int, line_seqno: int) -> None:
        self._global_seqno += 1
        global_seqno = line_seqno if len(self._offsets) == 1 else self._global_seqno
        self._events.append(EdgeEvent(event_type, at_ns, offset, global_seqno, line_seqno))
        self._signal()

    def _signal(self) -> None:
        if not self._signalled:
            self._signalled = True
            os.write(self._write_fd, b"!")

    def _chip_removed(self) -> None:
        self._signal()  # the kernel wakes pollers with EPOLLHUP | EPOLLERR


class Chip:
    """gpiod.Chip on the board bound by `FakeGpioBoard.module` (see there)."""

    _board: FakeGpioBoard

    def __init__(self, path: str):
        self._chip: SimulatedChip | None = self._board._open(path)

    def __bool__(self) -> bool:
        return self._chip is not None

    def __enter__(self) -> Chip:
        self._check_closed()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check_closed(self) -> None:
        if not self._chip:
            raise ChipClosedError()

    def close(self) -> None:
        self._chip = None

    def get_info(self) -> ChipInfo:
        self._check_closed()
        assert self._chip is not None
        return ChipInfo(self._chip.name, self._chip.label, len(self._chip.lines))

    def line_offset_from_id(self, id: str | int) -> int:
        self._check_closed()
        if not isinstance(id, int):
            raise _os_error(errno.ENOENT)  # the simulated lines have no names
        if id >= self.get_info().num_lines:
            raise ValueError("line offset of out range")
        return id

    def request_lines(
        self,
        config: dict[Iterable[int | str] | int | str, LineSettings | None],
        consumer: str | None = None,
        event_buffer_size: int | None = None,
        output_values: dict[int | str, Value] | None = None,
    ) -> LineRequest:
        self._check_closed()
        chip = self._chip
        assert chip is not None
        if not chip.present:
            raise _os_error(errno.ENODEV)
        wanted: dict[int, LineSettings] = {}
        lines: list[int | str] = []
        for line, settings in _config_iter(config):
            offset = self.line_offset_from_id(line)
            if offset in wanted:
                raise ValueError(f"line must be configured exactly once - offset {offset} repeats")
            wanted[offset] = settings or LineSettings()
            lines.append(line)
        for offset in wanted:
            if chip.lines[offset].held_by is not None:
                raise _os_error(errno.EBUSY)
        offsets = list(wanted)
        request = LineRequest(chip, offsets, lines, event_buffer_size or 16 * len(offsets))
        for offset, settings in wanted.items():
            sim = chip.lines[offset]
            sim.held_by = consumer or "?"
            sim.request = request
            sim.settings = settings
            sim.line_seqno = 0
            if settings.bias is not Bias.AS_IS:
                sim.bias = settings.bias
            if settings.direction is Direction.OUTPUT:
                value = (output_values or {}).get(offset, settings.output_value)
                sim.driven = (value is Value.ACTIVE) != settings.active_low
            sim.last_level = sim.level()
            sim.reported = sim.last_level
            sim.pending_since_ns = None
        return request


class FakeGpioBoard:
    """A board with GPIO chips; `module` is the `gpiod` module the agent is given."""

    def __init__(self, *, monotonic_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self.monotonic_ns = monotonic_ns
        self.chips: dict[str, SimulatedChip] = {}
        self.requests: list[LineRequest] = []
        self.module = self._make_module()

    def add_chip(
        self, path: str = "/dev/gpiochip0", *, num_lines: int = 54, label: str = "pinctrl-bcm2711"
    ) -> SimulatedChip:
        """Plug a chip in (again): a removed chip's pins come back undriven."""
        chip = SimulatedChip(self, path, num_lines, label)
        self.chips[path] = chip
        return chip

    def remove_chip(self, path: str) -> None:
        """Unplug a chip (an I/O expander on a loose cable)."""
        chip = self.chips.pop(path)
        chip.present = False
        for line in chip.lines:
            if line.request is not None:
                line.request._chip_removed()

    def settle(self) -> None:
        for chip in self.chips.values():
            chip.settle()

    def close(self) -> None:
        """Release what the agent left requested (closes the descriptors)."""
        for request in self.requests:
            request.release()

    def _open(self, path: str) -> SimulatedChip:
        chip = self.chips.get(path)
        if chip is None:
            # libgpiod: lstat fails (ENOENT), or the device is not a GPIO chip (ENODEV).
            raise _os_error(errno.ENODEV if os.path.exists(path) else errno.ENOENT)
        if chip.permission_denied:
            raise _os_error(errno.EACCES)
        return chip

    def _make_module(self) -> ModuleType:
        board = self
        chip_class = type("Chip", (Chip,), {"_board": board, "__module__": "gpiod.chip"})

        def request_lines(
            path: str,
            config: dict[Iterable[int | str] | int | str, LineSettings | None],
            consumer: str | None = None,
            event_buffer_size: int | None = None,
            output_values: dict[int | str, Value] | None = None,
        ) -> LineRequest:
            with chip_class(path) as chip:
                request = chip.request_lines(
                    config=config,
                    consumer=consumer,
                    event_buffer_size=event_buffer_size,
                    output_values=output_values,
                )
            board.requests.append(request)
            return request

        def is_gpiochip_device(path: str) -> bool:
            return path in board.chips

        line = ModuleType("gpiod.line")
        for enum in (Value, Direction, Bias, Drive, Edge, Clock):
            setattr(line, enum.__name__, enum)
        module = ModuleType("gpiod")
        module.__dict__.update(
            {
                "line": line,
                "Chip": chip_class,
                "ChipInfo": ChipInfo,
                "EdgeEvent": EdgeEvent,
                "ChipClosedError": ChipClosedError,
                "RequestReleasedError": RequestReleasedError,
                "LineRequest": LineRequest,
                "LineSettings": LineSettings,
                "__version__": VERSION,
                "api_version": API_VERSION,
                "is_gpiochip_device": is_gpiochip_device,
                "request_lines": request_lines,
            }
        )
        return module

    def loader(self) -> Any:
        """A `GpiodLoader` giving this board's module."""
        return lambda: self.module
