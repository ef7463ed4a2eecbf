"""Checking what API callers send: query parameters, JSON bodies, ISO 8601 instants.

Every refusal is a `BadRequest` whose message starts with the parameter's name, such as
``start: not an ISO 8601 instant: 'yesterday'``. Instants must carry a zone (`Z` or an
offset like `+02:00`); a naive time would be read in some unknown zone, so it is refused.
Fractions of a second keep up to nanoseconds, as the store does.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Mapping

from shared.clock import NS_PER_S

MAX_STRING_CHARS = 1024
MAX_LIST_ITEMS = 32
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_INSTANT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?"
)


class BadRequest(Exception):
    """The request names `parameter` wrongly; the message says how."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter


def parse_instant(parameter: str, text: str) -> int:
    """UTC nanoseconds of an ISO 8601 instant with a zone, e.g. `2024-05-01T12:00:00.5Z`."""
    shown = text if len(text) <= 64 else text[:64] + "..."
    match = _INSTANT.fullmatch(text.strip())
    if match is None:
        raise BadRequest(parameter, f"not an ISO 8601 instant: {shown!r}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    if zulu is None and sign is None:
        raise BadRequest(
            parameter,
            f"has no time zone: {shown!r} (add Z for UTC or an offset such as +02:00)",
        )
    try:
        offset = datetime.timedelta(0)
        if sign is not None:
            offset = datetime.timedelta(hours=int(off_h), minutes=int(off_m))
            if offset >= datetime.timedelta(hours=24):
                raise ValueError("offset out of range")
            offset = -offset if sign == "-" else offset
        moment = datetime.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=datetime.timezone(offset),
        )
    except ValueError as exc:
        raise BadRequest(parameter, f"not a valid date and time: {shown!r}") from exc
    whole_s = (moment - _EPOCH) // datetime.timedelta(seconds=1)
    if whole_s < 0:
        raise BadRequest(parameter, f"must not be before 1970: {shown!r}")
    fraction_ns = int((fraction or "0").ljust(9, "0"))
    return whole_s * NS_PER_S + fraction_ns


def format_instant(instant_ns: int) -> str:
    """`2024-05-01T12:00:00.5Z`: UTC, with as many fraction digits as needed (up to 9)."""
    whole_s, fraction_ns = divmod(instant_ns, NS_PER_S)
    text = (_EPOCH + datetime.timedelta(seconds=whole_s)).strftime("%Y-%m-%dT%H:%M:%S")
    if fraction_ns:
        text += "." + f"{fraction_ns:09d}".rstrip("0")
    return text + "Z"


def query_values(
    pairs: Iterable[tuple[str, str]], *, required: Iterable[str], optional: Iterable[str] = ()
) -> dict[str, str]:
    """The query's parameters by name; refuses unknown, repeated, missing or over-long ones."""
    required = tuple(required)
    known = (*required, *optional)
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in known:
            raise BadRequest(name, f"unknown parameter (this route takes {', '.join(known)})")
        if name in values:
            raise BadRequest(name, "given more than once")
        if len(value) > MAX_STRING_CHARS:
            raise BadRequest(name, f"longer than {MAX_STRING_CHARS} characters")
        values[name] = value
    for name in required:
        if name not in values:
            raise BadRequest(name, "missing (required)")
    return values


def json_object(body: bytes, *, allowed: Iterable[str]) -> dict[str, object]:
    """The body as a JSON object with only `allowed` members."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("body", f"not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise BadRequest("body", "nested too deeply") from exc
    if not isinstance(value, dict):
        raise BadRequest("body", f"must be a JSON object, not {type(value).__name__}")
    known = tuple(allowed)
    for name in value:
        if name not in known:
            raise BadRequest(name, f"unknown member (the body takes {', '.join(known)})")
    return value


def required_string(body: Mapping[str, object], name: str) -> str:
    """A string member of a JSON body that must be present."""
    value = body.get(name)
    if value is None:
        raise BadRequest(name, "missing (required)")
    if not isinstance(value, str):
        raise BadRequest(name, f"must be a string, not {_json_type(value)}")
    if len(value) > MAX_STRING_CHARS:
        raise BadRequest(name, f"longer than {MAX_STRING_CHARS} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(name, "is not valid Unicode text (it holds a lone surrogate)") from exc
    return value


def optional_string(body: Mapping[str, object], name: str) -> str | None:
    """A string member of a JSON body, or None when absent (or null)."""
    return None if body.get(name) is None else required_string(body, name)


def member_string_list(body: Mapping[str, object], name: str) -> list[str] | None:
    """A list-of-strings member of a JSON body, or None when absent."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, list):
        raise BadRequest(name, f"must be a list of strings, not {_json_type(value)}")
    if not 0 < len(value) <= MAX_LIST_ITEMS:
        raise BadRequest(name, f"must hold 1 to {MAX_LIST_ITEMS} items")
    for item in value:
        if not isinstance(item, str) or len(item) > MAX_STRING_CHARS:
            raise BadRequest(name, "every item must be a string")
    return list(value)


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__
