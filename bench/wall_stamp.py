"""A wall-clock stamp carried inside an H.264 packet, so that latency can be measured at any
viewer, whatever container the packet arrives in.

The stamp is an SEI NAL unit (type 6) with one "user data unregistered" message (payload type
5): a fixed 16-byte UUID, then the wall time in nanoseconds as 19 ASCII digits. Decoders
ignore such messages. It is appended to the packet in Annex B framing; a fragmented MP4
writer rewrites the framing into NAL lengths but keeps the unit's bytes, so `stamps_in` finds
it in a `mdat` as in a raw packet. Digits and the UUID contain no 00 00 pair, so the unit
needs no emulation-prevention bytes.
"""

from __future__ import annotations

STAMP_UUID = bytes.fromhex("5e11e1ae7a11c10c5e11e1ae7a11c10c")
_DIGITS = 19
_PAYLOAD_SIZE = len(STAMP_UUID) + _DIGITS
_SEI_HEAD = b"\x00\x00\x00\x01\x06\x05" + bytes([_PAYLOAD_SIZE])
_RBSP_TRAILING = b"\x80"


def stamped(packet: bytes, wall_ns: int) -> bytes:
    """`packet` (Annex B) with a stamp unit for `wall_ns` appended."""
    digits = str(wall_ns).zfill(_DIGITS).encode("ascii")
    if len(digits) != _DIGITS:
        raise ValueError(f"wall time {wall_ns} does not fit in {_DIGITS} digits")
    return packet + _SEI_HEAD + STAMP_UUID + digits + _RBSP_TRAILING


def stamps_in(data: bytes) -> list[int]:
    """Every stamp in `data` (a packet, a media segment, any run of bytes), in order."""
    found: list[int] = []
    start = data.find(STAMP_UUID)
    while start >= 0:
        digits = data[start + len(STAMP_UUID) : start + _PAYLOAD_SIZE]
        if len(digits) == _DIGITS and digits.isdigit():
            found.append(int(digits))
        start = data.find(STAMP_UUID, start + _PAYLOAD_SIZE)
    return found
