"""One stream's recording path: packets -> chunker -> recording gate -> sealer -> store.

The chunker may be replaced when the camera comes back with another codec configuration;
the gate (pre-buffer, open triggers) and the chain go on. A chunk that cannot be stored (disk
full with nothing deletable, I/O error) is reported and dropped, the chain then declares a
recording gap, and the next chunk is tried as usual: one bad write never stops recording.

Each chunk the store committed is handed to `on_committed` (the camera recorder points it at
the live relay, whose viewers then get the chunk's seal after its packets). Only committed
chunks: a chunk that failed to store is not part of the chain (the next one takes its seq).

Packets and triggers come from different tasks (the camera's packet task, the motion
worker's delivery task); a lock makes each gate decision and the sealing and storing of what
it released one step, so chunks are sealed and stored in chain order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from agent.chain_sealer import ChainSealer
from agent.chunker import Chunker, CutChunk
from agent.event_hub import EventHub
from agent.recording_policy import StoredChunkPlan, StreamRecordingGate, TriggerKind
from agent.store_writer import StoreWriter
from agent.system_events import SystemEvent, SystemEventKind
from shared.chunk import SignedChunk
from shared.clock import Clock
from shared.media import CodecConfig, MediaPacket
from shared.store.errors import StoreError, StoreFull

_log = logging.getLogger(__name__)


@dataclass
class StreamCounters:
    """What a stream recorder did since start."""

    packets: int = 0
    chunks_stored: int = 0
    bytes_stored: int = 0
    chunks_failed: int = 0


class StreamRecorder:
    """Records one (device, stream); see the module docstring."""

    def __init__(
        self,
        *,
        device_id: str,
        stream: str,
        gate: StreamRecordingGate,
        sealer: ChainSealer,
        writer: StoreWriter,
        events: EventHub,
        clock: Clock,
    ) -> None:
        self.device_id = device_id
        self.stream = stream
        self.gate = gate
        self._sealer = sealer
        self._writer = writer
        self._events = events
        self._clock = clock
        self._chunker: Chunker | None = None
        self._codec: CodecConfig | None = None
        self.counters = StreamCounters()
        self.on_committed: Callable[[SignedChunk], None] | None = None
        """Told each chunk once the store holds it, in chain order."""
        self._full_reported = False
        self._lock = asyncio.Lock()

    @property
    def codec(self) -> CodecConfig | None:
        return self._codec

    async def set_codec(self, codec: CodecConfig) -> None:
        """Use `codec` for the next packets; a changed codec closes the chunk being cut."""
        if codec == self._codec:
            return
        await self.flush()
        async with self._lock:
            self._codec = codec
            self._chunker = Chunker(self.device_id, self.stream, codec)

    async def push(self, packet: MediaPacket) -> None:
        """Add a packet; store whatever chunks it completes and the gate lets through."""
        if self._chunker is None:
            raise RuntimeError(f"{self.device_id}/{self.stream}: set_codec before push")
        self.counters.packets += 1
        async with self._lock:
            for cut in self._chunker.push(packet):
                await self._offer(cut)

    async def poll(self) -> None:
        """Close a sparse stream's chunk that has waited long enough (metadata, events)."""
        async with self._lock:
            if self._chunker is not None:
                cut = self._chunker.poll(self._clock.now_ns())
                if cut is not None:
                    await self._offer(cut)

    async def flush(self) -> None:
        """Close the chunk being cut (the source stopped, or the agent is stopping)."""
        async with self._lock:
            if self._chunker is not None:
                cut = self._chunker.flush()
                if cut is not None:
                    await self._offer(cut)

    async def trigger(
        self, kind: TriggerKind, start_ns: int, end_ns: int | None = None, *, source: str = ""
    ) -> None:
        """Open (end_ns None) or add a recording window; store the pre-buffer it releases."""
        async with self._lock:
            await self._store(self.gate.trigger(kind, start_ns, end_ns, source=source))

    def end_trigger(self, kind: TriggerKind, end_ns: int, *, source: str = "") -> None:
        self.gate.end_trigger(kind, end_ns, source=source)

    async def _offer(self, cut: CutChunk) -> None:
        await self._store(self.gate.offer(cut))

    async def _store(self, plans: list[StoredChunkPlan]) -> None:
        for plan in plans:
            chunk = self._sealer.seal(plan.draft, discontinuity=plan.discontinuity)
            writing = asyncio.ensure_future(self._put(chunk))
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                # The commit goes on in the writer thread whatever happens here. Wait for it
                # and its bookkeeping (one commit at most), so the chain head matches the
                # store before anything else seals the next chunk of this stream.
                await writing
                raise

    async def _put(self, chunk: SignedChunk) -> None:
        try:
            stored = await self._writer.put(chunk, sealed_here=True)
        except StoreError as exc:
            self._sealer.dropped()
            self.counters.chunks_failed += 1
            self._report_failure(exc)
            return
        self._sealer.committed(chunk)
        if self.on_committed is not None:
            self.on_committed(chunk)
        if stored:
            self.counters.chunks_stored += 1
            self.counters.bytes_stored += len(chunk.payload)
        if self._full_reported:
            self._full_reported = False
            _log.info("%s/%s: storing again", self.device_id, self.stream)

    def _report_failure(self, exc: StoreError) -> None:
        kind = (
            SystemEventKind.STORAGE_FULL
            if isinstance(exc, StoreFull)
            else SystemEventKind.STORAGE_ERROR
        )
        _log.error("%s/%s: chunk not stored: %s", self.device_id, self.stream, exc)
        if not self._full_reported:  # one event per episode, not one per chunk
            self._full_reported = True
            self._events.publish(
                SystemEvent(kind, self.device_id, self._clock.now_ns(), f"{self.stream}: {exc}")
            )
