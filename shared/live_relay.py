"""Live packets of every recorded stream, fanned out to viewers, with the last GOP cached.

The recorders publish each stream's codec and packets here before any recording decision,
so a stream that is relayed but not recorded (relay-only) is live all the same. A new viewer
first gets the codec and the packets since the last keyframe, so its first picture comes at
once instead of up to a keyframe interval later. Publishing never blocks: each viewer has a
bounded backlog; a viewer that falls behind loses its backlog and waits for the next
keyframe (a decoder cannot start anywhere else), and `dropped_packets` counts the loss.

Seals: when a recorder has stored a chunk, it publishes the chunk's signed header here
(`publish_sealed`), after the chunk's last packet was published (a chunk is cut when the
packet after it arrives). Viewers that asked for seals (`subscribe(..., seals=True)`, the
link's live stream) get it in order with the packets, so every packet of the chunk comes
before its seal: a receiver that kept the packets can rebuild the chunk exactly as the site
stored it. A viewer that loses its backlog keeps the seals in it (they are small), so the
receiver learns which chunk it could not rebuild; seals are bounded by the backlog too.

Notices: whoever holds a viewer may have news for it that is not in the stream (the
central: its feed stopped or resumed). `LiveViewer.notify` wakes the viewer's reader, which
takes packets and notices at one waiting point (`next_batch_or_notice`), so it need not
wait on the stream and on the news separately.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import msgpack

from shared.chunk import SignedChunk
from shared.media import CodecConfig, MediaPacket

MAX_CACHED_GOP_BYTES = 16 * 1024 * 1024
DEFAULT_VIEWER_BACKLOG_BYTES = 8 * 1024 * 1024
MAX_BATCH_BYTES = 256 * 1024


def codec_wire(codec: CodecConfig) -> bytes:
    """The codec as sent in `LivePackets.codec`."""
    encoded: bytes = msgpack.packb(codec.to_wire(), use_bin_type=True)
    return encoded


@dataclass(frozen=True, slots=True)
class LiveSeal:
    """A chunk the site stored, whose packets a viewer was sent before: header and signature."""

    header: bytes
    signature: bytes

    @property
    def size(self) -> int:
        return len(self.header) + len(self.signature)


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """Packets in order, with the codec when it is new (it applies from the first packet)."""

    codec: bytes | None
    packets: tuple[MediaPacket, ...]


@dataclass(frozen=True, slots=True)
class LiveNotice:
    """The viewer was notified (`LiveViewer.notify`): its holder has news; the news itself
    is wherever the holder keeps it."""


LIVE_NOTICE = LiveNotice()


@dataclass(frozen=True, slots=True)
class _CodecChange:
    codec: bytes


_Entry = MediaPacket | LiveSeal | _CodecChange


class LiveViewer:
    """One viewer's backlog; see the module docstring."""

    def __init__(self, backlog_bytes: int, *, seals: bool = False) -> None:
        self._backlog_limit = backlog_bytes
        self.takes_seals = seals
        self._entries: deque[_Entry] = deque()
        self._packet_count = 0
        self._seal_count = 0
        self._bytes = 0
        self._waiting_for_keyframe = True
        self._notified = False
        self._ready = asyncio.Event()
        self.dropped_packets = 0
        self.dropped_seals = 0

    def offer_codec(self, codec: bytes) -> None:
        if self._entries and isinstance(self._entries[-1], _CodecChange):
            self._entries.pop()  # replaced before any packet used it
        self._entries.append(_CodecChange(codec))

    def offer(self, packet: MediaPacket) -> None:
        if self._waiting_for_keyframe:
            if not packet.keyframe:
                self.dropped_packets += 1
                return
            self._waiting_for_keyframe = False
        if self._bytes + len(packet.data) > self._backlog_limit:
            self.dropped_packets += self._packet_count + 1
            self._drop_packets()
            self._waiting_for_keyframe = True
            return
        self._entries.append(packet)
        self._packet_count += 1
        self._bytes += len(packet.data)
        self._ready.set()

    def offer_seal(self, seal: LiveSeal) -> None:
        if not self.takes_seals:
            return
        self._entries.append(seal)
        self._seal_count += 1
        self._bytes += seal.size
        while self._bytes > self._backlog_limit and self._packet_count:
            self.dropped_packets += self._packet_count
            self._drop_packets()
            self._waiting_for_keyframe = True
        while self._bytes > self._backlog_limit and self._seal_count:
            self._drop_oldest_seal()
        self._ready.set()

    def notify(self) -> None:
        """Wake the viewer's reader with news from its holder: `next_batch_or_notice`
        returns `LIVE_NOTICE` next (once, however often this was called meanwhile)."""
        self._notified = True
        self._ready.set()

    async def next_batch(self) -> tuple[bytes | None, tuple[MediaPacket, ...]]:
        """The codec if it is new, and the packets waiting (at least one), up to a batch.

        For viewers without seals; one with seals takes `next_item`."""
        while True:
            item = await self.next_item()
            if isinstance(item, LiveBatch):
                return item.codec, item.packets

    async def next_batch_or_notice(self) -> LiveBatch | LiveNotice:
        """`LIVE_NOTICE` if the viewer was notified since the last call, else the next batch
        as `next_batch` gives it; waits for whichever comes first. For viewers without
        seals."""
        while True:
            if self._notified:
                self._notified = False
                return LIVE_NOTICE
            if self._packet_count or self._seal_count:
                item = self._take()
                if isinstance(item, LiveBatch):
                    return item
                continue
            self._ready.clear()
            await self._ready.wait()

    async def next_item(self) -> LiveBatch | LiveSeal:
        """The next seal, or the packets waiting up to the next seal (at least one), up to
        a batch, with the codec if it changed before them."""
        while not (self._packet_count or self._seal_count):
            self._ready.clear()
            await self._ready.wait()
        return self._take()

    def _take(self) -> LiveBatch | LiveSeal:
        """What `next_item` returns, when there is a packet or a seal to take."""
        for index, entry in enumerate(self._entries):
            if isinstance(entry, LiveSeal):
                # A codec change before it stays: it applies to the packets after the seal.
                del self._entries[index]
                self._seal_count -= 1
                self._bytes -= entry.size
                return entry
            if isinstance(entry, MediaPacket):
                break
        codec: bytes | None = None
        while isinstance(head := self._entries[0], _CodecChange):
            codec = head.codec
            self._entries.popleft()
        batch: list[MediaPacket] = []
        size = 0
        while self._entries:
            entry = self._entries[0]
            if not isinstance(entry, MediaPacket):
                break
            if batch and size + len(entry.data) > MAX_BATCH_BYTES:
                break
            self._entries.popleft()
            batch.append(entry)
            size += len(entry.data)
        self._packet_count -= len(batch)
        self._bytes -= size
        return LiveBatch(codec, tuple(batch))

    def _drop_packets(self) -> None:
        kept: deque[_Entry] = deque()
        for entry in self._entries:
            if isinstance(entry, MediaPacket):
                continue
            if isinstance(entry, _CodecChange) and kept and isinstance(kept[-1], _CodecChange):
                kept.pop()  # two changes with no packet between: the later one counts
            kept.append(entry)
        self._entries = kept
        self._packet_count = 0
        self._bytes = sum(e.size for e in kept if isinstance(e, LiveSeal))

    def _drop_oldest_seal(self) -> None:
        for index, entry in enumerate(self._entries):
            if isinstance(entry, LiveSeal):
                del self._entries[index]
                self._seal_count -= 1
                self._bytes -= entry.size
                self.dropped_seals += 1
                return


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

    def publish_sealed(self, chunk: SignedChunk) -> None:
        """The site stored `chunk`, whose packets were published before: tell the viewers
        that take seals (see the module docstring)."""
        header = chunk.header
        channel = self._channels.get((header.device_id, header.stream))
        if channel is None:
            return
        seal = LiveSeal(chunk.header_bytes, chunk.signature)
        for viewer in channel.viewers:
            viewer.offer_seal(seal)

    def viewers(self, device_id: str, stream: str) -> int:
        channel = self._channels.get((device_id, stream))
        return 0 if channel is None else len(channel.viewers)

    @contextmanager
    def subscribe(
        self, device_id: str, stream: str, *, seals: bool = False
    ) -> Iterator[LiveViewer]:
        """A viewer that starts with the codec and the cached GOP; with `seals`, it also gets
        the seal of each chunk stored from then on (take them with `next_item`)."""
        channel = self._channel(device_id, stream)
        viewer = LiveViewer(self._viewer_backlog_bytes, seals=seals)
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
