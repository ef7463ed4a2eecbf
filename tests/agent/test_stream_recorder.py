"""A stream recorder stopped while a chunk is being written keeps its chain consistent."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from agent.chain_sealer import ChainSealer
from agent.event_hub import EventHub
from agent.recording_policy import RecordingMode, StreamRecordingGate
from agent.store_writer import StoreWriter
from agent.stream_recorder import StreamRecorder
from shared.chain_verification import verify_stream
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, SystemClock
from shared.media import CodecConfig, MediaKind, MediaPacket
from shared.signing import SiteSigner
from shared.store.chunk_store import ChunkStore

CODEC = CodecConfig(MediaKind.AUDIO, "aac", 1, 16000, sample_rate=16000, channels=1)


class GatedStore(ChunkStore):
    """The real store, whose writes wait until the test lets them through."""

    write_allowed: threading.Event
    write_started: threading.Event

    def put(self, chunk: SignedChunk, *, payload_hash_checked: bool = False) -> bool:
        self.write_started.set()
        assert self.write_allowed.wait(10)
        return super().put(chunk, payload_hash_checked=payload_hash_checked)


def _packet(second: int) -> MediaPacket:
    at_ns = 1_700_000_000 * NS_PER_S + second * NS_PER_S
    return MediaPacket("audio", second * 16000, second * 16000, 16000, True, b"a" * 100, at_ns)


async def test_cancelled_during_a_write_then_flushed_keeps_the_chain(tmp_path: Path) -> None:
    clock = SystemClock()
    store = GatedStore.open(
        tmp_path / "store",
        quota_bytes=64 << 20,
        hold_budget_bytes=0,
        clock=clock,
        home_site_id="site-0001",
    )
    store.write_allowed, store.write_started = threading.Event(), threading.Event()
    writer = StoreWriter(store)
    signer = SiteSigner.generate()
    recorder = StreamRecorder(
        device_id="mic",
        stream="audio",
        gate=StreamRecordingGate(RecordingMode.CONTINUOUS),
        sealer=ChainSealer(
            site_id="site-0001", device_id="mic", stream="audio", signer=signer, head=None
        ),
        writer=writer,
        events=EventHub(),
        clock=clock,
    )
    await recorder.set_codec(CODEC)

    async def feed() -> None:
        for second in range(3):  # the third packet completes the first chunk
            await recorder.push(_packet(second))

    feeding = asyncio.create_task(feed())
    await asyncio.to_thread(store.write_started.wait, 10)
    feeding.cancel()  # stop while chunk seq 0 is being written
    await asyncio.sleep(0.05)
    store.write_allowed.set()
    await asyncio.gather(feeding, return_exceptions=True)
    await recorder.flush()  # seals the chunk being cut: it must follow seq 0

    assert recorder.counters.chunks_failed == 0
    chunks = store.read_chunks("mic", "audio", 0, 2**63 - 1)
    assert [c.header.seq for c in chunks] == list(range(len(chunks)))
    assert len(chunks) >= 2
    report = verify_stream(
        chunks, public_key=signer.public_key, site_id="site-0001", device_id="mic", stream="audio"
    )
    assert report.ok, report.problems
    await asyncio.to_thread(writer.close)
    store.close()
