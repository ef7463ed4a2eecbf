"""The interface every camera source implements.

A source is opened, read packet by packet, and closed. Reading never blocks the event loop:
sources that call blocking libraries (PyAV demuxing, libx264 encoding) do that in a worker
thread and hand packets over through a bounded queue. A camera that is down raises
`SourceUnavailable` from `open` or `read`; the camera supervisor reconnects with backoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from shared.media import CodecConfig, MediaPacket

STREAM_HQ = "hq"
STREAM_LQ = "lq"
STREAM_AUDIO = "audio"


class SourceUnavailable(Exception):
    """The camera cannot be reached or stopped sending; the message says why (no secrets)."""


class SourceConfigError(ValueError):
    """A source was configured with something unusable (a dangerous URL, a missing file)."""


class CameraSource(Protocol):
    """A camera (or anything that behaves like one) giving encoded packets of its streams."""

    def describe(self) -> str:
        """A human-readable description safe for logs (credentials removed)."""
        ...

    async def open(self) -> Mapping[str, CodecConfig]:
        """Connect and return the codec configuration of each stream, keyed by stream name."""
        ...

    async def read(self) -> MediaPacket:
        """The next packet of any stream, in arrival order per stream."""
        ...

    async def read_batch(self) -> list[MediaPacket]:
        """The packets that arrived since the last read (at least one), in arrival order
        per stream; what the recorder uses, since one call per batch costs less CPU."""
        ...

    async def close(self) -> None:
        """Release everything; safe to call twice and after a failed `open`."""
        ...

    def set_live_watched(self, watched: bool) -> None:
        """Someone watches this camera live (deliver packets promptly), or nobody does
        (deliver them in batches, which costs less CPU)."""
        ...
