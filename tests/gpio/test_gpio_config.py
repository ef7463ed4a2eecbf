"""GPIO inputs and outputs in the configuration: defaults, each bad key named, no line twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, ConfigError, GpioLine, load_agent_config
from tests.agent.site_config import write_site_config

DOOR = '[[inputs]]\nid = "door"\nsource = "gpio"\nline = 17\n'


def load(tmp_path: Path, devices: str) -> AgentConfig:
    return load_agent_config(write_site_config(tmp_path, devices))


def test_defaults_and_chip_names(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        DOOR + '[[inputs]]\nid = "ignition"\nsource = "gpio"\nchip = "gpiochip4"\nline = 17\n'
        'active_low = true\nbias = "pull_up"\ndebounce_ms = 0\n'
        '[[outputs]]\nid = "siren"\nsource = "gpio"\nchip = "/dev/gpiochip0"\nline = 22\n'
        "initial = true\n"
        '[[outputs]]\nid = "lamp"\nname = "Lamp"\n',
    )
    door, ignition = config.inputs
    assert door.gpio == GpioLine("/dev/gpiochip0", 17, False, "as_is", 20)
    assert ignition.gpio == GpioLine("/dev/gpiochip4", 17, True, "pull_up", 0)
    siren, lamp = config.outputs
    assert (siren.source, siren.initial) == ("gpio", True)
    assert siren.gpio == GpioLine("/dev/gpiochip0", 22, False, "as_is", 0)
    assert (lamp.source, lamp.initial, lamp.gpio) == ("synthetic", False, None)
    assert {"door", "ignition", "siren", "lamp"} <= set(config.device_ids())


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ('[[inputs]]\nid = "door"\nsource = "gpio"\n', r"inputs\[0\]\.line: is required"),
        (DOOR.replace("17", "-1"), r"inputs\[0\]\.line: must be at least 0"),
        (DOOR.replace("17", '"GPIO17"'), r"inputs\[0\]\.line: expected an integer"),
        (DOOR + 'chip = "/tmp/gpiochip0"\n', r"inputs\[0\]\.chip: '/tmp/gpiochip0' must be a"),
        (DOOR + 'chip = "/dev/../etc/x"\n', r"inputs\[0\]\.chip: '/dev/\.\./etc/x' must be a"),
        (DOOR + 'chip = "chip0"\n', r"inputs\[0\]\.chip: 'chip0' must be a device path"),
        (DOOR + 'bias = "up"\n', r"inputs\[0\]\.bias: must be one of as_is, pull_up, pull_down"),
        (DOOR + "debounce_ms = 1001\n", r"inputs\[0\]\.debounce_ms: must be at most 1000"),
        (DOOR + "debounce_ms = 0.5\n", r"inputs\[0\]\.debounce_ms: expected an integer"),
        (DOOR + 'active_low = "yes"\n', r"inputs\[0\]\.active_low: expected true or false"),
        (DOOR + "period_s = 40\n", r"inputs\[0\]\.period_s: unknown key"),
        (DOOR.replace('"gpio"', '"gpoi"'), r"inputs\[0\]\.source: must be one of synthetic, gpio"),
        ('[[inputs]]\nid = "door"\nline = 17\n', r"inputs\[0\]\.line: unknown key"),
        (
            '[[outputs]]\nid = "siren"\nsource = "gpio"\nline = 4\nbias = "pull_up"\n',
            r"outputs\[0\]\.bias: unknown key",
        ),
        (
            '[[outputs]]\nid = "siren"\nsource = "gpio"\nline = 4\ninitial = "on"\n',
            r"outputs\[0\]\.initial: expected true or false",
        ),
        ('[[outputs]]\nid = "siren"\nsource = "relay"\n', r"outputs\[0\]\.source: must be one"),
    ],
)
def test_each_bad_key_is_named(tmp_path: Path, devices: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(tmp_path, devices)
    assert "agent.toml" in str(caught.value)


def test_a_line_used_twice_is_refused_naming_both(tmp_path: Path) -> None:
    devices = (
        DOOR
        + '[[inputs]]\nid = "other-chip"\nsource = "gpio"\nchip = "gpiochip1"\nline = 17\n'
        + '[[outputs]]\nid = "siren"\nsource = "gpio"\nchip = "gpiochip0"\nline = 17\n'
    )
    with pytest.raises(
        ConfigError,
        match=r"outputs\[0\] \('siren'\) and inputs\[0\] \('door'\) both use line 17 of "
        r"/dev/gpiochip0$",
    ):
        load(tmp_path, devices)
    devices = DOOR + DOOR.replace('"door"', '"door-2"')
    with pytest.raises(ConfigError, match=r"inputs\[1\] \('door-2'\) and inputs\[0\] \('door'\)"):
        load(tmp_path, devices)
