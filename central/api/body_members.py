"""Typed members of JSON request bodies beyond strings (those are in `shared.api_input`)."""

from __future__ import annotations

from collections.abc import Mapping

from shared.api_input import BadRequest


def optional_integer(body: Mapping[str, object], name: str, *, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(name, f"must be a whole number, not {value!r}"[:120])
    if not low <= value <= high:
        raise BadRequest(name, f"must be {low} to {high}, not {value}")
    return value


def optional_number(
    body: Mapping[str, object], name: str, *, low: float, high: float
) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(name, f"must be a number, not {value!r}"[:120])
    if not low <= value <= high:
        raise BadRequest(name, f"must be {low:g} to {high:g}, not {value:g}")
    return float(value)


def optional_boolean(body: Mapping[str, object], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise BadRequest(name, f"must be true or false, not {value!r}"[:120])
    return value


def optional_object(body: Mapping[str, object], name: str) -> dict[str, object] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(name, "must be a JSON object")
    return value
