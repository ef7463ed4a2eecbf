"""The wire form of each message: a msgpack array `[type code, field, field, ...]`.

Fields are in the order of the dataclass. Decoding checks every field's type and bounds and
names the message and field it refuses, so a garbage or hostile frame becomes a precise
`ProtocolError`, never an exception from deep inside the application.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import msgpack

from shared.chunk import MAX_HEADER_BYTES, MAX_ID_CHARS, SIGNATURE_BYTES
from shared.link import messages as m
from shared.link.errors import ErrorCode, ProtocolError

MAX_REQUEST_ID = (1 << 53) - 1
MAX_TEXT_CHARS = 4096
MAX_CREDIT_BYTES = 1 << 40
MAX_CHUNK_PAYLOAD_BYTES = 256 * 1024 * 1024
MAX_LIST_ITEMS = 256
MAX_LIVE_PACKETS = 4096
MAX_PACE_BPS = 1 << 48
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1

Check = Callable[[Any, str], Any]


def _fail(where: str, problem: str) -> ProtocolError:
    return ProtocolError(ErrorCode.MALFORMED, f"{where}: {problem}")


def _int_in(low: int, high: int) -> Check:
    def check(value: Any, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(where, f"expected an integer, got {type(value).__name__}")
        if not low <= value <= high:
            raise _fail(where, f"{value} is outside {low}..{high}")
        return value

    return check


def _optional(check: Check) -> Check:
    def optional(value: Any, where: str) -> Any:
        return None if value is None else check(value, where)

    return optional


def _text(max_chars: int, *, empty: bool = True) -> Check:
    def check(value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise _fail(where, f"expected a string, got {type(value).__name__}")
        if len(value) > max_chars:
            raise ProtocolError(
                ErrorCode.OVERSIZED, f"{where}: {len(value)} characters, at most {max_chars}"
            )
        if not empty and not value:
            raise _fail(where, "must not be empty")
        return value

    return check


def _binary(min_bytes: int, max_bytes: int) -> Check:
    def check(value: Any, where: str) -> bytes:
        if not isinstance(value, bytes):
            raise _fail(where, f"expected bytes, got {type(value).__name__}")
        if not min_bytes <= len(value) <= max_bytes:
            raise _fail(where, f"{len(value)} bytes, expected {min_bytes}..{max_bytes}")
        return value

    return check


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"expected true or false, got {type(value).__name__}")
    return value


def _enum(enum_type: Any) -> Check:
    def check(value: Any, where: str) -> Any:
        try:
            return enum_type(value)
        except (ValueError, TypeError):
            raise _fail(where, f"unknown value {value!r}") from None

    return check


def _text_list(max_items: int, item: Check) -> Check:
    def check(value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise _fail(where, f"expected a list, got {type(value).__name__}")
        if len(value) > max_items:
            raise ProtocolError(ErrorCode.OVERSIZED, f"{where}: more than {max_items} items")
        return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

    return check


def _map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"expected a map, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise _fail(where, f"map keys must be strings, got {type(key).__name__}")
    return value


_REQUEST_ID = _int_in(1, MAX_REQUEST_ID)
_NONCE = _int_in(0, (1 << 64) - 1)
_TIME_NS = _int_in(_I64_MIN, _I64_MAX)
_ID = _text(MAX_ID_CHARS, empty=False)
_TEXT = _text(MAX_TEXT_CHARS)
_CREDIT = _int_in(0, MAX_CREDIT_BYTES)
_SEQ = _int_in(0, _I64_MAX)


def _live_packet(value: Any, where: str) -> m.LivePacket:
    if not isinstance(value, list) or len(value) != 6:
        raise _fail(where, "a live packet is [pts, dts, duration, keyframe, wall_ns, data]")
    return m.LivePacket(
        _TIME_NS(value[0], f"{where}.pts"),
        _TIME_NS(value[1], f"{where}.dts"),
        _int_in(0, _I64_MAX)(value[2], f"{where}.duration"),
        _boolean(value[3], f"{where}.keyframe"),
        _TIME_NS(value[4], f"{where}.wall_ns"),
        _binary(0, MAX_CHUNK_PAYLOAD_BYTES)(value[5], f"{where}.data"),
    )


def _live_packets(value: Any, where: str) -> tuple[m.LivePacket, ...]:
    if not isinstance(value, list):
        raise _fail(where, f"expected a list, got {type(value).__name__}")
    if len(value) > MAX_LIVE_PACKETS:
        raise ProtocolError(ErrorCode.OVERSIZED, f"{where}: more than {MAX_LIVE_PACKETS} packets")
    packets = _plain_live_packets(value)
    if packets is not None:
        return packets
    # Something is off (or merely unusual): check field by field, naming what is wrong.
    return tuple(_live_packet(v, f"{where}[{i}]") for i, v in enumerate(value))


def _plain_live_packets(value: list[Any]) -> tuple[m.LivePacket, ...] | None:
    """The packets when every field has exactly the type msgpack gives for a valid packet
    and is within bounds, checked in one pass without naming anything (the live stream's
    every packet comes through here); None when any is not, for `_live_packet` to say why."""
    packets = []
    for item in value:
        if type(item) is not list or len(item) != 6:
            return None
        pts, dts, duration, keyframe, wall_ns, data = item
        if not (
            type(pts) is int
            and type(dts) is int
            and type(duration) is int
            and type(wall_ns) is int
            and type(keyframe) is bool
            and type(data) is bytes
            and _I64_MIN <= pts <= _I64_MAX
            and _I64_MIN <= dts <= _I64_MAX
            and 0 <= duration <= _I64_MAX
            and _I64_MIN <= wall_ns <= _I64_MAX
            and len(data) <= MAX_CHUNK_PAYLOAD_BYTES
        ):
            return None
        packets.append(m.LivePacket(pts, dts, duration, keyframe, wall_ns, data))
    return tuple(packets)


_SPECS: dict[type[Any], tuple[int, tuple[Check, ...]]] = {
    m.Hello: (
        1,
        (
            _int_in(1, 65535),
            _int_in(1, 65535),
            _enum(m.LinkRole),
            _text(256),
            _int_in(1, 1 << 31),
        ),
    ),
    m.Ping: (2, (_NONCE,)),
    m.Pong: (3, (_NONCE,)),
    m.Goodbye: (4, (_text(64), _TEXT)),
    m.Pace: (5, (_int_in(0, MAX_PACE_BPS),)),
    m.SiteInfoRequest: (10, (_REQUEST_ID,)),
    m.DeviceListRequest: (11, (_REQUEST_ID,)),
    m.StatusRequest: (12, (_REQUEST_ID,)),
    m.TimelineRequest: (13, (_REQUEST_ID, _ID, _ID, _TIME_NS, _TIME_NS)),
    m.TransferRequest: (
        14,
        (
            _REQUEST_ID,
            _ID,
            _ID,
            _TIME_NS,
            _TIME_NS,
            _optional(_SEQ),
            _CREDIT,
            _enum(m.Priority),
        ),
    ),
    m.LiveRequest: (15, (_REQUEST_ID, _ID, _ID, _CREDIT)),
    m.EventsRequest: (16, (_REQUEST_ID, _text_list(MAX_LIST_ITEMS, _ID), _CREDIT)),
    m.PlaceHoldRequest: (
        17,
        (_REQUEST_ID, _ID, _text_list(MAX_LIST_ITEMS, _ID), _TIME_NS, _TIME_NS, _TIME_NS, _TEXT),
    ),
    m.ListHoldsRequest: (18, (_REQUEST_ID,)),
    m.ReleaseHoldRequest: (19, (_REQUEST_ID, _int_in(0, _I64_MAX))),
    m.Credit: (30, (_REQUEST_ID, _int_in(1, MAX_CREDIT_BYTES))),
    m.Cancel: (31, (_REQUEST_ID,)),
    m.Reply: (40, (_REQUEST_ID, _map)),
    m.Failure: (41, (_REQUEST_ID, _enum(m.FailureCode), _TEXT)),
    m.ChunkHead: (
        42,
        (
            _REQUEST_ID,
            _binary(1, MAX_HEADER_BYTES),
            _binary(SIGNATURE_BYTES, SIGNATURE_BYTES),
            _int_in(0, MAX_CHUNK_PAYLOAD_BYTES),
        ),
    ),
    m.ChunkBody: (43, (_REQUEST_ID, _binary(1, MAX_CHUNK_PAYLOAD_BYTES))),
    m.LivePackets: (
        44,
        (_REQUEST_ID, _optional(_binary(1, MAX_HEADER_BYTES)), _live_packets),
    ),
    m.EventItem: (45, (_REQUEST_ID, _ID, _text(MAX_ID_CHARS), _TIME_NS, _map)),
    m.StreamEnd: (46, (_REQUEST_ID, _enum(m.StreamOutcome), _TEXT)),
    m.LiveSealed: (
        47,
        (
            _REQUEST_ID,
            _binary(1, MAX_HEADER_BYTES),
            _binary(SIGNATURE_BYTES, SIGNATURE_BYTES),
        ),
    ),
}
_BY_CODE = {code: (cls, checks) for cls, (code, checks) in _SPECS.items()}
_FIELD_NAMES = {cls: tuple(f.name for f in fields(cls)) for cls in _SPECS}
_FIELD_PLACES = {
    cls: tuple(f"{cls.__name__}.{name}" for name in names) for cls, names in _FIELD_NAMES.items()
}
"""Where each field is, as a refusal names it ("LivePackets.packets")."""


def _to_wire(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_wire(v) for v in value]
    if isinstance(value, m.LivePacket):
        return [value.pts, value.dts, value.duration, value.keyframe, value.wall_ns, value.data]
    if isinstance(value, m.Priority):
        return int(value)
    if isinstance(value, m.LinkRole | m.FailureCode | m.StreamOutcome):
        return str(value)
    return value


def encode_message(message: m.Message) -> bytes:
    """The msgpack bytes of `message` (one frame body)."""
    code, _ = _SPECS[type(message)]
    items = [code, *(_to_wire(getattr(message, name)) for name in _FIELD_NAMES[type(message)])]
    encoded: bytes = msgpack.packb(items, use_bin_type=True)
    return encoded


def decode_message(body: bytes) -> m.Message:
    """The message in one frame body; ProtocolError naming the problem otherwise."""
    try:
        items = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        problem = str(exc) or type(exc).__name__
        raise ProtocolError(
            ErrorCode.MALFORMED, f"frame is not valid msgpack ({problem})"
        ) from None
    if not isinstance(items, list) or not items:
        raise ProtocolError(ErrorCode.MALFORMED, "a frame must hold a non-empty msgpack array")
    code = items[0]
    spec = _BY_CODE.get(code) if isinstance(code, int) and not isinstance(code, bool) else None
    if spec is None:
        raise ProtocolError(ErrorCode.MALFORMED, f"unknown message type {code!r}")
    cls, checks = spec
    if len(items) != len(checks) + 1:
        names = _FIELD_NAMES[cls]
        raise ProtocolError(
            ErrorCode.MALFORMED,
            f"{cls.__name__}: {len(items) - 1} fields, expected {len(checks)} ({', '.join(names)})",
        )
    values = [
        check(value, where)
        for check, value, where in zip(checks, items[1:], _FIELD_PLACES[cls], strict=True)
    ]
    message: m.Message = cls(*values)
    return message


def message_type_code(message_type: type[Any]) -> int:
    """The type code of a message class (for documentation and tests)."""
    return _SPECS[message_type][0]


def message_types() -> tuple[type[Any], ...]:
    """Every message class, in type-code order."""
    return tuple(sorted(_SPECS, key=lambda cls: _SPECS[cls][0]))
