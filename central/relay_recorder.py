"""Rebuilding a site's chunks, exactly as the site signed them, from its relayed live stream.

Theory of operation
-------------------
The central records a device's reference stream from the live stream it relays anyway, so
the stream crosses the link once. The site sends the packets (`LivePackets`) and, after the
last packet of each chunk it stored, that chunk's header exactly as signed and the signature
(`LiveSealed`). A chunk's payload is its packets' bytes in order (`shared/chunk.py`), so the
receiver that kept the packets can put the chunk back together byte for byte: the header and
signature as sent, and the payload joined from the kept packets.

A `RelayRecorder` does that for one (site, device, stream). It keeps the packets that no
seal has claimed yet, oldest first, bounded by age (wall time between the oldest and the
newest packet), bytes and count. When a seal arrives it checks, in this order:

1. the header decodes and names this site, device and stream, and the site's key signed it
   (otherwise the chunk is *refused*: somebody else's or altered);
2. the packets it lists are kept, in order, with the same pts, dts, duration, keyframe flag
   and size (otherwise the chunk is *missed*: its first packets came before the central
   joined the stream or were discarded after waiting too long, or one was dropped on the
   way, by the site's relay for a viewer that fell behind);
3. the payload joined from them has the hash the header names (*missed*: altered on the way);
4. `accept_chunk` (`shared/transfer_acceptance.py`): after the cursor, and, when it follows
   the cursor directly, naming the cursor's chunk as its predecessor (*refused* otherwise).

Only then is the chunk returned (`ChunkRebuilt`) and the cursor moved to it. A missed or
refused chunk never becomes a wrong chunk: the outcome names its seq and the reason, the
cursor stays, and the next chunk is rebuilt as usual (with `missing_before` counting the
gap). A chunk at or before the cursor (the store already has its seq) is checked without
the chain rule and returned for the store to recognise; the cursor does not move back.

Packets that no seal claims are discarded once they are too old or over the bounds, or
when a later chunk's seal shows they came before it, and counted
(`unsealed_packets_dropped`). A site seals only the chunks it stores: a relay-only stream,
or the parts its own recording rule left out, are never sealed, and the central cannot
record them with the site's signatures; `unsealed_notice` says so while packets wait out
their time without a seal.

Pure logic: no I/O, no clock (time is the packets' wall time).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.chunk import ChunkFormatError, ChunkHeader, PacketEntry, SignedChunk
from shared.clock import NS_PER_S
from shared.link.messages import LivePacket
from shared.transfer_acceptance import (
    ChunkRejected,
    TransferCursor,
    TransferExpectation,
    accept_chunk,
)

DEFAULT_MAX_PACKET_AGE_NS = 60 * NS_PER_S
"""How long a packet waits for its seal. A site in motion or event mode seals a pre-buffered
chunk when the trigger comes, up to its pre-buffer plus a trigger latency after the chunk."""
DEFAULT_MAX_KEPT_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_KEPT_PACKETS = 8192
MAX_RECENT_PROBLEMS = 32


@dataclass(frozen=True, slots=True)
class ChunkRebuilt:
    """A chunk exactly as the site stored it, checked; store it."""

    chunk: SignedChunk
    missing_before: int  # chunks after the cursor and before this one that never came


@dataclass(frozen=True, slots=True)
class ChunkMissed:
    """A sealed chunk whose packets did not all arrive intact: nothing to store. Its header
    decoded, so its span [start_ns, end_ns) is known (the site still holds it)."""

    seq: int
    reason: str
    start_ns: int
    end_ns: int

    def __str__(self) -> str:
        return f"missed chunk seq {self.seq}: {self.reason}"


@dataclass(frozen=True, slots=True)
class ChunkRefused:
    """A seal that is not a valid chunk of this stream from this site: never stored."""

    seq: int | None  # None when the header does not even decode
    reason: str

    def __str__(self) -> str:
        which = "a chunk" if self.seq is None else f"chunk seq {self.seq}"
        return f"refused {which}: {self.reason}"


SealOutcome = ChunkRebuilt | ChunkMissed | ChunkRefused


@dataclass
class RelayCounters:
    """What the recorder saw since it was made."""

    packets_received: int = 0
    seals_received: int = 0
    chunks_rebuilt: int = 0
    chunks_missed: int = 0
    chunks_refused: int = 0
    chunks_never_sealed: int = 0  # seq gaps between rebuilt chunks (`missing_before`)
    unsealed_packets_dropped: int = 0
    recent_problems: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_RECENT_PROBLEMS))


def _matches(entry: PacketEntry, packet: LivePacket) -> bool:
    return (entry.pts, entry.dts, entry.duration, entry.keyframe, entry.size) == (
        packet.pts,
        packet.dts,
        packet.duration,
        packet.keyframe,
        len(packet.data),
    )


class RelayRecorder:
    """Relayed packets and seals of one stream in, checked chunks out; see the module
    docstring."""

    def __init__(
        self,
        expectation: TransferExpectation,
        *,
        cursor: TransferCursor | None = None,
        max_packet_age_ns: int = DEFAULT_MAX_PACKET_AGE_NS,
        max_kept_bytes: int = DEFAULT_MAX_KEPT_BYTES,
        max_kept_packets: int = DEFAULT_MAX_KEPT_PACKETS,
    ) -> None:
        if min(max_packet_age_ns, max_kept_bytes, max_kept_packets) <= 0:
            raise ValueError("the packet age, bytes and count limits must be positive")
        self.expectation = expectation
        self.cursor = cursor or TransferCursor()
        self.codec: bytes | None = None
        """The stream's codec as relayed (wire form), once it arrived."""
        self.counters = RelayCounters()
        self._max_age_ns = max_packet_age_ns
        self._max_bytes = max_kept_bytes
        self._max_packets = max_kept_packets
        self._kept: deque[LivePacket] = deque()
        self._kept_bytes = 0
        self._first_wall_ns: int | None = None
        self.newest_wall_ns: int | None = None
        """The wall time of the newest packet received: "now" as the site's viewers see it."""
        self._aged_out_through_ns: int | None = None  # newest wall_ns discarded for age/bounds
        self._unsealed_since_seal = 0

    # -- input ------------------------------------------------------------------------------

    def restart(self, cursor: TransferCursor) -> None:
        """A new live stream begins (after a reconnection): forget the kept packets, which
        the old stream can no longer seal, and continue the chain from `cursor` (the store's
        head). The counters go on."""
        self._discard_unsealed(len(self._kept))
        self.cursor = cursor
        self._first_wall_ns = None
        self._aged_out_through_ns = None

    def on_packets(self, packets: Sequence[LivePacket], codec: bytes | None = None) -> None:
        """Keep the next packets of the stream (`codec`: it changed before them)."""
        if codec is not None:
            self.codec = codec
        for packet in packets:
            self.counters.packets_received += 1
            if self._first_wall_ns is None:
                self._first_wall_ns = packet.wall_ns
            self.newest_wall_ns = packet.wall_ns
            self._kept.append(packet)
            self._kept_bytes += len(packet.data)
        self._bound()

    def on_seal(self, header: bytes, signature: bytes) -> SealOutcome:
        """The site sealed a chunk after the packets received so far; see the module
        docstring for the checks and outcomes."""
        self.counters.seals_received += 1
        self._unsealed_since_seal = 0
        outcome = self._rebuild(header, signature)
        if isinstance(outcome, ChunkRebuilt):
            self.counters.chunks_rebuilt += 1
            self.counters.chunks_never_sealed += outcome.missing_before
        elif isinstance(outcome, ChunkMissed):
            self.counters.chunks_missed += 1
            self.counters.recent_problems.append(str(outcome))
        else:
            self.counters.chunks_refused += 1
            self.counters.recent_problems.append(str(outcome))
        return outcome

    # -- reporting --------------------------------------------------------------------------

    @property
    def kept_packets(self) -> int:
        return len(self._kept)

    @property
    def unsealed_notice(self) -> str | None:
        """Why nothing is being recorded, when packets wait out their time without a seal."""
        if not self._unsealed_since_seal:
            return None
        exp = self.expectation
        waited = (
            f"{self._unsealed_since_seal} packets of {exp.device_id}/{exp.stream} waited "
            f"{self._max_age_ns / NS_PER_S:g} s without a seal"
        )
        if not self.counters.seals_received:
            return (
                f"{waited} and none came: the site does not store this stream (relay-only, "
                "or left out by its recording rule), so the central cannot record it with "
                "the site's signatures"
            )
        return (
            f"{waited} since the last one: the site is not storing this stream now (its "
            "recording rule leaves it out), so the central cannot record this part"
        )

    # -- internals --------------------------------------------------------------------------

    def _rebuild(self, header_bytes: bytes, signature: bytes) -> SealOutcome:
        exp = self.expectation
        try:
            header = ChunkHeader.decode(header_bytes)
        except ChunkFormatError as exc:
            return ChunkRefused(None, f"malformed header: {exc}")
        named = (header.site_id, header.device_id, header.stream)
        asked = (exp.site_id, exp.device_id, exp.stream)
        if named != asked:
            return ChunkRefused(
                header.seq, f"its header names {'/'.join(named)}, not {'/'.join(asked)}"
            )
        # The signature is checked once, by `accept_chunk` below (it costs more than the
        # rest of the rebuild together); a forged header is refused there, before anything
        # is consumed. The header is decoded, and the payload hashed, only here.
        if not header.packets:
            return ChunkRefused(header.seq, "its header lists no packets")
        missing = self._packets_missing(header)
        if missing is not None:
            self._discard_chunk_packets(header)
            return ChunkMissed(header.seq, missing, header.start_ns, header.end_ns)
        count = len(header.packets)
        packets = [self._kept[index] for index in range(count)]
        payload = b"".join(p.data for p in packets)
        if hashlib.sha256(payload).digest() != header.payload_sha256:
            self._discard_chunk_packets(header)
            return ChunkMissed(
                header.seq,
                "its packets do not have the payload hash it names (altered on the way)",
                header.start_ns,
                header.end_ns,
            )
        behind = self.cursor.seq is not None and header.seq <= self.cursor.seq
        try:
            accepted = accept_chunk(
                exp,
                TransferCursor() if behind else self.cursor,
                header_bytes,
                signature,
                payload,
                decoded=header,
                payload_checked=True,
            )
        except ChunkRejected as exc:
            return ChunkRefused(header.seq, str(exc))
        for _ in range(count):
            self._kept_bytes -= len(self._kept.popleft().data)
        if not behind:
            self.cursor = self.cursor.after(accepted.chunk)
        return ChunkRebuilt(accepted.chunk, accepted.missing_before)

    def _packets_missing(self, header: ChunkHeader) -> str | None:
        """Why the kept packets do not hold the chunk's, or None when they do (then they are
        the first kept packets: older unclaimed ones were discarded)."""
        entries = header.packets
        first = entries[0]
        start = next((i for i, p in enumerate(self._kept) if _matches(first, p)), None)
        if start is None:
            return self._why_first_is_missing(header)
        self._discard_unsealed(start)
        for index, entry in enumerate(entries):
            if index >= len(self._kept):
                return f"packets {index + 1}..{len(entries)} of {len(entries)} have not arrived"
            if not _matches(entry, self._kept[index]):
                return (
                    f"packet {index + 1} of {len(entries)} (pts {entry.pts}) did not arrive "
                    "(dropped on the way, or by the site's relay for a viewer that fell behind)"
                )
        return None

    def _why_first_is_missing(self, header: ChunkHeader) -> str:
        pts = header.packets[0].pts
        if self._first_wall_ns is None or header.start_ns < self._first_wall_ns:
            return "it began before the live stream reached the central (joined mid-chunk)"
        if self._aged_out_through_ns is not None and header.start_ns <= self._aged_out_through_ns:
            return (
                "its packets were discarded while they waited for the seal "
                f"(more than {self._max_age_ns / NS_PER_S:g} s, or over the size limits)"
            )
        return (
            f"its first packet (pts {pts}) did not arrive (dropped on the way, or by the "
            "site's relay for a viewer that fell behind)"
        )

    def _discard_chunk_packets(self, header: ChunkHeader) -> None:
        """After a missed chunk: let go of what is left of it, so the next chunk's packets
        come first. The next chunk starts at this one's end (or later)."""
        while self._kept and self._kept[0].wall_ns < header.end_ns:
            self._kept_bytes -= len(self._kept.popleft().data)

    def _discard_unsealed(self, count: int) -> None:
        for _ in range(count):
            self._kept_bytes -= len(self._kept.popleft().data)
        self.counters.unsealed_packets_dropped += count

    def _bound(self) -> None:
        newest = self.newest_wall_ns
        while self._kept and (
            (newest is not None and newest - self._kept[0].wall_ns > self._max_age_ns)
            or self._kept_bytes > self._max_bytes
            or len(self._kept) > self._max_packets
        ):
            packet = self._kept.popleft()
            self._kept_bytes -= len(packet.data)
            self.counters.unsealed_packets_dropped += 1
            self._unsealed_since_seal += 1
            if self._aged_out_through_ns is None or packet.wall_ns > self._aged_out_through_ns:
                self._aged_out_through_ns = packet.wall_ns
