"""Outputs: a GPIO output drives its line and records each change; a synthetic one records."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.output_device import OutputUnavailable
from agent.system_events import SystemEventKind
from tests.gpio.bench import START_WALL_NS, gpio_bench

SIREN = """
[[outputs]]
id = "siren"
source = "gpio"
chip = "/dev/gpiochip0"
line = 22
active_low = true   # the relay board switches on a low pin
"""


async def test_set_drives_the_line_records_and_publishes(tmp_path: Path) -> None:
    async with gpio_bench(tmp_path, SIREN) as bench:
        chip = bench.board.add_chip("/dev/gpiochip0")
        siren = bench.output("siren")
        bench.start(siren)
        await bench.until(lambda: siren.line is not None and siren.line.held)
        assert chip.level(22) is True  # initial = false: inactive, so high (active-low)

        bench.clock.advance(5.0)
        await siren.set(True, by="admin")
        assert chip.level(22) is False
        bench.clock.advance(1.0)
        await siren.set(True, by="admin")  # no change: nothing recorded
        bench.clock.advance(1.0)
        await siren.set(False, by="rule:door-open")
        assert chip.level(22) is True

        assert await bench.records("siren") == [
            (START_WALL_NS, False),
            (START_WALL_NS + 5_000_000_000, True),
            (START_WALL_NS + 7_000_000_000, False),
        ]
        assert [(e.kind, e.device_id, e.detail) for e in bench.events()] == [
            (SystemEventKind.OUTPUT_ACTIVE, "siren", "set by admin"),
            (SystemEventKind.OUTPUT_INACTIVE, "siren", "set by rule:door-open"),
        ]


async def test_a_lost_chip_refuses_set_then_the_line_returns_in_the_last_state(
    tmp_path: Path,
) -> None:
    async with gpio_bench(tmp_path, SIREN.replace("active_low = true", "initial = true")) as bench:
        chip = bench.board.add_chip("/dev/gpiochip0")
        siren = bench.output("siren")
        bench.start(siren)
        await bench.until(lambda: siren.line is not None and siren.line.held)
        assert chip.level(22) is True  # initial = true, active-high
        assert [e.kind for e in bench.events()] == [SystemEventKind.OUTPUT_ACTIVE]

        bench.board.remove_chip("/dev/gpiochip0")
        with pytest.raises(OutputUnavailable, match=r"^/dev/gpiochip0 line 22: "):
            await siren.set(False, by="admin")
        await bench.until(lambda: SystemEventKind.OUTPUT_LOST in [e.kind for e in bench.events()])
        assert siren.active  # unchanged: it could not be switched off

        chip = bench.board.add_chip("/dev/gpiochip0")
        await bench.until(lambda: siren.line is not None and siren.line.held)
        assert chip.level(22) is True  # driven again to the state it had
        await siren.set(False, by="admin")
        assert chip.level(22) is False
        assert [e.kind for e in bench.events()] == [
            SystemEventKind.OUTPUT_ACTIVE,
            SystemEventKind.OUTPUT_LOST,
            SystemEventKind.OUTPUT_RESTORED,
            SystemEventKind.OUTPUT_INACTIVE,
        ]
        assert [active for _, active in await bench.records("siren")] == [True, True, False]


async def test_a_busy_output_line_is_lost_naming_it(tmp_path: Path) -> None:
    async with gpio_bench(tmp_path, SIREN) as bench:
        bench.board.add_chip("/dev/gpiochip0").hold(22, "leds")
        siren = bench.output("siren")
        bench.start(siren)
        await bench.until(lambda: len(bench.events()) == 1)
        assert bench.events()[0].kind is SystemEventKind.OUTPUT_LOST
        assert bench.events()[0].detail.startswith("/dev/gpiochip0 line 22: the line is busy")
        with pytest.raises(OutputUnavailable, match="line 22: the line is not available"):
            await siren.set(True, by="admin")


async def test_a_synthetic_output_records_and_publishes_without_hardware(tmp_path: Path) -> None:
    async with gpio_bench(tmp_path, '[[outputs]]\nid = "lamp"\nname = "Lamp"\n') as bench:
        lamp = bench.output("lamp")
        assert lamp.config.source == "synthetic"
        bench.start(lamp)
        await bench.until(lambda: bench.site.outputs[0].recorder.counters.packets == 1)
        bench.clock.advance(2.0)
        await lamp.set(True, by="admin")
        assert await bench.records("lamp") == [
            (START_WALL_NS, False),
            (START_WALL_NS + 2_000_000_000, True),
        ]
        assert [e.kind for e in bench.events()] == [SystemEventKind.OUTPUT_ACTIVE]
