"""Builds the stream recorders of a site's devices, each continuing its chain from the store."""

from __future__ import annotations

from dataclasses import dataclass

from agent.chain_sealer import ChainHead, ChainSealer
from agent.event_hub import EventHub
from agent.recording_policy import RecordingMode, StreamRecordingGate, WeeklySchedule
from agent.store_writer import StoreWriter
from agent.stream_recorder import StreamRecorder
from shared.chunk import Signer
from shared.clock import NS_PER_S, Clock
from shared.live_relay import LiveRelay


@dataclass(frozen=True)
class RecorderContext:
    """What every stream recorder of the site shares."""

    site_id: str
    time_zone: str
    signer: Signer
    writer: StoreWriter
    events: EventHub
    clock: Clock
    live: LiveRelay | None = None  # packets for live viewers, before any recording decision

    def stream_recorder(
        self,
        device_id: str,
        stream: str,
        *,
        mode: RecordingMode,
        schedule: tuple[str, ...] = (),
        pre_buffer_s: float = 0.0,
        post_buffer_s: float = 0.0,
    ) -> StreamRecorder:
        """A recorder for (device_id, stream) whose chain continues the stored one."""
        head = self.writer.store.stream_head(device_id, stream)
        sealer = ChainSealer(
            site_id=self.site_id,
            device_id=device_id,
            stream=stream,
            signer=self.signer,
            head=None if head is None else ChainHead(head.seq, head.chunk_hash),
        )
        gate = StreamRecordingGate(
            mode,
            schedule=WeeklySchedule.parse(self.time_zone, schedule) if schedule else None,
            pre_buffer_ns=round(pre_buffer_s * NS_PER_S),
            post_buffer_ns=round(post_buffer_s * NS_PER_S),
        )
        return StreamRecorder(
            device_id=device_id,
            stream=stream,
            gate=gate,
            sealer=sealer,
            writer=self.writer,
            events=self.events,
            clock=self.clock,
        )
