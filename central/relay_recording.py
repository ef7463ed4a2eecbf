"""The central's recording of one (site, device, stream) from the live stream it relays.

A `RelayRecording` consumes a live stream with seals (`LinkClient.live_with_seals`), feeds a
`RelayRecorder` (`central/relay_recorder.py`), which turns packets and seals into chunks
checked against the site's key and the stream's chain, and puts the chunks that the
device's central recording rule wants into the central's `ChunkStore`, byte for byte as the
site stored them. The packets also go to `on_live`, a callback for whatever fans the
stream out to the central's viewers; recording and viewing share the one stream on the link.

Which chunks are stored is the shared recording gate (`shared/recording_gate.py`) applied
to the rebuilt chunks: `always`, `motion` (the site's motion events for the camera),
`event` (its input events), `schedule` (weekly, in the site's time zone) and `manual`
(an operator's start and stop), with pre- and post-buffer. The gate keeps chunks not yet
wanted in its bounded pre-buffer, so a trigger stores the chunks before it. Triggers come
from the site's events (`on_site_event`, fed from the link's event stream by whoever runs
it) and from operators (`manual_start`, `manual_stop`). A manual trigger is placed at the
wall time of the newest relayed packet, which is the site's clock and what a viewer sees
at that moment, so a skew between the central's and the site's clocks does not move it.

Chunks are stored in the order the gate releases them by one writer task, in batches,
through the central's `IngestWriter` (`central/ingest_writer.py`: one group commit for all
recordings, and the ingest receipts), so a slow commit never holds up the stream or its
viewers; `flush` waits for what was released so far and `close` stores what waits before
the store may close. A trigger returns once the chunks it released (the pre-buffer) are
stored. The store is idempotent, so a chunk the central already holds (fetched by
transfer, or recorded before a reconnection) is not stored twice. `status` reports chunks
stored, missed (with reasons), refused, left out by the rule, and the packets the site
never sealed.

A missed chunk is still at the site. When it is a hole in the central's recording, it goes
to `on_missed` (`central/retrieval/missed_chunks.py` queues its span for retrieval). It is
a hole when the recording had begun (the store held a chunk of the stream, so the chunk is
not merely one the stream was joined in the middle of before the central ever recorded it)
and the rule wanted it: the missed chunk's span goes through the gate like a chunk
(`MissedSpan`, with no payload), so under `always` it is wanted at once, under a triggered
or scheduled rule when its span falls in a trigger's window or the schedule, even a trigger
that comes later and releases it from the pre-buffer; a span the rule leaves out is only
counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from central.ingest_writer import ChunkSink
from central.relay_recorder import (
    DEFAULT_MAX_KEPT_BYTES,
    DEFAULT_MAX_KEPT_PACKETS,
    DEFAULT_MAX_PACKET_AGE_NS,
    ChunkMissed,
    ChunkRebuilt,
    RelayRecorder,
)
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, Clock
from shared.link import events as ev
from shared.link import messages as m
from shared.link_io.client import LinkClient
from shared.recording_gate import (
    GateRelease,
    RecordingGate,
    RecordingMode,
    TriggerKind,
    WeeklySchedule,
)
from shared.store.chunk_store import ChunkStore
from shared.store.errors import StoreError
from shared.transfer_acceptance import TransferCursor, TransferExpectation

_log = logging.getLogger(__name__)

RULE_MODES: dict[str, RecordingMode] = {
    "always": RecordingMode.CONTINUOUS,
    "motion": RecordingMode.MOTION,
    "event": RecordingMode.EVENT,
    "schedule": RecordingMode.SCHEDULE,
    "manual": RecordingMode.MANUAL,
}
"""The central rule's modes, as the recording gate names them."""

LiveItem = ev.LiveReceived | ev.LiveSealedReceived


class RecordingRule(Protocol):
    """A device's central recording rule (`central/central_rule.py` has one)."""

    @property
    def mode(self) -> str: ...

    @property
    def pre_buffer_s(self) -> float: ...

    @property
    def post_buffer_s(self) -> float: ...

    @property
    def schedule(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class RelayedChunk:
    """A rebuilt chunk as the recording gate sees it: its span and size."""

    chunk: SignedChunk

    @property
    def start_ns(self) -> int:
        return self.chunk.header.start_ns

    @property
    def end_ns(self) -> int:
        return self.chunk.header.end_ns

    @property
    def payload_size(self) -> int:
        return len(self.chunk.payload)


@dataclass(frozen=True, slots=True)
class MissedSpan:
    """A missed chunk as the recording gate sees it: its span, no payload. Released by the
    gate, it is a hole to fill if the recording had `begun` when it was missed."""

    missed: ChunkMissed
    begun: bool

    @property
    def start_ns(self) -> int:
        return self.missed.start_ns

    @property
    def end_ns(self) -> int:
        return self.missed.end_ns

    @property
    def payload_size(self) -> int:
        return 0


GatedItem = RelayedChunk | MissedSpan
"""What the central's recording gate is offered: rebuilt chunks, and the spans of missed ones."""


def rule_gate(rule: RecordingRule, *, time_zone: str) -> RecordingGate[GatedItem]:
    """The gate that applies `rule` (`time_zone`: the site's, for schedules); ValueError
    naming a mode or schedule that cannot be used."""
    mode = RULE_MODES.get(rule.mode)
    if mode is None:
        raise ValueError(f"central rule mode {rule.mode!r} is not one of {', '.join(RULE_MODES)}")
    schedule = WeeklySchedule.parse(time_zone, rule.schedule) if rule.schedule else None
    return RecordingGate(
        mode,
        schedule=schedule,
        pre_buffer_ns=round(rule.pre_buffer_s * NS_PER_S),
        post_buffer_ns=round(rule.post_buffer_s * NS_PER_S),
    )


@dataclass(frozen=True, slots=True)
class RelayRecordingStatus:
    """What the recording did since it started, for the central's status and alerts."""

    chunks_stored: int
    chunks_already_stored: int  # rebuilt, wanted, and already in the store
    chunks_missed: int  # sealed, but their packets did not all arrive intact
    chunks_refused: int  # seals that are not valid chunks of this stream from this site
    chunks_not_wanted: int  # left out by the central rule (rebuilt, or the span of a missed one)
    chunks_pre_buffered: int  # waiting in the rule's pre-buffer for a trigger (the same)
    chunks_failed: int  # wanted, but the store could not take them
    unsealed_packets_dropped: int
    recent_problems: tuple[str, ...]  # the latest "missed chunk seq N: reason" and such
    notice: str | None  # why nothing can be recorded now, if that is so


class RelayRecording:
    """Records one stream of one device of one site; see the module docstring."""

    def __init__(
        self,
        *,
        expectation: TransferExpectation,
        store: ChunkStore,
        sink: ChunkSink,
        gate: RecordingGate[GatedItem],
        clock: Clock,
        on_live: Callable[[ev.LiveReceived], None] | None = None,
        on_missed: Callable[[ChunkMissed], None] | None = None,
        trigger_inputs: frozenset[str] | None = None,
        max_packet_age_ns: int = DEFAULT_MAX_PACKET_AGE_NS,
        max_kept_bytes: int = DEFAULT_MAX_KEPT_BYTES,
        max_kept_packets: int = DEFAULT_MAX_KEPT_PACKETS,
    ) -> None:
        self.expectation = expectation
        self._store = store
        self._gate = gate
        self._clock = clock
        self._on_live = on_live
        self._on_missed = on_missed
        self._sink = sink
        self._trigger_inputs = trigger_inputs
        self._recorder = RelayRecorder(
            expectation,
            max_packet_age_ns=max_packet_age_ns,
            max_kept_bytes=max_kept_bytes,
            max_kept_packets=max_kept_packets,
        )
        # Chunks to store wait here for a writer task, so a slow commit never holds up the
        # stream (and the viewers fed from it); one queue keeps the gate's order.
        self._writes: asyncio.Queue[list[GateRelease[RelayedChunk]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._stored = self._already_stored = self._failed = 0
        self._protocol_notice: str | None = None

    # -- the stream -------------------------------------------------------------------------

    async def run(self, client: LinkClient) -> None:
        """Record from the link until the live stream ends (LinkLost, RequestFailed as the
        client raises them)."""
        exp = self.expectation
        if not client.connection.live_sealed_agreed:
            self._protocol_notice = (
                f"the site speaks link protocol {client.connection.version}, which sends no "
                f"seals (version {m.LIVE_SEALED_VERSION} does): {exp.device_id}/{exp.stream} "
                "is relayed but cannot be recorded from the live stream"
            )
            _log.warning("%s", self._protocol_notice)
        async with client.live_with_seals(exp.device_id, exp.stream) as items:
            await self.record(items)

    async def record(self, items: AsyncIterator[LiveItem]) -> None:
        """Record from a live stream with seals until it ends; the chain continues from the
        store's head for the stream. Called again for each new live stream (reconnection);
        the gate, its pre-buffer and the counters go on."""
        exp = self.expectation
        head = await asyncio.to_thread(
            self._store.stream_head, exp.device_id, exp.stream, site_id=exp.site_id
        )
        cursor = TransferCursor() if head is None else TransferCursor(head.seq, head.chunk_hash)
        self._recorder.restart(cursor)
        async for item in items:
            if isinstance(item, ev.LiveReceived):
                self._recorder.on_packets(item.packets, item.codec)
                if self._on_live is not None:
                    self._on_live(item)
                continue
            outcome = self._recorder.on_seal(item.header, item.signature)
            if isinstance(outcome, ChunkRebuilt):
                self._submit(self._gate.offer(RelayedChunk(outcome.chunk)))
                continue
            _log.warning("%s/%s: %s", exp.device_id, exp.stream, outcome)
            if isinstance(outcome, ChunkMissed):
                begun = self._recorder.cursor.seq is not None
                self._submit(self._gate.offer(MissedSpan(outcome, begun)))
        await self.flush()

    # -- triggers ---------------------------------------------------------------------------

    async def on_site_event(self, event: m.EventItem) -> None:
        """A site event: motion on this camera and input changes trigger the rule."""
        kind, device, at_ns = event.kind, event.device_id, event.at_ns
        if kind in ("motion_started", "motion_ended"):
            if device != self.expectation.device_id:
                return
            if kind == "motion_started":
                await self.trigger(TriggerKind.MOTION, at_ns, source=device)
            else:
                self.end_trigger(TriggerKind.MOTION, at_ns, source=device)
        elif kind in ("input_active", "input_inactive"):
            if self._trigger_inputs is not None and device not in self._trigger_inputs:
                return
            if kind == "input_active":
                await self.trigger(TriggerKind.EVENT, at_ns, source=device)
            else:
                self.end_trigger(TriggerKind.EVENT, at_ns, source=device)

    async def trigger(
        self, kind: TriggerKind, start_ns: int, end_ns: int | None = None, *, source: str = ""
    ) -> None:
        """Open (end_ns None) or add a recording window; returns once the chunks it
        releases (the pre-buffer) are stored."""
        self._submit(self._gate.trigger(kind, start_ns, end_ns, source=source))
        await self.flush()

    def end_trigger(self, kind: TriggerKind, end_ns: int, *, source: str = "") -> None:
        self._gate.end_trigger(kind, end_ns, source=source)

    async def manual_start(self, at_ns: int | None = None) -> None:
        """An operator starts recording (now: the newest relayed packet's time)."""
        await self.trigger(TriggerKind.MANUAL, self.stream_now_ns() if at_ns is None else at_ns)

    def manual_stop(self, at_ns: int | None = None) -> None:
        """An operator stops recording; the post-buffer still applies."""
        self.end_trigger(TriggerKind.MANUAL, self.stream_now_ns() if at_ns is None else at_ns)

    def stream_now_ns(self) -> int:
        """The newest relayed packet's wall time (the site's clock, what a viewer sees now);
        the central's clock before any packet came."""
        newest = self._recorder.newest_wall_ns
        return self._clock.now_ns() if newest is None else newest

    # -- reporting --------------------------------------------------------------------------

    @property
    def status(self) -> RelayRecordingStatus:
        counters = self._recorder.counters
        return RelayRecordingStatus(
            chunks_stored=self._stored,
            chunks_already_stored=self._already_stored,
            chunks_missed=counters.chunks_missed,
            chunks_refused=counters.chunks_refused,
            chunks_not_wanted=self._gate.stats.skipped,
            chunks_pre_buffered=self._gate.stats.buffered,
            chunks_failed=self._failed,
            unsealed_packets_dropped=counters.unsealed_packets_dropped,
            recent_problems=tuple(counters.recent_problems),
            notice=self._protocol_notice or self._recorder.unsealed_notice,
        )

    async def flush(self) -> None:
        """Until every chunk released so far is stored."""
        await self._idle.wait()

    async def close(self, *, timeout_s: float = 10.0) -> None:
        """Store what waits (for at most `timeout_s`), then stop writing."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.flush()
        except TimeoutError:
            _log.warning("stopping with %d batches of chunks not stored", self._writes.qsize())
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        self._idle.set()

    # -- internals --------------------------------------------------------------------------

    def _submit(self, releases: list[GateRelease[GatedItem]]) -> None:
        """Queue the released chunks for the writer; hand the released holes to `on_missed`
        (a hole released with chunks after it is queued for retrieval before they are stored:
        the order does not matter to the store)."""
        chunks: list[GateRelease[RelayedChunk]] = []
        for release in releases:
            item = release.chunk
            if isinstance(item, RelayedChunk):
                chunks.append(GateRelease(item, release.discontinuity))
            elif item.begun and self._on_missed is not None:
                self._on_missed(item.missed)
        if not chunks:
            return
        self._idle.clear()
        self._writes.put_nowait(chunks)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="relay-writer")

    async def _write_queued(self) -> None:
        """Store what waits, in order, a batch at a time; ends when nothing waits. Not
        cancelled with the stream: chunks the site signed and the gate wanted are stored."""
        try:
            while not self._writes.empty():
                batch: list[GateRelease[RelayedChunk]] = []
                while not self._writes.empty():
                    batch.extend(self._writes.get_nowait())
                await self._store_released(batch)
        finally:
            if self._writes.empty():
                self._idle.set()

    async def _store_released(self, releases: list[GateRelease[RelayedChunk]]) -> None:
        """Store the chunks in order, through the sink (rebuilt chunks had their payload
        hash checked against the header, and their signature and chain by accept_chunk)."""
        chunks = [release.chunk.chunk for release in releases]
        outcomes = await self._sink.put_verified(chunks)
        for chunk, outcome in zip(chunks, outcomes, strict=True):
            if isinstance(outcome, StoreError):
                self._failed += 1
                problem = f"chunk seq {chunk.header.seq} not stored: {outcome}"
                self._recorder.counters.recent_problems.append(problem)
                _log.error("%s/%s: %s", chunk.header.device_id, chunk.header.stream, problem)
            elif outcome:
                self._stored += 1
            else:
                self._already_stored += 1
