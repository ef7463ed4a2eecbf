"""The motion worker: a detector in a thread, fed from the event loop without blocking it."""

from __future__ import annotations

import asyncio
import threading

from agent.motion import MotionDetector, MotionEvent, MotionOutput, MotionRecord, MotionWorker
from shared.media import CodecConfig, MediaPacket
from tests.recording.h264_samples import encode, moving_box, static


class Collector:
    def __init__(self) -> None:
        self.results: list[MotionOutput] = []
        self.threads: set[int] = set()

    async def __call__(self, result: MotionOutput) -> None:
        self.threads.add(threading.get_ident())
        self.results.append(result)

    @property
    def events(self) -> list[MotionEvent]:
        return [r for r in self.results if isinstance(r, MotionEvent)]


async def test_results_reach_the_loop_in_order_and_stop_ends_motion() -> None:
    clip = encode(static(10) + moving_box(30), fps=10, gop=10)
    collector = Collector()
    detector = MotionDetector(clip.codec, device_id="cam1")
    async with MotionWorker(detector, collector, max_queued_packets=len(clip.packets)) as worker:
        assert all(worker.submit(packet) for packet in clip.packets)
    # stop (on leaving the block) analysed everything queued and ended the open motion.
    assert [e.started for e in collector.events] == [True, False]
    assert isinstance(collector.results[0], MotionEvent)
    assert any(isinstance(r, MotionRecord) for r in collector.results)
    assert collector.threads == {threading.get_ident()}  # delivered on the loop's thread
    assert worker.stats.dropped_packets == 0
    assert worker.submit(clip.packets[0]) is False  # stopped
    await worker.stop()  # idempotent


class GatedDetector(MotionDetector):
    """A detector whose first packet waits for the test, so the queue fills up for sure."""

    def __init__(self, codec: CodecConfig, *, device_id: str) -> None:
        super().__init__(codec, device_id=device_id)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.three_done = threading.Event()

    def push(self, packet: MediaPacket) -> list[MotionOutput]:
        self.entered.set()
        self.release.wait(timeout=10)
        outputs = super().push(packet)
        if self.stats.packets_in >= 3:
            self.three_done.set()
        return outputs


async def test_a_full_queue_drops_until_the_next_keyframe() -> None:
    clip = encode(static(30), fps=10, gop=10)
    packets = clip.packets
    detector = GatedDetector(clip.codec, device_id="cam1")
    worker = MotionWorker(detector, Collector(), max_queued_packets=2)
    worker.start()
    assert worker.submit(packets[0])
    await asyncio.to_thread(detector.entered.wait, 10)  # the thread holds packet 0
    assert worker.submit(packets[1])
    assert worker.submit(packets[2])
    assert not worker.submit(packets[3])  # full
    detector.release.set()
    await asyncio.to_thread(detector.three_done.wait, 10)  # the thread drained the queue
    # Room again, but 4..9 need the dropped packet 3: they are dropped too.
    assert [worker.submit(p) for p in packets[4:10]] == [False] * 6
    assert worker.submit(packets[10])  # a keyframe resumes
    assert worker.submit(packets[11])
    await worker.stop()
    stats = worker.stats
    assert (stats.submitted, stats.dropped_packets) == (12, 7)
    assert detector.stats.bad_packets == 0


async def test_a_failing_callback_is_counted_and_delivery_goes_on() -> None:
    clip = encode(static(10) + moving_box(30), fps=10, gop=10)
    seen: list[MotionOutput] = []

    async def flaky(result: MotionOutput) -> None:
        seen.append(result)
        if len(seen) == 1:
            raise RuntimeError("storage hiccup")

    worker = MotionWorker(
        MotionDetector(clip.codec, device_id="cam1"), flaky, max_queued_packets=64
    )
    worker.start()
    for packet in clip.packets:
        worker.submit(packet)
        await asyncio.sleep(0)
    await worker.stop()
    assert worker.stats.callback_errors == 1
    assert [r.started for r in seen if isinstance(r, MotionEvent)] == [True, False]
