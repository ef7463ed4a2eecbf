"""Field checks shared by every record: bounds, allowed values, and normal forms.

Each check raises `InvalidRecord` naming the field, or returns the value in its normal form
(a fingerprint without colons, a host name in lowercase, a rule as plain JSON). The records
call them from `__post_init__`, so no record with a bad field can exist, whichever way it
was built (from an API request, from `dataclasses.replace`, from a database row).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import zoneinfo
from collections.abc import Iterable, Mapping

from central.catalog.errors import InvalidRecord
from shared.passwords import PasswordHashError, check_hash_format
from shared.tls_pinning import normalize_fingerprint

MAX_NAME_CHARS = 128
MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 256  # product, version, labels
MAX_MESSAGE_CHARS = 2000
MAX_HOST_CHARS = 253
MAX_USERNAME_CHARS = 64
MAX_PASSWORD_CHARS = 1024
MAX_STREAMS = 16
MAX_STREAM_NAME_CHARS = 32
MAX_DIMENSION = 16384
MAX_FRAME_RATE = 1000.0
MAX_PARALLEL_DEVICES = 64
MAX_DEVICES_PER_SITE = 1024
MAX_RULE_BYTES = 64 * 1024
MAX_SETTING_BYTES = 1024 * 1024
MAX_SETTING_KEY_CHARS = 128
MIN_DIGEST_BYTES = 16
MAX_DIGEST_BYTES = 64
ED25519_PUBLIC_KEY_BYTES = 32

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"^{_HOST_LABEL}(\.{_HOST_LABEL})*\.?$")
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
_CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


def text(field: str, value: object, *, max_chars: int = MAX_NAME_CHARS) -> str:
    """A non-empty string of at most `max_chars` without control characters."""
    if not isinstance(value, str):
        raise InvalidRecord(field, f"must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidRecord(field, "must not be empty")
    if len(value) > max_chars:
        raise InvalidRecord(field, f"must be at most {max_chars} characters, not {len(value)}")
    if _CONTROL.search(value):
        raise InvalidRecord(field, "must not contain control characters")
    return value


def optional_text(field: str, value: object, *, max_chars: int = MAX_NAME_CHARS) -> str | None:
    return None if value is None else text(field, value, max_chars=max_chars)


def one_of(field: str, value: object, allowed: Iterable[str]) -> str:
    choices = tuple(allowed)
    if value not in choices:
        raise InvalidRecord(field, f"must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def integer(field: str, value: object, *, low: int, high: int | None = None) -> int:
    """An int (never a bool) in [low, high]."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRecord(field, f"must be an integer, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise InvalidRecord(field, f"must be {bound}, not {value}")
    return value


def optional_integer(field: str, value: object, *, low: int, high: int | None = None) -> int | None:
    return None if value is None else integer(field, value, low=low, high=high)


def optional_rate(field: str, value: object, *, high: float) -> float | None:
    """None, or a number (int or float, never a bool) above 0 and at most `high`, as a float."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidRecord(field, f"must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or not 0 < value <= high:
        raise InvalidRecord(field, f"must be above 0 and at most {high:g}, not {value}")
    return float(value)


def instant(field: str, value: object) -> int:
    """A UTC instant in nanoseconds; 0 is allowed, negative is not."""
    return integer(field, value, low=0)


def flag(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidRecord(field, f"must be true or false, not {value!r}")
    return value


def host(field: str, value: object) -> str:
    """An IP address (compressed form) or a DNS host name (lowercase), never a URL."""
    name = text(field, value, max_chars=MAX_HOST_CHARS).strip()
    candidate = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    lowered = name.lower()
    if not _HOST_NAME.fullmatch(lowered):
        raise InvalidRecord(
            field, f"{name!r} is neither an IP address nor a host name (no scheme, port or path)"
        )
    return lowered.rstrip(".")


def fingerprint(field: str, value: object) -> str:
    """A SHA-256 fingerprint as 64 lowercase hex digits; colons and case are accepted."""
    if not isinstance(value, str):
        raise InvalidRecord(field, f"must be a string, not {type(value).__name__}")
    try:
        return normalize_fingerprint(value).hex()
    except ValueError as exc:
        raise InvalidRecord(field, str(exc)) from exc


def time_zone(field: str, value: object) -> str:
    name = text(field, value, max_chars=64)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidRecord(field, f"{name!r} is not an IANA time zone name") from exc
    return name


def clock_time(field: str, value: object) -> str:
    if not isinstance(value, str) or not _CLOCK_TIME.fullmatch(value):
        raise InvalidRecord(
            field, f"must be a time of day as HH:MM (00:00 to 23:59), not {value!r}"
        )
    return value


def public_key(field: str, value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, bytes) or len(value) != ED25519_PUBLIC_KEY_BYTES:
        raise InvalidRecord(field, f"must be {ED25519_PUBLIC_KEY_BYTES} bytes (an Ed25519 key)")
    return value


def digest(field: str, value: object) -> bytes:
    """A token digest: the bytes of a hash, never the token itself."""
    if not isinstance(value, bytes) or not MIN_DIGEST_BYTES <= len(value) <= MAX_DIGEST_BYTES:
        raise InvalidRecord(
            field, f"must be {MIN_DIGEST_BYTES} to {MAX_DIGEST_BYTES} bytes (a token's hash)"
        )
    return value


def username(field: str, value: object) -> str:
    name = text(field, value, max_chars=MAX_USERNAME_CHARS)
    if not _USERNAME.fullmatch(name):
        raise InvalidRecord(
            field,
            "may contain only letters, digits, '.', '_', '@' and '-', starting with one "
            "of the first two",
        )
    return name


def password_hash(field: str, value: object) -> str:
    """A hash in `shared/passwords.py`'s form; a plain password is refused here."""
    stored = text(field, value, max_chars=MAX_TEXT_CHARS)
    try:
        check_hash_format(stored)
    except PasswordHashError as exc:
        raise InvalidRecord(field, str(exc)) from exc
    return stored


def json_object(field: str, value: object, *, max_bytes: int) -> dict[str, object]:
    """A copy of `value` as plain JSON (tuples become lists); it must be a JSON object."""
    if not isinstance(value, Mapping):
        raise InvalidRecord(field, f"must be a JSON object, not {type(value).__name__}")
    encoded = json_text(field, value, max_bytes=max_bytes)
    decoded: dict[str, object] = json.loads(encoded)
    return decoded


def json_text(field: str, value: object, *, max_bytes: int) -> str:
    """`value` as compact JSON text, refusing what JSON cannot carry (NaN, sets, bytes)."""
    try:
        encoded = json.dumps(value, allow_nan=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidRecord(field, f"is not JSON: {exc}") from exc
    size = len(encoded.encode("utf-8"))
    if size > max_bytes:
        raise InvalidRecord(field, f"must be at most {max_bytes} bytes as JSON, not {size}")
    return encoded
