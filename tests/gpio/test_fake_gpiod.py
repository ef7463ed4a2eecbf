"""The fake gpiod has the real module's names, signatures and values (when gpiod is here).

The real bindings are a compiled extension for Linux; where they are not installed this is
skipped. To run it anyway: a throwaway venv with `pip install gpiod`, then
`PYTHONPATH=<its site-packages> .venv/bin/pytest tests/gpio/test_fake_gpiod.py`.
"""

from __future__ import annotations

import dataclasses
import inspect
from enum import Enum
from typing import Any

import pytest

from tests.fakes.fake_gpiod import FakeGpioBoard

real = pytest.importorskip(
    "gpiod",
    reason="the real gpiod (libgpiod v2 bindings) is not installed; nothing to compare with",
)
fake = FakeGpioBoard().module


def _default(value: Any) -> Any:
    if isinstance(value, Enum):
        return (type(value).__name__, value.name, value.value)
    return value


def _shape(function: Any) -> list[tuple[str, Any, Any]]:
    """Parameters as (name, kind, default), without annotations (written differently)."""
    return [
        (p.name, p.kind, _default(p.default))
        for p in inspect.signature(function).parameters.values()
    ]


def test_it_is_the_v2_api() -> None:
    assert int(real.__version__.split(".")[0]) >= 2
    assert hasattr(real, "request_lines")


def test_every_public_name_of_the_fake_is_in_the_real_module() -> None:
    names = {name for name in vars(fake) if not name.startswith("_")} | {"__version__"}
    assert names <= set(real.__all__) | {"line"}, names - set(real.__all__)
    assert set(vars(fake.line)) - {
        "__name__",
        "__doc__",
        "__package__",
        "__loader__",
        "__spec__",
    } <= set(real.line.__all__)


def test_module_functions_have_the_same_signatures() -> None:
    for name in ("request_lines", "is_gpiochip_device"):
        assert _shape(getattr(fake, name)) == _shape(getattr(real, name)), name


@pytest.mark.parametrize("enum", ["Value", "Direction", "Bias", "Drive", "Edge", "Clock"])
def test_line_enums_have_the_same_members_and_values(enum: str) -> None:
    fake_members = [(m.name, m.value) for m in getattr(fake.line, enum)]
    assert fake_members == [(m.name, m.value) for m in getattr(real.line, enum)]
    for value in ("ACTIVE", "INACTIVE"):
        fake_value, real_value = getattr(fake.line.Value, value), getattr(real.line.Value, value)
        assert bool(fake_value) == bool(real_value)


def test_edge_events_and_settings_have_the_same_shape() -> None:
    assert [(m.name, m.value) for m in fake.EdgeEvent.Type] == [
        (m.name, m.value) for m in real.EdgeEvent.Type
    ]
    assert _shape(fake.EdgeEvent) == _shape(real.EdgeEvent)
    assert [f.name for f in dataclasses.fields(fake.EdgeEvent)] == [
        f.name for f in dataclasses.fields(real.EdgeEvent)
    ]
    fake_fields = [(f.name, _default(f.default)) for f in dataclasses.fields(fake.LineSettings)]
    real_fields = [(f.name, _default(f.default)) for f in dataclasses.fields(real.LineSettings)]
    assert fake_fields == real_fields
    assert [f.name for f in dataclasses.fields(fake.ChipInfo)] == [
        f.name for f in dataclasses.fields(real.ChipInfo)
    ]


@pytest.mark.parametrize("cls", ["LineRequest", "Chip"])
def test_methods_and_properties_match(cls: str) -> None:
    fake_cls, real_cls = getattr(fake, cls), getattr(real, cls)
    # The board's Chip is a subclass bound to it; the methods are on the fake's Chip.
    defining = next(c for c in fake_cls.__mro__ if c.__module__ == "tests.fakes.fake_gpiod")
    for name, member in vars(defining).items():
        if name.startswith("_") and name not in ("__enter__", "__exit__", "__bool__"):
            continue
        real_member = inspect.getattr_static(real_cls, name)
        if isinstance(member, property):
            assert isinstance(real_member, property), name
        else:
            assert _shape(member) == _shape(real_member), f"{cls}.{name}"
    if cls == "Chip":
        assert _shape(fake_cls.__init__) == _shape(real_cls.__init__)


def test_exceptions_have_the_same_messages() -> None:
    assert str(fake.ChipClosedError()) == str(real.ChipClosedError())
    assert str(fake.RequestReleasedError()) == str(real.RequestReleasedError())


def test_a_missing_chip_raises_the_same_error() -> None:
    settings = {3: None}
    with pytest.raises(FileNotFoundError) as real_error:
        real.request_lines("/dev/gpiochip-absent", config=settings)
    with pytest.raises(FileNotFoundError) as fake_error:
        fake.request_lines("/dev/gpiochip-absent", config=settings)
    assert str(fake_error.value) == str(real_error.value)
    with pytest.raises(OSError, match="No such device") as real_error:
        real.request_lines("/dev/null", config=settings)
    with pytest.raises(OSError, match="No such device") as fake_error:
        fake.request_lines("/dev/null", config=settings)
    assert (type(fake_error.value), fake_error.value.errno) == (
        type(real_error.value),
        real_error.value.errno,
    )
