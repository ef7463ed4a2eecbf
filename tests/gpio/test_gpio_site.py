"""The whole site with a GPIO door contact: event-mode cameras record when it fires, and a
site without GPIO never imports the library."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from agent.config import load_agent_config
from agent.store_audit import audit_store
from agent.system_events import SystemEventKind
from tests.agent.site_config import small_camera, write_site_config
from tests.agent.site_run import read_stream, record_site
from tests.fakes.fake_gpiod import FakeGpioBoard


def listening(camera_id: str, input_id: str) -> str:
    return small_camera(camera_id, hq_mode="event").replace(
        "post_buffer_s = 1", f'post_buffer_s = 1\ntrigger_inputs = ["{input_id}"]'
    )


async def test_event_mode_records_when_the_gpio_input_fires(tmp_path: Path) -> None:
    devices = listening("cam-a", "door") + listening("cam-b", "gate")
    devices += (
        '\n[[inputs]]\nid = "door"\nsource = "gpio"\nline = 17\nactive_low = true\n'
        'bias = "pull_up"\ndebounce_ms = 0\n'
    )
    devices += '\n[[inputs]]\nid = "gate"\nsource = "gpio"\nline = 18\nbias = "pull_down"\n'
    config = load_agent_config(write_site_config(tmp_path, devices))
    board = FakeGpioBoard()  # the system's monotonic clock, as the kernel's
    chip = board.add_chip("/dev/gpiochip0")

    async def door_opens_and_closes() -> None:
        await asyncio.sleep(3.0)
        chip.drive(17, False)  # contact closed to ground: active
        await asyncio.sleep(1.0)
        chip.disconnect(17)

    toggling = asyncio.create_task(door_opens_and_closes())
    try:
        site = await record_site(config, 7.0, gpiod_loader=board.loader())
    finally:
        board.close()
    await toggling

    kinds = [(e.kind, e.device_id) for e in site.events.recent()]
    assert (SystemEventKind.INPUT_ACTIVE, "door") in kinds
    assert (SystemEventKind.INPUT_INACTIVE, "door") in kinds
    assert not [kind for kind, device in kinds if device == "gate"]
    hq = read_stream(config, "cam-a", "hq")
    assert hq  # recorded around the door's event
    assert read_stream(config, "cam-b", "hq") == []  # its gate never fired
    states = read_stream(config, "door", "state")
    assert sum(len(chunk.header.packets) for chunk in states) == 3  # initial, on, off
    assert read_stream(config, "gate", "state")  # its initial state
    assert audit_store(config).ok


async def test_a_site_without_gpio_never_imports_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An importable `gpiod`: importing it would leave it in sys.modules.
    library = tmp_path / "lib"
    library.mkdir()
    (library / "gpiod.py").write_text("request_lines = None\n")
    monkeypatch.syspath_prepend(str(library))
    monkeypatch.delitem(sys.modules, "gpiod", raising=False)
    devices = '[[inputs]]\nid = "door"\nperiod_s = 2\n[[outputs]]\nid = "siren"\n'
    config = load_agent_config(write_site_config(tmp_path, devices))
    site = await record_site(config, 2.5)  # the real loader
    assert "gpiod" not in sys.modules
    assert read_stream(config, "door", "state")
    assert read_stream(config, "siren", "state")  # a synthetic output records its state
    assert site.outputs[0].config.source == "synthetic"
