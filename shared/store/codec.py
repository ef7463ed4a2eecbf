"""The msgpack record codec of the store's small tables (streams, tombstones, holds).

A record is a msgpack list of a fixed number of fields. Decoding checks the count and each
field's type, and raises `StoreFormatError` naming the record and field, so a damaged record
is reported (by `check_store`) rather than propagated as a confusing `TypeError` later.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from shared.store.errors import StoreFormatError

MAX_RECORD_BYTES = 64 * 1024

Field = int | str | bytes | bool | None


def pack_record(fields: Sequence[Field]) -> bytes:
    """Deterministic msgpack bytes of a record's fields."""
    packed: bytes = msgpack.packb(list(fields), use_bin_type=True)
    return packed


def unpack_record(data: bytes, field_count: int, what: str) -> list[object]:
    """The fields of a record of `field_count` fields, or `StoreFormatError`."""
    if len(data) > MAX_RECORD_BYTES:
        raise StoreFormatError(f"{what}: record of {len(data)} bytes is too large")
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise StoreFormatError(f"{what}: record is not valid msgpack ({exc})") from exc
    if not isinstance(fields, list) or len(fields) != field_count:
        raise StoreFormatError(f"{what}: record must be a list of {field_count} fields")
    return fields


def as_int(value: object, what: str) -> int:
    """`value` as a non-negative int, or `StoreFormatError`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise StoreFormatError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def as_optional_int(value: object, what: str) -> int | None:
    """`value` as a non-negative int or None, or `StoreFormatError`."""
    return None if value is None else as_int(value, what)


def as_str(value: object, what: str) -> str:
    """`value` as a non-empty str, or `StoreFormatError`."""
    if not isinstance(value, str) or not value:
        raise StoreFormatError(f"{what} must be a non-empty string, not {value!r}")
    return value


def as_bytes(value: object, what: str, length: int) -> bytes:
    """`value` as bytes of exactly `length`, or `StoreFormatError`."""
    if not isinstance(value, bytes) or len(value) != length:
        raise StoreFormatError(f"{what} must be {length} bytes")
    return value
