"""Frames: a 4-byte big-endian length, then that many bytes of one msgpack message.

The reader accepts bytes in pieces of any size (one byte at a time included) and refuses a
frame longer than its limit as soon as the length prefix arrives, before buffering it.
"""

from __future__ import annotations

from shared.link.errors import ErrorCode, ProtocolError

LENGTH_PREFIX_BYTES = 4
MIN_FRAME_LIMIT = 16 * 1024
MAX_FRAME_LIMIT = 4 * 1024 * 1024
DEFAULT_FRAME_LIMIT = 1024 * 1024


def encode_frame(body: bytes) -> bytes:
    """The frame that carries `body`."""
    return len(body).to_bytes(LENGTH_PREFIX_BYTES, "big") + body


class FrameReader:
    """Cuts a byte stream into frame bodies."""

    def __init__(self, max_frame_bytes: int = DEFAULT_FRAME_LIMIT) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._start = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes) -> list[bytes]:
        """The whole frame bodies that `data` completes, in order."""
        self._buffer += data
        frames: list[bytes] = []
        buffer = self._buffer
        while len(buffer) - self._start >= LENGTH_PREFIX_BYTES:
            start = self._start
            length = int.from_bytes(buffer[start : start + LENGTH_PREFIX_BYTES], "big")
            if length > self.max_frame_bytes:
                raise ProtocolError(
                    ErrorCode.OVERSIZED,
                    f"frame of {length} bytes announced; the limit is {self.max_frame_bytes}",
                )
            if length == 0:
                raise ProtocolError(ErrorCode.MALFORMED, "empty frame")
            end = start + LENGTH_PREFIX_BYTES + length
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[start + LENGTH_PREFIX_BYTES : end]))
            self._start = end
        if self._start and (self._start >= len(buffer) or self._start > 1 << 20):
            del buffer[: self._start]
            self._start = 0
        return frames
