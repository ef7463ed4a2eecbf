"""The camera supervisor: reconnection with backoff, lost/restored events, isolation."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.camera_supervisor import CameraSupervisor
from agent.sources.base import SourceUnavailable
from agent.sources.rtsp import RtspCamera
from agent.system_events import SystemEvent, SystemEventKind
from shared.backoff import BackoffPolicy
from shared.clock import ManualClock, SystemClock
from shared.media import CodecConfig, MediaKind, MediaPacket
from tests.rtsp_server import RtspServerProcess

CONFIG = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000, 16, 16, extradata=b"\x00\x00\x00\x01g")
POLICY = BackoffPolicy(initial_s=1.0, max_s=60.0, multiplier=2.0, jitter=0.25, stable_after_s=30)
LOST = SystemEventKind.CAMERA_LOST
RESTORED = SystemEventKind.CAMERA_RESTORED


class RecordingClock(ManualClock):
    """A manual clock that remembers how long each sleep was."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []
        self.slept = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.slept.set()
        await super().sleep(seconds)


@dataclass(frozen=True, kw_only=True)
class Session:
    """One connection of a scripted camera: refused, or some packets then a failure."""

    open_error: str | None = None
    packets: int = 0
    seconds_per_packet: float = 0.04


class ScriptedSource:
    """A camera following a script of sessions; the last one repeats."""

    def __init__(self, clock: ManualClock, sessions: list[Session]) -> None:
        self._clock = clock
        self._sessions = sessions
        self._current = sessions[0]
        self._remaining = 0
        self._pts = 0
        self.opens = 0
        self.closes = 0

    def describe(self) -> str:
        return "scripted camera"

    def set_live_watched(self, watched: bool) -> None:
        self.live_watched = watched

    async def open(self) -> Mapping[str, CodecConfig]:
        self._current = self._sessions[min(self.opens, len(self._sessions) - 1)]
        self.opens += 1
        if self._current.open_error is not None:
            raise SourceUnavailable(self._current.open_error)
        self._remaining = self._current.packets
        return {"hq": CONFIG}

    async def read(self) -> MediaPacket:
        await asyncio.sleep(0)
        if self._remaining == 0:
            raise SourceUnavailable("the camera closed the stream")
        self._remaining -= 1
        self._clock.advance(self._current.seconds_per_packet)
        self._pts += 3_600
        return MediaPacket("hq", self._pts, self._pts, 3_600, True, b"x", self._clock.now_ns())

    async def read_batch(self) -> list[MediaPacket]:
        return [await self.read()]

    async def close(self) -> None:
        self.closes += 1


class Recorder:
    """Collects what the supervisor hands out; `wait_for` blocks until a condition holds."""

    def __init__(self) -> None:
        self.packets: list[MediaPacket] = []
        self.events: list[SystemEvent] = []
        self._changed = asyncio.Event()

    async def on_packet(self, packet: MediaPacket) -> None:
        self.packets.append(packet)
        self._changed.set()

    def on_event(self, event: SystemEvent) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, condition: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


def supervisor_for(
    source: ScriptedSource | RtspCamera,
    recorder: Recorder,
    clock: ManualClock | SystemClock,
    *,
    backoff: BackoffPolicy = POLICY,
    seed: int = 7,
) -> CameraSupervisor:
    return CameraSupervisor(
        source,
        device_id="cam-1",
        on_packet=recorder.on_packet,
        on_event=recorder.on_event,
        clock=clock,
        rng=random.Random(seed),
        backoff=backoff,
    )


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_lost_once_then_restored_with_growing_jittered_backoff() -> None:
    clock = RecordingClock()
    refused = Session(open_error="connection refused")
    source = ScriptedSource(
        clock, [Session(packets=3), refused, refused, refused, Session(packets=10**9)]
    )
    recorder = Recorder()
    task = asyncio.create_task(supervisor_for(source, recorder, clock).run())
    await recorder.wait_for(lambda: len(recorder.packets) >= 5, timeout_s=5)
    await stop(task)

    assert [(e.kind, e.device_id, e.detail) for e in recorder.events] == [
        (LOST, "cam-1", "the camera closed the stream"),
        (RESTORED, "cam-1", "scripted camera"),
    ]
    expected_rng = random.Random(7)
    assert clock.sleeps == [POLICY.delay_s(attempt, expected_rng) for attempt in range(4)]
    for attempt, delay in enumerate(clock.sleeps):
        assert 2**attempt <= delay <= 1.25 * 2**attempt
    assert recorder.events[1].at_ns > recorder.events[0].at_ns
    assert source.closes == source.opens  # every session, failed or not, was closed


async def test_a_stable_session_resets_the_backoff() -> None:
    clock = RecordingClock()
    refused = Session(open_error="no route to host")
    long_session = Session(packets=40, seconds_per_packet=1.0)  # 40 s: longer than 30 s
    source = ScriptedSource(
        clock, [refused, refused, long_session, refused, Session(packets=10**9)]
    )
    recorder = Recorder()
    task = asyncio.create_task(supervisor_for(source, recorder, clock).run())
    await recorder.wait_for(lambda: len(recorder.packets) >= 41, timeout_s=5)
    await stop(task)

    assert [e.kind for e in recorder.events] == [LOST, RESTORED, LOST, RESTORED]
    assert len(clock.sleeps) == 4
    assert 2 <= clock.sleeps[1] <= 2.5  # the second refusal waited longer
    assert 1 <= clock.sleeps[2] <= 1.25  # after the stable session: back to the start


async def test_backoff_is_capped() -> None:
    clock = RecordingClock()
    source = ScriptedSource(clock, [Session(open_error="down")])
    recorder = Recorder()
    policy = BackoffPolicy(initial_s=1.0, max_s=8.0, jitter=0.5)
    task = asyncio.create_task(supervisor_for(source, recorder, clock, backoff=policy).run())
    while len(clock.sleeps) < 12:
        clock.slept.clear()
        await clock.slept.wait()
    await stop(task)
    assert max(clock.sleeps) == 8.0
    assert [e.kind for e in recorder.events] == [LOST]  # once, not per attempt


async def test_one_failing_camera_does_not_hold_up_another() -> None:
    broken_clock, good_clock = RecordingClock(), RecordingClock()
    broken = ScriptedSource(broken_clock, [Session(open_error="unplugged")])
    good = ScriptedSource(good_clock, [Session(packets=10**9)])
    broken_events, good_packets = Recorder(), Recorder()
    tasks = [
        asyncio.create_task(supervisor_for(broken, broken_events, broken_clock).run()),
        asyncio.create_task(supervisor_for(good, good_packets, good_clock).run()),
    ]
    await good_packets.wait_for(lambda: len(good_packets.packets) >= 200, timeout_s=5)
    for task in tasks:
        await stop(task)
    assert good_packets.events == []
    assert [e.kind for e in broken_events.events] == [LOST]


async def test_cancelling_closes_the_source() -> None:
    clock = RecordingClock()
    source = ScriptedSource(clock, [Session(packets=10**9)])
    recorder = Recorder()
    task = asyncio.create_task(supervisor_for(source, recorder, clock).run())
    await recorder.wait_for(lambda: len(recorder.packets) >= 3, timeout_s=5)
    await stop(task)
    assert (source.opens, source.closes) == (1, 1)


async def test_a_callback_error_is_not_a_camera_failure_it_propagates() -> None:
    clock = RecordingClock()
    source = ScriptedSource(clock, [Session(packets=10**9)])

    async def broken_recorder(packet: MediaPacket) -> None:
        raise OSError("disk full")

    supervisor = CameraSupervisor(
        source,
        device_id="cam-1",
        on_packet=broken_recorder,
        on_event=lambda event: None,
        clock=clock,
        rng=random.Random(1),
    )
    with pytest.raises(OSError, match="disk full"):
        await supervisor.run()
    assert source.closes == 1


class BuggySource(ScriptedSource):
    async def read(self) -> MediaPacket:
        raise RuntimeError("rtsp://admin:hunter2@cam/x broke")


async def test_a_buggy_source_is_retried_and_reported_without_its_message() -> None:
    clock = RecordingClock()
    source = BuggySource(clock, [Session(packets=1)])
    recorder = Recorder()
    task = asyncio.create_task(supervisor_for(source, recorder, clock).run())
    while len(clock.sleeps) < 3:  # three failed sessions, three waits
        clock.slept.clear()
        await clock.slept.wait()
    await stop(task)
    assert [(e.kind, e.detail) for e in recorder.events] == [(LOST, "source error (RuntimeError)")]


@given(
    attempt=st.integers(min_value=0, max_value=10_000),
    seed=st.integers(min_value=0, max_value=2**32),
    initial=st.floats(min_value=0.01, max_value=10),
    spread=st.floats(min_value=1, max_value=100),
)
def test_every_delay_lies_between_initial_and_max(
    attempt: int, seed: int, initial: float, spread: float
) -> None:
    policy = BackoffPolicy(initial_s=initial, max_s=initial * spread)
    delay = policy.delay_s(attempt, random.Random(seed))
    assert policy.initial_s <= delay <= policy.max_s


@pytest.mark.parametrize(
    "kwargs",
    [{"initial_s": 0.0}, {"initial_s": 5.0, "max_s": 1.0}, {"multiplier": 0.5}, {"jitter": 2.0}],
)
def test_nonsense_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need"):
        BackoffPolicy(**kwargs)


@pytest.mark.rtsp
@pytest.mark.parametrize("reader", ["ffmpeg", "in_process"])
async def test_rtsp_camera_lost_when_the_server_dies_and_restored_when_it_returns(
    rtsp_server: RtspServerProcess,
    reader: str,
) -> None:
    camera = RtspCamera(
        rtsp_server.url("/hq"),
        rtsp_server.url("/lq"),
        clock=SystemClock(),
        open_timeout_s=5,
        read_timeout_s=3,
        reader=reader,
    )
    recorder = Recorder()
    fast = BackoffPolicy(initial_s=0.2, max_s=1.0, stable_after_s=5)
    supervisor = supervisor_for(camera, recorder, SystemClock(), backoff=fast)
    task = asyncio.create_task(supervisor.run())
    try:
        await recorder.wait_for(lambda: len(recorder.packets) >= 10, timeout_s=20)
        assert supervisor.connected
        rtsp_server.stop()
        await recorder.wait_for(lambda: len(recorder.events) >= 1, timeout_s=10)
        assert not supervisor.connected
        received = len(recorder.packets)
        rtsp_server.start()  # the same port, as a rebooted camera
        await recorder.wait_for(lambda: len(recorder.events) >= 2, timeout_s=20)
        await recorder.wait_for(lambda: len(recorder.packets) >= received + 10, timeout_s=10)
    finally:
        await stop(task)
    assert [e.kind for e in recorder.events] == [LOST, RESTORED]
    assert recorder.events[0].detail.startswith("hq rtsp://127.0.0.1") or recorder.events[
        0
    ].detail.startswith("lq rtsp://127.0.0.1")
