"""Motion detection on a camera's low-quality stream, and the worker thread that runs it.

Theory of operation
-------------------
`MotionDetector` is synchronous and does no I/O. It decodes every packet (a decoder needs all
of them for its reference pictures) but analyses only about `analysis_fps` frames a second.
An analysed frame is shrunk by libswscale to a small grey grid (64 cells wide, the height
following the picture's shape), which both averages away sensor noise and keeps the pure
Python comparison cheap (a few thousand cells). Each grid is compared with the previous
analysed one:

1. the per-cell differences are shifted by their median, so a change of the whole picture's
   brightness (auto exposure, lights switched on) is not motion;
2. a cell changed when its shifted difference exceeds `cell_threshold` (luma levels, 0..255);
3. the analysis shows motion when the changed cells are at least `min_area` of the grid.

Hysteresis: motion starts after `start_after` consecutive analyses with motion (one noisy
frame is not enough) and is dated at the first of them; it ends once `hold_s` passed with no
analysis showing motion, and is dated at the last analysis that showed it. While motion is on,
each analysis also yields a `MotionRecord` (score and boxes) for the device's metadata stream.

A packet the decoder rejects is counted and skipped; the detector then waits for the next
keyframe and takes a new reference grid, so concealment artifacts are not reported as motion.
A gap of more than `max_compare_gap_s` (or a step back) in the packets' time also restarts the
comparison, and ends motion that was on (dated at the last analysis that showed it).

`MotionWorker` runs a detector in a thread. The event loop hands packets over with `submit`,
which never blocks: when the bounded queue is full the packet is dropped, and so is every
packet after it up to the next keyframe (those could not be decoded without the dropped one).
Results are delivered, in order, to an async callback on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import queue
import statistics
import threading
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import av
import msgpack

from shared.clock import NS_PER_S
from shared.media import RECORDS_CODEC, CodecConfig, MediaKind, MediaPacket

_log = logging.getLogger(__name__)

MOTION_RECORD_TAG: Final = "motion"
MOTION_RECORD_VERSION: Final = 1
MAX_MOTION_RECORD_BYTES: Final = 4096
MAX_BOXES: Final = 16

MOTION_RECORDS_CODEC = CodecConfig(
    kind=MediaKind.METADATA, codec=RECORDS_CODEC, time_base_num=1, time_base_den=NS_PER_S
)
"""Codec configuration of a motion metadata stream: one record per packet, pts in ns."""

_MAX_PENDING_TIMESTAMPS = 128
"""Packets in the decoder whose frames have not come out yet; decoders hold a handful."""


class MotionRecordError(ValueError):
    """Bytes that are not a valid motion record; the message names what is wrong."""


@dataclass(frozen=True, slots=True)
class MotionEvent:
    """Motion started or ended on a device, at `at_ns` (UTC ns, the time of the frames)."""

    device_id: str
    started: bool
    at_ns: int


@dataclass(frozen=True, slots=True)
class MotionBox:
    """A rectangle of the picture, each edge a fraction of width or height (0..1)."""

    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True, slots=True)
class MotionRecord:
    """One analysed frame while motion is on: the changed fraction and where it changed."""

    at_ns: int
    score: float  # fraction of the grid's cells that changed, 0..1
    boxes: tuple[MotionBox, ...]  # largest changed regions first

    def to_bytes(self) -> bytes:
        """The record as one msgpack value: [tag, version, at_ns, score, [[l, t, r, b], ...]]."""
        boxes = [[b.left, b.top, b.right, b.bottom] for b in self.boxes]
        value = [MOTION_RECORD_TAG, MOTION_RECORD_VERSION, self.at_ns, self.score, boxes]
        encoded: bytes = msgpack.packb(value, use_bin_type=True)
        return encoded

    @classmethod
    def from_bytes(cls, data: bytes) -> MotionRecord:
        """Parse and check `to_bytes` output; raises `MotionRecordError` naming the problem."""
        if len(data) > MAX_MOTION_RECORD_BYTES:
            raise MotionRecordError(
                f"motion record is {len(data)} bytes, over {MAX_MOTION_RECORD_BYTES}"
            )
        try:
            value = msgpack.unpackb(
                data, raw=False, strict_map_key=True, max_array_len=MAX_BOXES + 8
            )
        except (ValueError, msgpack.UnpackException) as exc:
            raise MotionRecordError(f"motion record is not valid msgpack: {exc}") from exc
        if not isinstance(value, list) or len(value) != 5:
            raise MotionRecordError("motion record must be a list of 5 fields")
        tag, version, at_ns, score, boxes = value
        if tag != MOTION_RECORD_TAG:
            raise MotionRecordError(f"motion record has tag {tag!r}, not {MOTION_RECORD_TAG!r}")
        if version != MOTION_RECORD_VERSION:
            raise MotionRecordError(f"motion record has unsupported version {version!r}")
        if not isinstance(at_ns, int) or isinstance(at_ns, bool) or at_ns < 0:
            raise MotionRecordError("motion record field at_ns must be a non-negative int")
        if not _is_fraction(score):
            raise MotionRecordError("motion record field score must be a number in 0..1")
        if not isinstance(boxes, list) or len(boxes) > MAX_BOXES:
            raise MotionRecordError(f"motion record field boxes must be a list of <= {MAX_BOXES}")
        parsed: list[MotionBox] = []
        for index, box in enumerate(boxes):
            if (
                not isinstance(box, list)
                or len(box) != 4
                or not all(_is_fraction(edge) for edge in box)
                or box[0] > box[2]
                or box[1] > box[3]
            ):
                raise MotionRecordError(f"motion record box {index} is malformed")
            parsed.append(MotionBox(*(float(edge) for edge in box)))
        return cls(at_ns, float(score), tuple(parsed))

    def to_packet(self, stream: str) -> MediaPacket:
        """A packet of a metadata stream configured with `MOTION_RECORDS_CODEC`."""
        return MediaPacket(
            stream=stream,
            pts=self.at_ns,
            dts=self.at_ns,
            duration=0,
            keyframe=True,
            data=self.to_bytes(),
            wall_ns=self.at_ns,
        )


def _is_fraction(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )


MotionOutput = MotionEvent | MotionRecord


@dataclass(frozen=True, slots=True)
class MotionStats:
    """Counters since the detector was made."""

    packets_in: int
    bad_packets: int  # rejected by the decoder
    packets_skipped: int  # waiting for a keyframe (at the start or after a bad packet)
    frames_decoded: int
    frames_analysed: int


class MotionDetector:
    """Finds motion in one video stream's packets; see the module docstring.

    Not thread-safe: use it from one thread (normally through `MotionWorker`). `push` never
    raises for bad media.
    """

    def __init__(
        self,
        codec: CodecConfig,
        *,
        device_id: str,
        analysis_fps: float = 4.0,
        grid_width: int = 64,
        cell_threshold: int = 15,
        min_area: float = 0.005,
        start_after: int = 2,
        hold_s: float = 3.0,
        max_compare_gap_s: float = 5.0,
        min_box_cells: int = 2,
        decoder_threads: int = 1,
    ) -> None:
        """`min_area` is a fraction of the grid (0.005 of 64x36 is 12 cells). One decoder
        thread by default: a site runs many of these on few cores."""
        if codec.kind is not MediaKind.VIDEO:
            raise ValueError(f"motion detection needs a video stream, got {codec.kind}")
        if analysis_fps <= 0 or hold_s < 0 or max_compare_gap_s <= 0:
            raise ValueError("analysis_fps and max_compare_gap_s must be positive, hold_s >= 0")
        if not 8 <= grid_width <= 256 or not 0 <= cell_threshold < 255:
            raise ValueError("grid_width must be 8..256 and cell_threshold 0..254")
        if not 0.0 < min_area <= 1.0 or start_after < 1 or min_box_cells < 1:
            raise ValueError("min_area must be in (0, 1], start_after and min_box_cells >= 1")
        self._device_id = device_id
        self._period_ns = round(NS_PER_S / analysis_fps)
        self._grid_width = grid_width
        self._cell_threshold = cell_threshold
        self._min_area = min_area
        self._start_after = start_after
        self._hold_ns = round(hold_s * NS_PER_S)
        self._max_gap_ns = round(max_compare_gap_s * NS_PER_S)
        self._min_box_cells = min_box_cells
        self._decoder = _open_decoder(codec, decoder_threads)
        self._finished = False

        self._wall_by_pts: OrderedDict[int, int] = OrderedDict()
        self._last_wall_ns = 0
        self._awaiting_keyframe = True
        self._next_analysis_ns: int | None = None
        self._last_analysis_ns: int | None = None
        self._reference: bytes | None = None
        self._grid_size: tuple[int, int] | None = None  # (width, height) of the reference

        self._run_length = 0  # consecutive analyses with motion
        self._run_start_ns = 0
        self._active = False
        self._last_motion_ns = 0

        self._packets_in = 0
        self._bad_packets = 0
        self._packets_skipped = 0
        self._frames_decoded = 0
        self._frames_analysed = 0

    @property
    def stats(self) -> MotionStats:
        return MotionStats(
            packets_in=self._packets_in,
            bad_packets=self._bad_packets,
            packets_skipped=self._packets_skipped,
            frames_decoded=self._frames_decoded,
            frames_analysed=self._frames_analysed,
        )

    @property
    def motion_active(self) -> bool:
        return self._active

    def push(self, packet: MediaPacket) -> list[MotionOutput]:
        """Decode one packet; return the events and records it produced, in time order."""
        if self._finished:
            return []
        self._packets_in += 1
        if self._awaiting_keyframe:
            if not packet.keyframe:
                self._packets_skipped += 1
                return []
            self._awaiting_keyframe = False
        self._last_wall_ns = packet.wall_ns
        self._wall_by_pts[packet.pts] = packet.wall_ns
        while len(self._wall_by_pts) > _MAX_PENDING_TIMESTAMPS:
            self._wall_by_pts.popitem(last=False)
        try:
            frames = _decode(self._decoder, packet)
        except av.FFmpegError:
            self._bad_packets += 1
            self._awaiting_keyframe = True
            self._reference = None
            return []
        outputs: list[MotionOutput] = []
        for frame in frames:
            outputs.extend(self._on_frame(frame))
        return outputs

    def finish(self) -> list[MotionOutput]:
        """Drain the decoder and end motion that is still on; later pushes are ignored."""
        if self._finished:
            return []
        outputs: list[MotionOutput] = []
        try:
            frames = _decode(self._decoder, None)
        except av.FFmpegError:
            frames = []
        for frame in frames:
            outputs.extend(self._on_frame(frame))
        self._finished = True
        if self._active:
            self._active = False
            outputs.append(MotionEvent(self._device_id, False, self._last_motion_ns))
        return outputs

    # -- internals ---------------------------------------------------------------------------

    def _on_frame(self, frame: av.VideoFrame) -> list[MotionOutput]:
        self._frames_decoded += 1
        pts = frame.pts
        wall_ns = self._wall_by_pts.pop(pts, None) if isinstance(pts, int) else None
        if wall_ns is None:
            wall_ns = self._last_wall_ns
        outputs: list[MotionOutput] = []
        last = self._last_analysis_ns
        if last is not None and not 0 <= wall_ns - last <= self._max_gap_ns:
            # The stream jumped (or the clock stepped): the old picture is no reference, and
            # motion seen before the gap says nothing about after it.
            self._reference = None
            self._next_analysis_ns = None
            self._run_length = 0
            if self._active:
                self._active = False
                outputs.append(MotionEvent(self._device_id, False, self._last_motion_ns))
        if self._next_analysis_ns is not None and wall_ns < self._next_analysis_ns:
            return outputs
        # Advance by whole periods so the average rate is analysis_fps whatever the frame rate.
        due = self._next_analysis_ns
        self._next_analysis_ns = (
            wall_ns + self._period_ns
            if due is None or wall_ns >= due + self._period_ns
            else due + self._period_ns
        )
        self._last_analysis_ns = wall_ns
        self._frames_analysed += 1
        grid, size = _luma_grid(frame, self._grid_width)
        reference, self._reference = self._reference, grid
        if reference is None or size != self._grid_size:
            self._grid_size = size
            changed = None
        else:
            changed = self._changed_cells(reference, grid)
        outputs.extend(self._update(wall_ns, changed))
        return outputs

    def _changed_cells(self, reference: bytes, grid: bytes) -> list[bool]:
        diffs = [now - before for now, before in zip(grid, reference, strict=True)]
        shift = statistics.median_low(diffs)
        threshold = self._cell_threshold
        return [abs(d - shift) > threshold for d in diffs]

    def _update(self, wall_ns: int, changed: list[bool] | None) -> list[MotionOutput]:
        outputs: list[MotionOutput] = []
        score = sum(changed) / len(changed) if changed else 0.0
        if changed is not None and score >= self._min_area:
            if self._run_length == 0:
                self._run_start_ns = wall_ns
            self._run_length += 1
            self._last_motion_ns = wall_ns
            if not self._active and self._run_length >= self._start_after:
                self._active = True
                outputs.append(MotionEvent(self._device_id, True, self._run_start_ns))
        else:
            self._run_length = 0
            if self._active and wall_ns - self._last_motion_ns >= self._hold_ns:
                self._active = False
                outputs.append(MotionEvent(self._device_id, False, self._last_motion_ns))
        if self._active:
            boxes = self._boxes(changed) if changed else ()
            outputs.append(MotionRecord(wall_ns, round(score, 4), boxes))
        return outputs

    def _boxes(self, changed: list[bool]) -> tuple[MotionBox, ...]:
        assert self._grid_size is not None
        width, height = self._grid_size
        seen = [False] * len(changed)
        found: list[tuple[int, MotionBox]] = []
        for start, is_changed in enumerate(changed):
            if not is_changed or seen[start]:
                continue
            # Flood-fill one 8-connected region of changed cells.
            seen[start] = True
            stack = [start]
            cells = 0
            left, top, right, bottom = width, height, -1, -1
            while stack:
                cell = stack.pop()
                cells += 1
                y, x = divmod(cell, width)
                left, right = min(left, x), max(right, x)
                top, bottom = min(top, y), max(bottom, y)
                for ny in (y - 1, y, y + 1):
                    if not 0 <= ny < height:
                        continue
                    for nx in (x - 1, x, x + 1):
                        neighbour = ny * width + nx
                        if 0 <= nx < width and changed[neighbour] and not seen[neighbour]:
                            seen[neighbour] = True
                            stack.append(neighbour)
            if cells >= self._min_box_cells:
                box = MotionBox(
                    round(left / width, 4),
                    round(top / height, 4),
                    round((right + 1) / width, 4),
                    round((bottom + 1) / height, 4),
                )
                found.append((cells, box))
        found.sort(key=lambda item: -item[0])
        return tuple(box for _, box in found[:MAX_BOXES])


# -- the PyAV boundary ------------------------------------------------------------------------


def _open_decoder(codec: CodecConfig, threads: int) -> av.VideoCodecContext:
    decoder = av.CodecContext.create(codec.codec, "r")
    if not isinstance(decoder, av.VideoCodecContext):
        raise ValueError(f"codec {codec.codec!r} is not a video decoder")
    if codec.extradata:
        decoder.extradata = codec.extradata
    decoder.thread_count = threads
    return decoder


def _decode(decoder: av.VideoCodecContext, packet: MediaPacket | None) -> list[av.VideoFrame]:
    if packet is None:
        return decoder.decode(None)
    av_packet = av.Packet(packet.data)
    av_packet.pts = packet.pts
    av_packet.dts = packet.dts
    return decoder.decode(av_packet)


def _luma_grid(frame: av.VideoFrame, grid_width: int) -> tuple[bytes, tuple[int, int]]:
    """The frame as a small grey grid, row by row with no padding, and its (width, height)."""
    grid_height = max(4, round(grid_width * frame.height / max(1, frame.width)))
    # AREA averages every source pixel into its cell: that is the noise filtering we want.
    small = frame.reformat(
        width=grid_width, height=grid_height, format="gray", interpolation="AREA"
    )
    plane = small.planes[0]
    stride = plane.line_size
    raw = bytes(plane)
    if stride == grid_width:
        return raw[: grid_width * grid_height], (grid_width, grid_height)
    rows = (raw[row * stride : row * stride + grid_width] for row in range(grid_height))
    return b"".join(rows), (grid_width, grid_height)


# -- the worker ------------------------------------------------------------------------------

ResultCallback = Callable[[MotionOutput], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MotionWorkerStats:
    """Counters since the worker was made."""

    submitted: int
    dropped_packets: int  # queue full, or waiting for a keyframe after that
    dropped_records: int  # records not delivered because the callback fell far behind
    detector_errors: int  # unexpected exceptions inside the detector (a bug; logged)
    callback_errors: int  # exceptions raised by the callback (logged)


class _Stop:
    """Marker that tells the worker thread to finish."""


_STOP: Final = _Stop()


class MotionWorker:
    """Runs a `MotionDetector` in its own thread, fed from the event loop.

    Use `async with MotionWorker(...)` or `start()` (on the loop) and `await stop()`. `stop`
    lets the thread analyse what is queued, ends motion that is still on (delivering the
    `ended` event), delivers every pending result, and joins the thread.
    """

    def __init__(
        self,
        detector: MotionDetector,
        on_result: ResultCallback,
        *,
        max_queued_packets: int = 64,
        max_pending_results: int = 1024,
        name: str = "motion",
    ) -> None:
        if max_queued_packets <= 0 or max_pending_results <= 0:
            raise ValueError("queue limits must be positive")
        self._detector = detector
        self._on_result = on_result
        self._name = name
        self._packets: queue.Queue[MediaPacket | _Stop] = queue.Queue(max_queued_packets)
        self._max_pending = max_pending_results
        self._pending: deque[MotionOutput] = deque()
        self._wakeup = asyncio.Event()
        self._thread_done = False
        self._accepting = False
        self._dropping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._consumer: asyncio.Task[None] | None = None

        self._submitted = 0
        self._dropped_packets = 0
        self._dropped_records = 0
        self._detector_errors = 0
        self._callback_errors = 0

    @property
    def stats(self) -> MotionWorkerStats:
        return MotionWorkerStats(
            submitted=self._submitted,
            dropped_packets=self._dropped_packets,
            dropped_records=self._dropped_records,
            detector_errors=self._detector_errors,
            callback_errors=self._callback_errors,
        )

    def start(self) -> None:
        """Start the thread and the delivery task; call it from the running event loop."""
        if self._loop is not None:
            raise RuntimeError("a motion worker starts once")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._accepting = True
        self._thread.start()
        self._consumer = self._loop.create_task(self._deliver_results(), name=self._name)

    def submit(self, packet: MediaPacket) -> bool:
        """Queue a packet for analysis without blocking; False when it was dropped."""
        if not self._accepting:
            return False
        self._submitted += 1
        if self._dropping and not packet.keyframe:
            self._dropped_packets += 1
            return False
        try:
            self._packets.put_nowait(packet)
        except queue.Full:
            # The packets after this one reference it: drop up to the next keyframe.
            self._dropping = True
            self._dropped_packets += 1
            return False
        self._dropping = False
        return True

    async def stop(self) -> None:
        """Finish the queued work, deliver all results, and join the thread; idempotent."""
        if self._thread is None or self._consumer is None:
            return
        if self._accepting:
            self._accepting = False
            await asyncio.to_thread(self._put_stop)
        await self._consumer
        await asyncio.to_thread(self._thread.join)

    def _put_stop(self) -> None:
        # Runs in a helper thread: the queue may be full until the worker takes packets out,
        # and a worker that died can take nothing out, so never wait on a dead thread.
        assert self._thread is not None
        while self._thread.is_alive():
            try:
                self._packets.put(_STOP, timeout=0.1)
            except queue.Full:
                continue
            return

    async def __aenter__(self) -> MotionWorker:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- worker thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                item = self._packets.get()
                if isinstance(item, _Stop):
                    break
                self._send(self._analyse(item))
            self._send(self._finish())
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._call_on_loop(self._on_thread_done)

    def _analyse(self, packet: MediaPacket) -> list[MotionOutput]:
        try:
            return self._detector.push(packet)
        except Exception:
            # push never raises for bad media; this is a bug, and the stream must go on.
            self._detector_errors += 1
            _log.exception("motion detector failed on a packet of %s", packet.stream)
            return []

    def _finish(self) -> list[MotionOutput]:
        try:
            return self._detector.finish()
        except Exception:
            self._detector_errors += 1
            _log.exception("motion detector failed to finish")
            return []

    def _send(self, results: list[MotionOutput]) -> None:
        if results:
            self._call_on_loop(self._on_results, results)

    def _call_on_loop(self, callback: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(callback, *args)

    # -- event loop side ---------------------------------------------------------------------

    def _on_results(self, results: list[MotionOutput]) -> None:
        for result in results:
            # Events are never dropped (start and end must pair up); records are the
            # expendable detail when the callback cannot keep up.
            if isinstance(result, MotionRecord) and len(self._pending) >= self._max_pending:
                self._dropped_records += 1
                continue
            self._pending.append(result)
        self._wakeup.set()

    def _on_thread_done(self) -> None:
        self._thread_done = True
        self._wakeup.set()

    async def _deliver_results(self) -> None:
        while True:
            while self._pending:
                result = self._pending.popleft()
                try:
                    await self._on_result(result)
                except Exception:
                    self._callback_errors += 1
                    _log.exception("motion result callback failed")
            if self._thread_done:
                return
            self._wakeup.clear()
            await self._wakeup.wait()
