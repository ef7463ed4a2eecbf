"""GPIO inputs on a simulated chip: initial state, every change in order at the kernel's
instants, debounce, lost and restored lines, and the library loaded only when used."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

from agent.gpio_lines import GpioLibraryMissing, load_gpiod
from agent.system_events import SystemEventKind
from shared.clock import NS_PER_S
from tests.gpio.bench import START_WALL_NS, gpio_bench

MS = 1_000_000

DOOR = """
[[inputs]]
id = "door"
source = "gpio"
chip = "gpiochip0"
line = 17
active_low = true   # a contact to ground
bias = "pull_up"
debounce_ms = 20
"""


async def test_records_the_initial_state_and_each_change_at_the_kernel_instant(
    tmp_path: Path,
) -> None:
    async with gpio_bench(tmp_path, DOOR) as bench:
        chip = bench.board.add_chip("/dev/gpiochip0")
        chip.drive(17, False)  # the contact is closed at boot: active (active-low)
        door = bench.input("door")
        bench.start(door)
        await bench.until(lambda: len(bench.events()) == 1)
        assert bench.events()[0].kind is SystemEventKind.INPUT_ACTIVE
        assert door.device.active

        # The contact opens and bounces; the pull-up takes the pin high.
        bench.clock.advance(2.0)
        chip.disconnect(17)
        bench.clock.advance(0.004)
        chip.drive(17, False)  # bounce
        bench.clock.advance(0.003)
        chip.disconnect(17)  # stable from here: 2.007 s
        bench.clock.advance(0.050)
        chip.settle()  # the kernel's debounce timer: one event, stamped at 2.027 s
        bench.clock.advance(1.0)  # the loop is busy for a second before it reads
        await bench.until(lambda: not door.device.active)

        bench.clock.advance(3.0)  # 6.057 s: closed again, no bounce
        chip.drive(17, False)
        bench.clock.advance(0.020)
        chip.settle()
        await bench.until(lambda: door.device.active)

        assert await bench.records("door") == [
            (START_WALL_NS, True),
            (START_WALL_NS + 2_027 * MS, False),
            (START_WALL_NS + 6_077 * MS, True),
        ]
        events = bench.events()
        assert [(e.kind, e.at_ns) for e in events] == [
            (SystemEventKind.INPUT_ACTIVE, START_WALL_NS),
            (SystemEventKind.INPUT_INACTIVE, START_WALL_NS + 2_027 * MS),
            (SystemEventKind.INPUT_ACTIVE, START_WALL_NS + 6_077 * MS),
        ]
        assert {e.device_id for e in events} == {"door"}


async def test_a_wall_clock_step_moves_later_events_with_it(tmp_path: Path) -> None:
    async with gpio_bench(tmp_path, DOOR.replace("debounce_ms = 20", "debounce_ms = 0")) as bench:
        chip = bench.board.add_chip("/dev/gpiochip0")
        door = bench.input("door")
        bench.start(door)
        await bench.until(lambda: door.held)
        bench.clock.advance(1.0)
        chip.drive(17, False)  # kernel time 1 s
        stepped_ns = START_WALL_NS + 3600 * NS_PER_S
        bench.clock.set_wall_ns(stepped_ns)  # NTP corrects the clock by an hour
        await bench.until(lambda: door.device.active)
        assert await bench.records("door") == [(START_WALL_NS, False), (stepped_ns, True)]


async def test_an_inactive_line_at_start_is_recorded_without_an_event(tmp_path: Path) -> None:
    async with gpio_bench(tmp_path, DOOR) as bench:
        bench.board.add_chip("/dev/gpiochip0")  # floating, pulled up: inactive
        door = bench.input("door")
        bench.start(door)
        await bench.until(lambda: door.held)
        assert await bench.records("door") == [(START_WALL_NS, False)]
        assert bench.events() == []


async def test_a_missing_chip_is_lost_then_restored_and_recording_resumes(
    tmp_path: Path,
) -> None:
    async with gpio_bench(tmp_path, DOOR) as bench:
        door = bench.input("door")
        bench.start(door)
        await bench.until(lambda: len(bench.events()) == 1)
        lost = bench.events()[0]
        assert lost.kind is SystemEventKind.INPUT_LOST
        assert lost.device_id == "door"
        assert lost.detail.startswith("/dev/gpiochip0 line 17: no such GPIO chip; check `chip`")
        # Retries back off (1 s, 2 s, 4 s...: the manual clock moves on each one).
        await bench.until(lambda: bench.clock.monotonic_ns() > 20 * NS_PER_S)
        assert len(bench.events()) == 1  # one event per episode, not one per retry

        chip = bench.board.add_chip("/dev/gpiochip0")
        chip.drive(17, False)
        await bench.until(lambda: door.device.active)
        assert [e.kind for e in bench.events()] == [
            SystemEventKind.INPUT_LOST,
            SystemEventKind.INPUT_RESTORED,
            SystemEventKind.INPUT_ACTIVE,
        ]
        restored_at = bench.clock.now_ns()
        bench.clock.advance(1.0)
        chip.disconnect(17)
        bench.clock.advance(0.020)
        chip.settle()
        await bench.until(lambda: not door.device.active)
        assert await bench.records("door") == [
            (restored_at, True),
            (restored_at + 1_020 * MS, False),
        ]


async def test_a_chip_removed_while_held_is_lost_and_its_state_read_again(
    tmp_path: Path,
) -> None:
    async with gpio_bench(tmp_path, DOOR.replace("debounce_ms = 20", "debounce_ms = 0")) as bench:
        chip = bench.board.add_chip("/dev/gpiochip0")
        door = bench.input("door")
        bench.start(door)
        await bench.until(lambda: door.held)
        bench.board.remove_chip("/dev/gpiochip0")
        await bench.until(lambda: not door.held)
        assert [e.kind for e in bench.events()] == [SystemEventKind.INPUT_LOST]
        assert "is not a GPIO chip, or it was removed" in bench.events()[0].detail

        chip = bench.board.add_chip("/dev/gpiochip0")
        chip.drive(17, False)  # the door was closed while the chip was away
        await bench.until(lambda: door.device.active)
        assert [e.kind for e in bench.events()][1:] == [
            SystemEventKind.INPUT_RESTORED,
            SystemEventKind.INPUT_ACTIVE,
        ]
        records = await bench.records("door")
        assert [active for _, active in records] == [False, True]


@pytest.mark.parametrize(
    ("trouble", "detail"),
    [
        (
            "permission",
            "/dev/gpiochip0 line 17: permission denied opening /dev/gpiochip0; add the "
            "agent's user to the group that owns it (on Raspberry Pi OS: sudo usermod -aG "
            "gpio USER), then restart the agent",
        ),
        (
            "busy",
            "/dev/gpiochip0 line 17: the line is busy, held by another program or a kernel "
            "driver (gpioinfo shows its consumer)",
        ),
        (
            "small chip",
            "/dev/gpiochip0 line 17: refused (line offset of out range); check `line` "
            "against the chip's lines (gpioinfo lists them)",
        ),
    ],
)
async def test_a_line_that_cannot_be_requested_is_lost_with_the_fix(
    tmp_path: Path, trouble: str, detail: str
) -> None:
    async with gpio_bench(tmp_path, DOOR) as bench:
        chip = bench.board.add_chip(
            "/dev/gpiochip0", num_lines=8 if trouble == "small chip" else 54
        )
        chip.permission_denied = trouble == "permission"
        if trouble == "busy":
            chip.hold(17, "w1-gpio")
        door = bench.input("door")
        bench.start(door)
        await bench.until(lambda: len(bench.events()) == 1)
        assert bench.events()[0].kind is SystemEventKind.INPUT_LOST
        assert bench.events()[0].detail == detail
        assert door.last_error == detail


async def test_an_overflowing_event_buffer_keeps_the_newest_changes(tmp_path: Path) -> None:
    async with gpio_bench(tmp_path, DOOR.replace("debounce_ms = 20", "debounce_ms = 0")) as bench:
        chip = bench.board.add_chip("/dev/gpiochip0")
        door = bench.input("door")
        bench.start(door)
        await bench.until(lambda: door.held)
        # 21 changes before the agent reads: the kernel keeps the last 16 (per line).
        for change in range(21):
            bench.clock.advance(0.001)
            if change % 2 == 0:
                chip.drive(17, False)
            else:
                chip.disconnect(17)
        await bench.until(lambda: door.overflows == 1)
        # Kept: changes 5..20 (the 6th to the 21st); the 6th repeats the initial state.
        assert await bench.records("door") == [(START_WALL_NS, False)] + [
            (START_WALL_NS + (change + 1) * MS, change % 2 == 0) for change in range(6, 21)
        ]
        assert door.device.active  # the 21st change closed the contact


async def test_without_the_library_the_input_is_lost_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # `import gpiod` fails as if absent
    async with gpio_bench(tmp_path, DOOR, gpiod_loader=load_gpiod) as bench:
        door = bench.input("door")
        bench.start(door)
        await bench.until(lambda: len(bench.events()) == 1)
        assert bench.events()[0].detail == (
            "/dev/gpiochip0 line 17: the gpiod library (libgpiod v2 Python bindings) is not "
            "installed: pip install 'siteline[gpio]'"
        )


def test_debian_v1_bindings_are_refused_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    v1 = ModuleType("gpiod")  # python3-libgpiod 1.6: Chip, Line, LINE_REQ_*, no request_lines
    v1.__dict__.update(Chip=object, LINE_REQ_EV_BOTH_EDGES=6, __file__="/usr/lib/gpiod.so")
    monkeypatch.setitem(sys.modules, "gpiod", v1)
    with pytest.raises(GpioLibraryMissing, match=r"libgpiod v1 API .* install gpiod>=2 with pip"):
        load_gpiod()
