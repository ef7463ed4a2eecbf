"""Which cut chunks of a stream the agent stores: the recording gate applied to the chunker.

Every stream is chunked all the time (the live relay needs it anyway); a
`StreamRecordingGate` per stream then decides, chunk by chunk, what goes to the store. It is
fed each `CutChunk` in cut order with `offer`, and the stream's triggers (`trigger`,
`end_trigger`, `manual_start`, `manual_stop`). Both return the drafts to seal and store now,
in the order they must be sealed, each with the `discontinuity` flag to seal it with.

The decisions themselves (modes, weekly schedules, windows, the bounded pre-buffer, the gap
flag) are `shared/recording_gate.py`, which the central applies to the chunks it records
from a site's live stream; this module only carries the chunker's cuts through it. The
names of that module are re-exported here for the agent's configuration and recorders.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.chunker import CutChunk
from shared.chunk import ChunkDraft
from shared.recording_gate import (
    DAY_NAMES,
    DEFAULT_MAX_PRE_BUFFER_BYTES,
    DEFAULT_MAX_PRE_BUFFER_CHUNKS,
    DEFAULT_MAX_WINDOWS,
    DEFAULT_TRIGGER_KINDS,
    DEFAULT_TRIGGER_LATENCY_NS,
    GateRelease,
    GateStats,
    RecordingGate,
    RecordingMode,
    ScheduleError,
    ScheduleRange,
    TriggerKind,
    WeeklySchedule,
)

__all__ = [
    "DAY_NAMES",
    "DEFAULT_MAX_PRE_BUFFER_BYTES",
    "DEFAULT_MAX_PRE_BUFFER_CHUNKS",
    "DEFAULT_MAX_WINDOWS",
    "DEFAULT_TRIGGER_KINDS",
    "DEFAULT_TRIGGER_LATENCY_NS",
    "GateStats",
    "RecordingMode",
    "ScheduleError",
    "ScheduleRange",
    "StoredChunkPlan",
    "StreamRecordingGate",
    "TriggerKind",
    "WeeklySchedule",
]


@dataclass(frozen=True, slots=True)
class StoredChunkPlan:
    """A chunk the gate decided to store, with the `discontinuity` flag to seal it with."""

    draft: ChunkDraft
    discontinuity: bool


def _plans(releases: list[GateRelease[ChunkDraft]]) -> list[StoredChunkPlan]:
    return [StoredChunkPlan(r.chunk, r.discontinuity) for r in releases]


class StreamRecordingGate:
    """Decides which cut chunks of one stream are stored; see the module docstring.

    Not thread-safe; call it from the task that chunks the stream. Raises `ValueError` only
    for an unusable configuration.
    """

    def __init__(
        self,
        mode: RecordingMode,
        *,
        schedule: WeeklySchedule | None = None,
        pre_buffer_ns: int = 0,
        post_buffer_ns: int = 0,
        trigger_kinds: frozenset[TriggerKind] | None = None,
        trigger_latency_ns: int = DEFAULT_TRIGGER_LATENCY_NS,
        max_pre_buffer_bytes: int = DEFAULT_MAX_PRE_BUFFER_BYTES,
        max_pre_buffer_chunks: int = DEFAULT_MAX_PRE_BUFFER_CHUNKS,
        max_windows: int = DEFAULT_MAX_WINDOWS,
    ) -> None:
        self._gate: RecordingGate[ChunkDraft] = RecordingGate(
            mode,
            schedule=schedule,
            pre_buffer_ns=pre_buffer_ns,
            post_buffer_ns=post_buffer_ns,
            trigger_kinds=trigger_kinds,
            trigger_latency_ns=trigger_latency_ns,
            max_pre_buffer_bytes=max_pre_buffer_bytes,
            max_pre_buffer_chunks=max_pre_buffer_chunks,
            max_windows=max_windows,
        )

    @property
    def mode(self) -> RecordingMode:
        return self._gate.mode

    @property
    def stats(self) -> GateStats:
        return self._gate.stats

    def offer(self, cut: CutChunk) -> list[StoredChunkPlan]:
        """Take the next cut chunk of the stream; return what to store now, in order."""
        return _plans(self._gate.offer(cut.draft, after_discontinuity=cut.after_discontinuity))

    def trigger(
        self, kind: TriggerKind, start_ns: int, end_ns: int | None = None, *, source: str = ""
    ) -> list[StoredChunkPlan]:
        """Record around [start_ns, end_ns); None keeps it open until `end_trigger(kind)` with
        the same `source`. Returns the buffered chunks the new window releases, in order."""
        return _plans(self._gate.trigger(kind, start_ns, end_ns, source=source))

    def end_trigger(self, kind: TriggerKind, end_ns: int, *, source: str = "") -> None:
        """Close an open trigger at `end_ns`; the post-buffer still records after it."""
        self._gate.end_trigger(kind, end_ns, source=source)

    def manual_start(self, at_ns: int) -> list[StoredChunkPlan]:
        """An operator started recording (with the pre-buffer)."""
        return _plans(self._gate.manual_start(at_ns))

    def manual_stop(self, at_ns: int) -> None:
        """An operator stopped recording (the post-buffer still applies)."""
        self._gate.manual_stop(at_ns)
