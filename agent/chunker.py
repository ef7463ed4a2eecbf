"""The chunker: cuts one stream's packets into chunk drafts (the unit of storage and signing).

Theory of operation
-------------------
A `Chunker` serves one stream of one device. Packets go in one at a time with `push`; a
completed chunk comes out as soon as the packet that ends it arrives. Nothing here does I/O or
reads a clock: time comes from the packets' `wall_ns`, and from the `now_ns` a caller passes
to `poll`.

Where a chunk may start:

- video: only on a keyframe, so every chunk decodes on its own with the codec extradata.
  Packets before the first keyframe (and after a cut that lost the picture chain, below) are
  dropped and counted in `ChunkerStats.packets_dropped`;
- audio, metadata and events: on any packet.

When a chunk is closed (the first rule that applies):

1. Discontinuity: `wall_ns` goes backwards by more than `reorder_tolerance_ns`, or jumps
   forward by more than `max_gap_ns` since the previous packet. The open chunk ends at its last
   packet (plus that packet's duration); the next chunk is marked `after_discontinuity`.
2. Boundary: a packet that may start a chunk arrives once the open chunk is at least
   `min_chunk_ns` long (less `cut_tolerance_ns`, so camera jitter does not merge two 1 s GOPs).
   With a 1 s GOP that gives one GOP per chunk, with a 0.5 s GOP two. A video chunk is also
   closed at a keyframe when one more GOP the size of the last one would break a limit below.
3. Limits: appending would make the chunk longer than `max_chunk_ns`, larger than
   `max_chunk_bytes`, or hold more than `max_chunk_packets`. An audio or records chunk is simply
   cut before the packet. A video chunk can only get there when a camera stops sending
   keyframes (a broken camera or a GOP longer than the limits): the chunk is cut, and since the
   following packets reference pictures in it, they are dropped until the next keyframe; the
   chunk after that is marked `after_discontinuity`, because packets were lost.
4. `flush()`: the source stopped (or is being closed). The next chunk, if any, is marked
   `after_discontinuity`, because nothing says the stream was continuous across the stop.
5. `poll(now_ns)` (audio and records streams only): a sparse stream (motion records arrive only
   while something moves) would otherwise keep a chunk open until its next packet, possibly
   hours later. Once a chunk is `min_chunk_ns` long and `poll_grace_ns` more has passed, it is
   closed at its nominal end `start_ns + min_chunk_ns`. This is not a discontinuity: a quiet
   records stream is still a recorded one.

`end_ns` of a chunk is the `wall_ns` of the next chunk's first packet when the stream is
continuous across the cut, otherwise the end of its last packet (its duration, or when that is
unknown the last interval between packets). `end_ns >= start_ns` always.

The very first chunk of a chunker is marked `after_discontinuity`: whatever the store holds for
this stream came from an earlier run, and the source restarted in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.chunk import MAX_PACKETS_PER_CHUNK, ChunkDraft
from shared.clock import NS_PER_S
from shared.media import CodecConfig, MediaKind, MediaPacket

NS_PER_MS = 1_000_000

DEFAULT_VIDEO_MIN_CHUNK_NS = 1 * NS_PER_S
DEFAULT_AUDIO_MIN_CHUNK_NS = 1 * NS_PER_S
DEFAULT_RECORDS_MIN_CHUNK_NS = 10 * NS_PER_S
DEFAULT_VIDEO_MAX_CHUNK_NS = 60 * NS_PER_S
"""Long enough for the variable-GOP modes of surveillance cameras, which stretch a static scene's
GOP to tens of seconds; a tighter limit would cut (and lose) the tail of such GOPs."""
DEFAULT_MAX_CHUNK_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_GAP_NS = 5 * NS_PER_S
"""Media packets arrive many times a second; a 5 s hole in their timestamps is lost data (a
camera that froze, a clock step), not a pause. Records streams have no such limit."""
DEFAULT_REORDER_TOLERANCE_NS = 500 * NS_PER_MS
"""With B-frames, presentation times go back a few frames in decode order: that is not a jump."""
DEFAULT_CUT_TOLERANCE_NS = 50 * NS_PER_MS
DEFAULT_POLL_GRACE_NS = 1 * NS_PER_S


class CutReason(StrEnum):
    """Why a chunk was closed."""

    BOUNDARY = "boundary"  # a keyframe (video) or packet (other kinds) after min_chunk_ns
    LIMIT = "limit"  # max_chunk_ns, max_chunk_bytes or max_chunk_packets reached
    DISCONTINUITY = "discontinuity"  # wall_ns went backwards or jumped forward
    FLUSH = "flush"  # the caller flushed (source stopped)
    POLL = "poll"  # a sparse stream's chunk timed out (`Chunker.poll`)


@dataclass(frozen=True, slots=True)
class CutChunk:
    """A completed chunk draft and how it relates to the chunk cut before it.

    `after_discontinuity` is true when this chunk does not follow the previous chunk of the
    same chunker seamlessly (first chunk, timestamps jumped, packets were dropped, or the
    source was flushed in between). The recording gate combines it with its own skips to set
    the signed `discontinuity` flag.
    """

    draft: ChunkDraft
    after_discontinuity: bool
    reason: CutReason


@dataclass(frozen=True, slots=True)
class ChunkerStats:
    """Counters since the chunker was made."""

    packets_in: int
    packets_dropped: int  # video packets with no keyframe to start a chunk on
    chunks_cut: int
    discontinuities: int  # timestamp jumps seen (not counting flushes)
    limit_cuts: int  # chunks closed by a size or length limit


class Chunker:
    """Cuts the packets of one stream into `CutChunk`s; see the module docstring for the rules.

    Not thread-safe; one chunker per (device, stream). Raises `ValueError` for a packet of
    another stream or for inconsistent limits; never for odd timestamps.
    """

    def __init__(
        self,
        device_id: str,
        stream: str,
        codec: CodecConfig,
        *,
        min_chunk_ns: int | None = None,
        max_chunk_ns: int = DEFAULT_VIDEO_MAX_CHUNK_NS,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
        max_chunk_packets: int = MAX_PACKETS_PER_CHUNK,
        max_gap_ns: int | None = None,
        reorder_tolerance_ns: int = DEFAULT_REORDER_TOLERANCE_NS,
        cut_tolerance_ns: int = DEFAULT_CUT_TOLERANCE_NS,
        poll_grace_ns: int = DEFAULT_POLL_GRACE_NS,
    ) -> None:
        """Defaults depend on `codec.kind`: `min_chunk_ns` is 1 s for video and audio and 10 s
        for metadata and events; `max_gap_ns` is 5 s for video and audio and unlimited for
        metadata and events (their packets are sparse by nature)."""
        self._device_id = device_id
        self._stream = stream
        self._codec = codec
        self._is_video = codec.kind is MediaKind.VIDEO
        records = codec.kind in (MediaKind.METADATA, MediaKind.EVENTS)
        if min_chunk_ns is None:
            if self._is_video:
                min_chunk_ns = DEFAULT_VIDEO_MIN_CHUNK_NS
            elif records:
                min_chunk_ns = DEFAULT_RECORDS_MIN_CHUNK_NS
            else:
                min_chunk_ns = DEFAULT_AUDIO_MIN_CHUNK_NS
        if max_gap_ns is None and not records:
            max_gap_ns = DEFAULT_MAX_GAP_NS
        if min_chunk_ns <= 0:
            raise ValueError(f"min_chunk_ns must be positive, got {min_chunk_ns}")
        if max_chunk_ns < min_chunk_ns:
            raise ValueError(
                f"max_chunk_ns ({max_chunk_ns}) must be at least min_chunk_ns ({min_chunk_ns})"
            )
        if max_chunk_bytes <= 0 or not 0 < max_chunk_packets <= MAX_PACKETS_PER_CHUNK:
            raise ValueError(
                "max_chunk_bytes must be positive and max_chunk_packets within "
                f"1..{MAX_PACKETS_PER_CHUNK}"
            )
        if max_gap_ns is not None and max_gap_ns <= 0:
            raise ValueError(f"max_gap_ns must be positive, got {max_gap_ns}")
        if min(reorder_tolerance_ns, cut_tolerance_ns, poll_grace_ns) < 0:
            raise ValueError("tolerances and grace periods cannot be negative")
        self._min_chunk_ns = min_chunk_ns
        self._max_chunk_ns = max_chunk_ns
        self._max_chunk_bytes = max_chunk_bytes
        self._max_chunk_packets = max_chunk_packets
        self._max_gap_ns = max_gap_ns
        self._reorder_tolerance_ns = reorder_tolerance_ns
        self._cut_tolerance_ns = cut_tolerance_ns
        self._poll_grace_ns = poll_grace_ns

        # The open chunk.
        self._packets: list[MediaPacket] = []
        self._bytes = 0
        self._start_ns = 0
        self._max_wall_in_chunk_ns = 0
        # The GOP being built inside the open chunk (video): how big the next one may be.
        self._gop_bytes = 0
        self._gop_packets = 0
        self._gop_start_ns = 0

        # Continuity of the stream, across chunks.
        self._latest_wall_ns: int | None = None  # highest wall_ns seen since the last reset
        self._interval_ns = 0  # last positive step between packets, for unknown durations
        self._pending_discontinuity = True

        self._packets_in = 0
        self._packets_dropped = 0
        self._chunks_cut = 0
        self._discontinuities = 0
        self._limit_cuts = 0

    @property
    def stats(self) -> ChunkerStats:
        return ChunkerStats(
            packets_in=self._packets_in,
            packets_dropped=self._packets_dropped,
            chunks_cut=self._chunks_cut,
            discontinuities=self._discontinuities,
            limit_cuts=self._limit_cuts,
        )

    @property
    def has_open_chunk(self) -> bool:
        return bool(self._packets)

    def push(self, packet: MediaPacket) -> list[CutChunk]:
        """Add one packet; return the chunks it completed (zero or one, in cut order)."""
        if packet.stream != self._stream:
            raise ValueError(
                f"chunker of stream {self._stream!r} was given a packet of {packet.stream!r}"
            )
        self._packets_in += 1
        completed: list[CutChunk] = []
        if self._is_discontinuous(packet.wall_ns):
            self._discontinuities += 1
            cut = self._close(self._end_of_last_packet(), CutReason.DISCONTINUITY)
            if cut is not None:
                completed.append(cut)
            self._pending_discontinuity = True
            self._latest_wall_ns = None
            self._interval_ns = 0
        self._track_time(packet.wall_ns)

        if not self._packets:
            self._start_or_drop(packet)
        elif self._is_video:
            if packet.keyframe:
                if self._boundary_due(packet):
                    cut = self._close(packet.wall_ns, CutReason.BOUNDARY)
                    assert cut is not None  # a chunk was open
                    completed.append(cut)
                    self._open(packet)
                else:
                    self._append(packet)
                    self._start_gop(packet.wall_ns)
            elif self._over_limit(packet):
                self._limit_cuts += 1
                cut = self._close(self._end_of_last_packet(), CutReason.LIMIT)
                assert cut is not None
                completed.append(cut)
                # The packets that follow need pictures of the chunk just closed: wait for a
                # keyframe, and tell the next chunk's reader that packets were lost.
                self._pending_discontinuity = True
                self._packets_dropped += 1
            else:
                self._append(packet)
        elif packet.wall_ns - self._start_ns >= self._min_chunk_ns - self._cut_tolerance_ns:
            cut = self._close(packet.wall_ns, CutReason.BOUNDARY)
            assert cut is not None
            completed.append(cut)
            self._open(packet)
        elif self._over_limit(packet):
            self._limit_cuts += 1
            cut = self._close(packet.wall_ns, CutReason.LIMIT)
            assert cut is not None
            completed.append(cut)
            self._open(packet)
        else:
            self._append(packet)
        return completed

    def flush(self) -> CutChunk | None:
        """Close the open chunk, if any: the source stopped, so the next chunk is marked
        `after_discontinuity` (and, for video, has to start on a keyframe again)."""
        cut = self._close(self._end_of_last_packet(), CutReason.FLUSH)
        self._pending_discontinuity = True
        self._latest_wall_ns = None
        self._interval_ns = 0
        return cut

    def poll(self, now_ns: int) -> CutChunk | None:
        """Close an audio or records chunk that is due but has no packet to end it.

        Call it now and then (every second or so) with the current wall time. Video chunks are
        never closed by time: their end needs the next keyframe (or `flush`).
        """
        if self._is_video or not self._packets:
            return None
        nominal_end_ns = self._start_ns + self._min_chunk_ns
        if now_ns < nominal_end_ns + self._poll_grace_ns:
            return None
        return self._close(max(nominal_end_ns, self._end_of_last_packet()), CutReason.POLL)

    # -- internals ---------------------------------------------------------------------------

    def _is_discontinuous(self, wall_ns: int) -> bool:
        latest = self._latest_wall_ns
        if latest is None:
            return False
        if wall_ns < latest - self._reorder_tolerance_ns:
            return True
        return self._max_gap_ns is not None and wall_ns - latest > self._max_gap_ns

    def _track_time(self, wall_ns: int) -> None:
        latest = self._latest_wall_ns
        if latest is not None and wall_ns > latest:
            self._interval_ns = wall_ns - latest
        if latest is None or wall_ns > latest:
            self._latest_wall_ns = wall_ns

    def _start_or_drop(self, packet: MediaPacket) -> None:
        if self._is_video and not packet.keyframe:
            self._packets_dropped += 1
            return
        self._open(packet)

    def _open(self, packet: MediaPacket) -> None:
        self._packets = [packet]
        self._bytes = len(packet.data)
        self._start_ns = packet.wall_ns
        self._max_wall_in_chunk_ns = packet.wall_ns
        self._gop_start_ns = packet.wall_ns
        self._gop_bytes = len(packet.data)
        self._gop_packets = 1

    def _append(self, packet: MediaPacket) -> None:
        self._packets.append(packet)
        self._bytes += len(packet.data)
        self._gop_bytes += len(packet.data)
        self._gop_packets += 1
        self._max_wall_in_chunk_ns = max(self._max_wall_in_chunk_ns, packet.wall_ns)

    def _start_gop(self, wall_ns: int) -> None:
        # `_append` already counted the keyframe into the GOP that just ended; restart the
        # counters with the keyframe alone.
        last = self._packets[-1]
        self._gop_start_ns = wall_ns
        self._gop_bytes = len(last.data)
        self._gop_packets = 1

    def _boundary_due(self, keyframe: MediaPacket) -> bool:
        keyframe_wall_ns = keyframe.wall_ns
        length_ns = keyframe_wall_ns - self._start_ns
        if length_ns >= self._min_chunk_ns - self._cut_tolerance_ns:
            return True
        # Short GOPs are merged; stop merging before one more GOP like the last would break a
        # limit, so the limit cut (which loses packets) only happens to real broken streams.
        gop_ns = keyframe_wall_ns - self._gop_start_ns
        return (
            self._over_limit(keyframe)
            or length_ns + gop_ns > self._max_chunk_ns
            or self._bytes + self._gop_bytes > self._max_chunk_bytes
            or len(self._packets) + self._gop_packets > self._max_chunk_packets
        )

    def _over_limit(self, packet: MediaPacket) -> bool:
        return (
            packet.wall_ns - self._start_ns > self._max_chunk_ns
            or self._bytes + len(packet.data) > self._max_chunk_bytes
            or len(self._packets) + 1 > self._max_chunk_packets
        )

    def _end_of_last_packet(self) -> int:
        if not self._packets:
            return 0
        last = self._packets[-1]
        if last.duration > 0:
            duration_ns = (
                last.duration * self._codec.time_base_num * NS_PER_S // self._codec.time_base_den
            )
        else:
            duration_ns = self._interval_ns
        return self._max_wall_in_chunk_ns + duration_ns

    def _close(self, end_ns: int, reason: CutReason) -> CutChunk | None:
        if not self._packets:
            return None
        draft = ChunkDraft(
            device_id=self._device_id,
            stream=self._stream,
            start_ns=self._start_ns,
            end_ns=max(end_ns, self._start_ns),
            codec=self._codec,
            packets=tuple(self._packets),
        )
        cut = CutChunk(draft, after_discontinuity=self._pending_discontinuity, reason=reason)
        self._pending_discontinuity = False
        self._packets = []
        self._bytes = 0
        self._chunks_cut += 1
        return cut
