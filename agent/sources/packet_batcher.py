"""Gathers a demuxing thread's packets and hands them to the event loop in batches.

Why: a thread that demuxes a camera runs a few Python lines per packet between two reads
inside FFmpeg, and those lines run with cold caches: building the packet, placing it on
the wall clock and queueing it cost several times what the same lines cost run back to
back (docs/benchmarks.md, "Agent CPU per recorded stream"). So the thread only notes each
packet's fields and its arrival time, and every so often turns the whole batch into
`MediaPacket`s in one go and hands it over with one `put_batch`.

A batch goes when the hand-off's rationing interval (`ThreadHandoff.min_wake_interval_s`:
1 s, or 20 ms while someone watches live) has passed since the last one, when
`max_batch` packets wait, or when the source flushes at its end. Every packet is mapped to
the wall clock with its own arrival time, so batching changes when packets reach the loop,
never their times. A change of the interval applies from the next batch on.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from agent.sources.handoff import ThreadHandoff
from agent.sources.timing import WallClockMapper
from shared.clock import NS_PER_S, Clock
from shared.media import MediaPacket


@dataclass(frozen=True, slots=True)
class StreamTimeline:
    """One delivered stream: its name, its time base, and the mapper of its timeline."""

    stream: str
    time_base: Fraction
    mapper: WallClockMapper


_Noted = tuple[StreamTimeline, int, int, int, bool, bytes, int]
"""timeline, pts, dts, duration, keyframe, data, arrival (ns)."""


class PacketBatcher:
    """Batches one worker thread's packets into a `ThreadHandoff` (use from that thread)."""

    def __init__(
        self,
        handoff: ThreadHandoff[MediaPacket],
        clock: Clock,
        *,
        max_batch: int,
        flush_when_due: bool = True,
    ) -> None:
        """`flush_when_due` False: only `max_batch` and the caller's `flush` hand batches
        over (for a thread that reads in bursts and flushes after each)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._flush_when_due = flush_when_due
        self._handoff = handoff
        self._clock = clock
        self._max_batch = max_batch
        self._noted: list[_Noted] = []
        self._last_ns = clock.now_ns()
        self._due_ns = self._last_ns  # the first packet goes at once

    def add(  # noqa: PLR0917 - called per packet: positional on purpose
        self,
        timeline: StreamTimeline,
        pts: int,
        dts: int,
        duration: int,
        keyframe: bool,
        data: bytes,
    ) -> bool:
        """Note one packet; hand the batch over if it is due. False once the hand-off closed."""
        now_ns = self._clock.now_ns()
        noted = self._noted
        noted.append((timeline, pts, dts, duration, keyframe, data, now_ns))
        if len(noted) < self._max_batch and (
            not self._flush_when_due
            # A wall clock stepped backwards counts as due, so a batch never waits for it.
            or (now_ns < self._due_ns and now_ns >= self._last_ns)
        ):
            return True
        return self.flush()

    def flush(self) -> bool:
        """Hand over what is noted (nothing to do if empty). False once the hand-off closed."""
        noted = self._noted
        if not noted:
            return True
        self._noted = []
        packets = [
            MediaPacket(
                timeline.stream,
                pts,
                dts,
                duration,
                keyframe,
                data,
                timeline.mapper.wall_ns(pts, timeline.time_base, arrival_ns),
            )
            for timeline, pts, dts, duration, keyframe, data, arrival_ns in noted
        ]
        now_ns = self._clock.now_ns()
        self._last_ns = now_ns
        self._due_ns = now_ns + round(self._handoff.min_wake_interval_s * NS_PER_S)
        return self._handoff.put_batch(packets)
