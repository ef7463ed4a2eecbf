"""Live packets of every recorded stream, fanned out to viewers, with the last GOP cached.

The recorders publish each stream's codec and packets here before any recording decision,
so a stream that is relayed but not recorded (relay-only) is live all the same. A new viewer
first gets the codec and the packets since the last keyframe, so its first picture comes at
once instead of up to a keyframe interval later. Publishing never blocks: each viewer has a
bounded backlog; a viewer that falls behind loses its backlog and waits for the next
keyframe (a decoder cannot start anywhere else), and `dropped_packets` counts the loss.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import msgpack

from shared.media import CodecConfig, MediaPacket

MAX_CACHED_GOP_BYTES = 16 * 1024 * 1024
DEFAULT_VIEWER_BACKLOG_BYTES = 8 * 1024 * 1024
MAX_BATCH_BYTES = 256 * 1024


def codec_wire(codec: CodecConfig) -> bytes:
    """The codec as sent in `LivePackets.codec`."""
    encoded: bytes = msgpack.packb(codec.to_wire(), use_bin_type=True)
    return encoded


class LiveViewer:
    """One viewer's backlog; see the module docstring."""

    def __init__(self, backlog_bytes: int) -> None:
        self._backlog_limit = backlog_bytes
        self._packets: deque[MediaPacket] = deque()
        self._bytes = 0
        self._codec: bytes | None = None
        self._waiting_for_keyframe = True
        self._ready = asyncio.Event()
        self.dropped_packets = 0

    def offer_codec(self, codec: bytes) -> None:
        self._codec = codec
        self._ready.set()

    def offer(self, packet: MediaPacket) -> None:
        if self._waiting_for_keyframe:
            if not packet.keyframe:
                self.dropped_packets += 1
                return
            self._waiting_for_keyframe = False
        if self._bytes + len(packet.data) > self._backlog_limit:
            self.dropped_packets += len(self._packets) + 1
            self._packets.clear()
            self._bytes = 0
            self._waiting_for_keyframe = True
            return
        self._packets.append(packet)
        self._bytes += len(packet.data)
        self._ready.set()

    async def next_batch(self) -> tuple[bytes | None, tuple[MediaPacket, ...]]:
        """The codec if it is new, and the packets waiting (at least one), up to a batch."""
        while not self._packets:
            self._ready.clear()
            await self._ready.wait()
        codec, self._codec = self._codec, None
        batch: list[MediaPacket] = []
        size = 0
        while self._packets and (not batch or size + len(self._packets[0].data) <= MAX_BATCH_BYTES):
            packet = self._packets.popleft()
            batch.append(packet)
            size += len(packet.data)
        self._bytes -= size
        return codec, tuple(batch)


@dataclass
class _Channel:
    codec: bytes | None = None
    gop: list[MediaPacket] = field(default_factory=list)
    gop_bytes: int = 0
    viewers: set[LiveViewer] = field(default_factory=set)


class LiveRelay:
    """See the module docstring."""

    def __init__(self, *, viewer_backlog_bytes: int = DEFAULT_VIEWER_BACKLOG_BYTES) -> None:
        self._channels: dict[tuple[str, str], _Channel] = {}
        self._viewer_backlog_bytes = viewer_backlog_bytes
        self.on_watched: Callable[[str, bool], None] | None = None
        """Told (device id, True) when a device gets its first viewer, False after its last."""

    def _device_viewers(self, device_id: str) -> int:
        return sum(len(c.viewers) for (d, _), c in self._channels.items() if d == device_id)

    def set_codec(self, device_id: str, stream: str, codec: CodecConfig) -> None:
        channel = self._channel(device_id, stream)
        channel.codec = codec_wire(codec)
        channel.gop.clear()
        channel.gop_bytes = 0
        for viewer in channel.viewers:
            viewer.offer_codec(channel.codec)

    def publish(self, device_id: str, packet: MediaPacket) -> None:
        channel = self._channels.get((device_id, packet.stream))
        if channel is None or channel.codec is None:
            return
        if packet.keyframe:
            channel.gop.clear()
            channel.gop_bytes = 0
        if channel.gop_bytes + len(packet.data) <= MAX_CACHED_GOP_BYTES:
            channel.gop.append(packet)
            channel.gop_bytes += len(packet.data)
        for viewer in channel.viewers:
            viewer.offer(packet)

    def viewers(self, device_id: str, stream: str) -> int:
        channel = self._channels.get((device_id, stream))
        return 0 if channel is None else len(channel.viewers)

    @contextmanager
    def subscribe(self, device_id: str, stream: str) -> Iterator[LiveViewer]:
        """A viewer that starts with the codec and the cached GOP."""
        channel = self._channel(device_id, stream)
        viewer = LiveViewer(self._viewer_backlog_bytes)
        if channel.codec is not None:
            viewer.offer_codec(channel.codec)
        for packet in channel.gop:
            viewer.offer(packet)
        first = self._device_viewers(device_id) == 0
        channel.viewers.add(viewer)
        if first and self.on_watched is not None:
            self.on_watched(device_id, True)
        try:
            yield viewer
        finally:
            channel.viewers.discard(viewer)
            if self._device_viewers(device_id) == 0 and self.on_watched is not None:
                self.on_watched(device_id, False)

    def _channel(self, device_id: str, stream: str) -> _Channel:
        return self._channels.setdefault((device_id, stream), _Channel())
