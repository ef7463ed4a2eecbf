"""Which chunks of a stream are stored: recording modes, weekly schedules and the gate.

Theory of operation
-------------------
A `RecordingGate` per stream decides, chunk by chunk, what goes to the store. It is fed
each chunk in stream order with `offer`, and the stream's triggers (`trigger`,
`end_trigger`, `manual_start`, `manual_stop`). Both return the chunks to store now, in
order. Time comes only from the chunks and the triggers themselves (UTC ns), never from a
clock, so the gate replays exactly in tests.

The gate is generic over what a chunk is: anything with `start_ns`, `end_ns` and
`payload_size`. The agent gates the chunker's drafts before it seals them
(`agent/recording_policy.py`); the central gates chunks the site already sealed, relayed
live (`central/relay_recording.py`), with the same modes, triggers and pre-buffer.

A trigger opens a window `[start_ns - pre_buffer_ns, end_ns + post_buffer_ns)` (open-ended
until `end_trigger` when `end_ns` is None). A chunk is wanted when it overlaps a window of a
kind the mode listens to, or always (continuous), or when it overlaps the weekly schedule
(schedule mode). Chunks that are not wanted wait in a bounded pre-buffer: the newest
`pre_buffer_ns + trigger_latency_ns` of the stream (the latency covers triggers that arrive
after the chunks they concern, such as motion found by a worker thread a second late). A new
trigger releases the buffered chunks its window overlaps.

Invariants:

1. A chunk is returned at most once, and returned chunks keep their offer order (the agent
   builds the hash chain in that order). A buffered chunk older than a chunk already
   returned is dropped, never returned late.
2. A returned chunk has `discontinuity=True` exactly when the chunk returned before it (by
   this gate) is not its immediate predecessor in the stream: chunks were skipped in between,
   the offer said `after_discontinuity`, or it is the first chunk this gate returns
   (whatever the store holds came from before this gate existed). The agent seals it as
   the declaration of a recording gap; the central, whose chunks are sealed already, has
   no use for it.
3. Memory is bounded: the pre-buffer by time, chunk count and bytes; windows by count.

Manual mode (used by the central) stores only inside operators' start/stop windows, with
the pre- and post-buffer; every other mode but relay-only and continuous also honours
manual triggers.

A weekly schedule follows the site's wall clock (its IANA time zone): a range runs from the
first instant the clock shows its start to the last instant it shows its end. So on the night
clocks change, "22:00-06:00" lasts 7 or 9 hours, and "sun 01:30-02:30" on the night they go
back covers both passes through the repeated hour. A time the clock skips (going forward) is
taken as if the clock had not jumped yet, an hour later in the new time: a range that falls in
the skipped hour is shifted or shortened, never lost ("02:15-02:45" runs 03:15-03:45).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.clock import NS_PER_S

NS_PER_MINUTE = 60 * NS_PER_S
MINUTES_PER_DAY = 24 * 60
NS_PER_DAY = MINUTES_PER_DAY * NS_PER_MINUTE
NS_PER_WEEK = 7 * NS_PER_DAY

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_SCHEDULE_RANGES = 64

DEFAULT_TRIGGER_LATENCY_NS = 2 * NS_PER_S
DEFAULT_MAX_PRE_BUFFER_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_PRE_BUFFER_CHUNKS = 256
DEFAULT_MAX_WINDOWS = 64


class RecordingMode(StrEnum):
    """What a stream's gate stores."""

    CONTINUOUS = "continuous"  # everything
    MOTION = "motion"  # around motion triggers
    SCHEDULE = "schedule"  # inside a weekly schedule
    EVENT = "event"  # around event triggers (inputs, analytics, operators)
    RELAY_ONLY = "relay_only"  # nothing: the stream is only relayed live
    MANUAL = "manual"  # only between an operator's start and stop (the central's rule)


class TriggerKind(StrEnum):
    """Where a trigger comes from."""

    MOTION = "motion"
    EVENT = "event"
    MANUAL = "manual"


DEFAULT_TRIGGER_KINDS: dict[RecordingMode, frozenset[TriggerKind]] = {
    RecordingMode.CONTINUOUS: frozenset(),
    RecordingMode.MOTION: frozenset({TriggerKind.MOTION, TriggerKind.MANUAL}),
    RecordingMode.SCHEDULE: frozenset({TriggerKind.MANUAL}),
    RecordingMode.EVENT: frozenset({TriggerKind.EVENT, TriggerKind.MANUAL}),
    RecordingMode.RELAY_ONLY: frozenset(),
    RecordingMode.MANUAL: frozenset({TriggerKind.MANUAL}),
}
"""Trigger kinds each mode listens to unless told otherwise. Manual recording works in every
mode that stores anything; relay-only never stores, whatever arrives."""


# -- weekly schedules ------------------------------------------------------------------------


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the bad value."""


_RANGE_RE = re.compile(r"^\s*(?P<days>\S+)\s+(?P<start>\S+?)\s*-\s*(?P<end>\S+)\s*$")
_TIME_RE = re.compile(r"^(?P<hour>\d{2}):(?P<minute>\d{2})$")


@dataclass(frozen=True, slots=True)
class ScheduleRange:
    """Local times `start_minute`..`end_minute` (minutes since midnight) on some weekdays.

    `days` holds the weekdays (Monday = 0) on which the range starts. When `end_minute` is not
    after `start_minute` the range crosses midnight and ends on the following day.
    """

    days: frozenset[int]
    start_minute: int  # 0..1439
    end_minute: int  # 1..1440 (1440 = the end of the day)

    def __post_init__(self) -> None:
        if not self.days or not all(0 <= day <= 6 for day in self.days):
            raise ScheduleError(f"schedule range days must be weekdays 0..6, got {self.days}")
        if not 0 <= self.start_minute < MINUTES_PER_DAY:
            raise ScheduleError(f"schedule range start minute {self.start_minute} is not 0..1439")
        if not 0 < self.end_minute <= MINUTES_PER_DAY:
            raise ScheduleError(f"schedule range end minute {self.end_minute} is not 1..1440")
        if self.start_minute == self.end_minute:
            raise ScheduleError(
                "schedule range starts and ends at the same time; use 00:00-24:00 for a whole day"
            )

    @property
    def crosses_midnight(self) -> bool:
        return self.end_minute <= self.start_minute

    @classmethod
    def parse(cls, text: str) -> ScheduleRange:
        """Parse '<days> <HH:MM>-<HH:MM>', days as 'mon-fri', 'sat,sun', 'fri-mon' or 'daily'.

        '22:00-06:00' crosses midnight; '24:00' is allowed as an end.
        """
        match = _RANGE_RE.match(text)
        if match is None:
            raise ScheduleError(
                f"schedule range {text!r}: expected '<days> <HH:MM>-<HH:MM>', "
                "such as 'mon-fri 08:00-18:00'"
            )
        days = _parse_days(text, match["days"])
        start = _parse_minute(text, match["start"], allow_end_of_day=False)
        end = _parse_minute(text, match["end"], allow_end_of_day=True)
        if start == end:
            raise ScheduleError(
                f"schedule range {text!r}: starts and ends at {match['start']}; "
                "use 00:00-24:00 for a whole day"
            )
        return cls(days, start, end)

    def occurrences_ns(self, zone: ZoneInfo, first: date, last: date) -> Iterator[tuple[int, int]]:
        """[start_ns, end_ns) in UTC of each occurrence starting on a local date in
        first..last; see the module docstring for how clock changes move the ends."""
        day = first
        while day <= last:
            if day.weekday() in self.days:
                end_day = day + timedelta(days=1) if self.crosses_midnight else day
                end_minute = self.end_minute
                if end_minute == MINUTES_PER_DAY:
                    end_day, end_minute = day + timedelta(days=1), 0
                start_ns = _local_to_utc_ns(zone, day, self.start_minute, last_reading=False)
                end_ns = _local_to_utc_ns(zone, end_day, end_minute, last_reading=True)
                if end_ns > start_ns:
                    yield start_ns, end_ns
            day += timedelta(days=1)


def _local_to_utc_ns(zone: ZoneInfo, day: date, minute: int, *, last_reading: bool) -> int:
    """The instant the clock of `zone` shows `minute` on `day`.

    A reading the clock shows twice (the hour repeated when clocks go back) gives its first
    instant, or its last when `last_reading`. A reading the clock skips (clocks go forward) is
    placed as if the clock had not jumped yet, which is after the jump: a range is shifted or
    shortened by the skipped hour, never lost.
    """
    naive = datetime.combine(day, time(minute // 60, minute % 60))
    first = naive.replace(tzinfo=zone, fold=0)
    first_utc = first.astimezone(UTC)
    if first_utc.astimezone(zone).replace(tzinfo=None) != naive:
        utc = first_utc  # skipped: fold=0 applies the offset from before the jump
    elif last_reading:
        utc = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    else:
        utc = first_utc
    return int(utc.timestamp()) * NS_PER_S


def _parse_days(text: str, spec: str) -> frozenset[int]:
    spec = spec.lower()
    if spec in ("daily", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in spec.split(","):
        first, sep, last = part.partition("-")
        first_day = _day_index(text, first)
        if not sep:
            days.add(first_day)
            continue
        last_day = _day_index(text, last)
        # A range such as 'fri-mon' wraps through the weekend.
        span = (last_day - first_day) % 7
        days.update((first_day + step) % 7 for step in range(span + 1))
    return frozenset(days)


def _day_index(text: str, name: str) -> int:
    try:
        return DAY_NAMES.index(name)
    except ValueError:
        raise ScheduleError(
            f"schedule range {text!r}: unknown day {name!r} (use {', '.join(DAY_NAMES)}, or daily)"
        ) from None


def _parse_minute(text: str, value: str, *, allow_end_of_day: bool) -> int:
    match = _TIME_RE.match(value)
    if match is not None:
        hour, minute = int(match["hour"]), int(match["minute"])
        if hour < 24 and minute < 60:
            return hour * 60 + minute
        if allow_end_of_day and hour == 24 and minute == 0:
            return MINUTES_PER_DAY
    limit = "24:00" if allow_end_of_day else "23:59"
    raise ScheduleError(f"schedule range {text!r}: bad time {value!r} (use HH:MM, 00:00..{limit})")


@dataclass(frozen=True, slots=True)
class WeeklySchedule:
    """Weekly ranges of local time in an IANA time zone; see the module docstring for DST."""

    time_zone: str
    ranges: tuple[ScheduleRange, ...]
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.ranges:
            raise ScheduleError("a schedule needs at least one range")
        if len(self.ranges) > MAX_SCHEDULE_RANGES:
            raise ScheduleError(
                f"a schedule has {len(self.ranges)} ranges, more than {MAX_SCHEDULE_RANGES}"
            )
        try:
            zone = ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            # ValueError: keys that are not zone names at all (absolute paths, '..').
            raise ScheduleError(f"unknown time zone {self.time_zone!r}") from None
        object.__setattr__(self, "_zone", zone)

    @classmethod
    def parse(cls, time_zone: str, ranges: Sequence[str]) -> WeeklySchedule:
        """Build a schedule from texts such as `["mon-fri 08:00-18:00", "sat 22:00-06:00"]`."""
        if isinstance(ranges, str):
            raise ScheduleError("schedule ranges must be a list of strings, not one string")
        return cls(time_zone, tuple(ScheduleRange.parse(text) for text in ranges))

    def contains(self, at_ns: int) -> bool:
        """Whether the instant `at_ns` (UTC ns) is inside the schedule."""
        return self.overlaps(at_ns, at_ns + 1)

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        """Whether any instant of [start_ns, end_ns) is inside the schedule (an empty interval
        counts as its start instant)."""
        end_ns = max(end_ns, start_ns + 1)
        if end_ns - start_ns >= NS_PER_WEEK + NS_PER_DAY:
            # Every range occurs within any week, even one stretched by a clock change; this
            # also bounds the work for long intervals.
            return True
        # An occurrence that overlaps started at most a day (plus a clock change) before the
        # interval, on a local date no later than the interval's last.
        first = self._local_date(start_ns) - timedelta(days=2)
        last = self._local_date(end_ns - 1)
        for schedule_range in self.ranges:
            for occurrence_start, occurrence_end in schedule_range.occurrences_ns(
                self._zone, first, last
            ):
                if occurrence_start < end_ns and occurrence_end > start_ns:
                    return True
        return False

    def _local_date(self, at_ns: int) -> date:
        return datetime.fromtimestamp(at_ns // NS_PER_S, tz=UTC).astimezone(self._zone).date()


# -- the gate --------------------------------------------------------------------------------


class GatedChunk(Protocol):
    """What the gate needs to know of a chunk: its span on the wall clock and its size."""

    @property
    def start_ns(self) -> int: ...

    @property
    def end_ns(self) -> int: ...

    @property
    def payload_size(self) -> int: ...


ChunkT = TypeVar("ChunkT", bound=GatedChunk)


@dataclass(frozen=True, slots=True)
class GateRelease(Generic[ChunkT]):
    """A chunk the gate decided to store, with whether a gap precedes it (invariant 2)."""

    chunk: ChunkT
    discontinuity: bool


@dataclass(frozen=True, slots=True)
class GateStats:
    """Counters since the gate was made."""

    offered: int
    stored: int
    skipped: int  # offered chunks that will never be stored (not wanted, or evicted)
    buffered: int  # chunks in the pre-buffer now
    buffered_bytes: int
    ignored_triggers: int  # triggers of kinds the mode does not listen to, or over the limit


@dataclass(frozen=True, slots=True)
class _Buffered(Generic[ChunkT]):
    ordinal: int
    chunk: ChunkT
    after_discontinuity: bool


@dataclass(frozen=True, slots=True)
class _Window:
    lo_ns: int
    hi_ns: int  # exclusive

    def overlaps(self, chunk: GatedChunk) -> bool:
        return _overlaps(chunk, self.lo_ns, self.hi_ns)


def _overlaps(chunk: GatedChunk, lo_ns: int, hi_ns: int | None) -> bool:
    end_ns = max(chunk.end_ns, chunk.start_ns + 1)  # an instant chunk still has a place
    return end_ns > lo_ns and (hi_ns is None or chunk.start_ns < hi_ns)


class RecordingGate(Generic[ChunkT]):
    """Decides which chunks of one stream are stored; see the module docstring.

    Not thread-safe; call it from the task that receives the stream. Raises `ValueError`
    only for an unusable configuration.
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
        if mode is RecordingMode.SCHEDULE and schedule is None:
            raise ValueError("schedule recording mode needs a schedule")
        if min(pre_buffer_ns, post_buffer_ns, trigger_latency_ns) < 0:
            raise ValueError("buffer lengths and trigger latency cannot be negative")
        if min(max_pre_buffer_bytes, max_pre_buffer_chunks, max_windows) <= 0:
            raise ValueError("pre-buffer and window limits must be positive")
        self._mode = mode
        self._schedule = schedule
        self._pre_buffer_ns = pre_buffer_ns
        self._post_buffer_ns = post_buffer_ns
        self._kinds = DEFAULT_TRIGGER_KINDS[mode] if trigger_kinds is None else trigger_kinds
        if mode in (RecordingMode.CONTINUOUS, RecordingMode.RELAY_ONLY):
            self._kinds = frozenset()  # nothing to add to "all" or to "none"
        self._retention_ns = pre_buffer_ns + trigger_latency_ns
        self._max_pre_buffer_bytes = max_pre_buffer_bytes
        self._max_pre_buffer_chunks = max_pre_buffer_chunks
        self._max_windows = max_windows

        self._buffer: deque[_Buffered[ChunkT]] = deque()
        self._buffer_bytes = 0
        self._open: dict[tuple[TriggerKind, str], int] = {}  # -> window lo_ns
        self._windows: list[_Window] = []  # closed windows, sorted by lo_ns, disjoint
        self._next_ordinal = 0
        self._last_stored_ordinal: int | None = None
        self._offered = 0
        self._stored = 0
        self._skipped = 0
        self._ignored_triggers = 0

    @property
    def mode(self) -> RecordingMode:
        return self._mode

    @property
    def stats(self) -> GateStats:
        return GateStats(
            offered=self._offered,
            stored=self._stored,
            skipped=self._skipped,
            buffered=len(self._buffer),
            buffered_bytes=self._buffer_bytes,
            ignored_triggers=self._ignored_triggers,
        )

    def offer(
        self, chunk: ChunkT, *, after_discontinuity: bool = False
    ) -> list[GateRelease[ChunkT]]:
        """Take the next chunk of the stream (`after_discontinuity`: something was lost just
        before it); return what to store now, in order."""
        ordinal = self._next_ordinal
        self._next_ordinal += 1
        self._offered += 1
        item = _Buffered(ordinal, chunk, after_discontinuity)
        self._prune_windows(chunk.start_ns)
        if self._wanted(chunk):
            # Buffered chunks are older than this one and were not wanted: storing them later
            # would break the order, so they go.
            self._drop_buffered(len(self._buffer))
            return [self._store(item)]
        if not self._kinds:
            self._skipped += 1  # no trigger can ever want it
            return []
        self._buffer.append(item)
        self._buffer_bytes += chunk.payload_size
        self._evict(newest_end_ns=chunk.end_ns)
        return []

    def trigger(
        self, kind: TriggerKind, start_ns: int, end_ns: int | None = None, *, source: str = ""
    ) -> list[GateRelease[ChunkT]]:
        """Record around [start_ns, end_ns); None keeps it open until `end_trigger(kind)` with
        the same `source`. Returns the buffered chunks the new window releases, in order."""
        if kind not in self._kinds:
            self._ignored_triggers += 1
            return []
        lo_ns = start_ns - self._pre_buffer_ns
        if end_ns is None:
            key = (kind, source)
            if key not in self._open and len(self._open) >= self._max_windows:
                self._ignored_triggers += 1
                return []
            # A repeated start keeps the earlier one: the trigger has been on since then.
            self._open[key] = min(lo_ns, self._open.get(key, lo_ns))
            return self._release(lo_ns, None)
        hi_ns = max(end_ns, start_ns) + self._post_buffer_ns
        self._add_window(_Window(lo_ns, hi_ns))
        return self._release(lo_ns, hi_ns)

    def end_trigger(self, kind: TriggerKind, end_ns: int, *, source: str = "") -> None:
        """Close an open trigger at `end_ns`; the post-buffer still records after it.

        Ending a trigger that is not open does nothing (a stop without a start, or a restart
        in between)."""
        lo_ns = self._open.pop((kind, source), None)
        if lo_ns is not None:
            self._add_window(_Window(lo_ns, max(end_ns + self._post_buffer_ns, lo_ns)))

    def manual_start(self, at_ns: int) -> list[GateRelease[ChunkT]]:
        """An operator started recording (with the pre-buffer)."""
        return self.trigger(TriggerKind.MANUAL, at_ns)

    def manual_stop(self, at_ns: int) -> None:
        """An operator stopped recording (the post-buffer still applies)."""
        self.end_trigger(TriggerKind.MANUAL, at_ns)

    # -- internals ---------------------------------------------------------------------------

    def _wanted(self, chunk: GatedChunk) -> bool:
        if self._mode is RecordingMode.RELAY_ONLY:
            return False
        if self._mode is RecordingMode.CONTINUOUS:
            return True
        if (
            self._mode is RecordingMode.SCHEDULE
            and self._schedule is not None
            and self._schedule.overlaps(chunk.start_ns, chunk.end_ns)
        ):
            return True
        if any(_overlaps(chunk, lo_ns, None) for lo_ns in self._open.values()):
            return True
        return any(window.overlaps(chunk) for window in self._windows)

    def _store(self, item: _Buffered[ChunkT]) -> GateRelease[ChunkT]:
        discontinuity = (
            item.after_discontinuity
            or self._last_stored_ordinal is None
            or self._last_stored_ordinal != item.ordinal - 1
        )
        self._last_stored_ordinal = item.ordinal
        self._stored += 1
        return GateRelease(item.chunk, discontinuity)

    def _release(self, lo_ns: int, hi_ns: int | None) -> list[GateRelease[ChunkT]]:
        last_wanted = -1
        for index, item in enumerate(self._buffer):
            if _overlaps(item.chunk, lo_ns, hi_ns):
                last_wanted = index
        released: list[GateRelease[ChunkT]] = []
        for _ in range(last_wanted + 1):
            item = self._buffer.popleft()
            self._buffer_bytes -= item.chunk.payload_size
            if _overlaps(item.chunk, lo_ns, hi_ns):
                released.append(self._store(item))
            else:
                self._skipped += 1  # before a released chunk: it can never be stored now
        return released

    def _drop_buffered(self, count: int) -> None:
        for _ in range(count):
            item = self._buffer.popleft()
            self._buffer_bytes -= item.chunk.payload_size
            self._skipped += 1

    def _evict(self, newest_end_ns: int) -> None:
        horizon_ns = newest_end_ns - self._retention_ns
        while self._buffer and (
            self._buffer[0].chunk.end_ns <= horizon_ns
            or len(self._buffer) > self._max_pre_buffer_chunks
            or (self._buffer_bytes > self._max_pre_buffer_bytes and len(self._buffer) > 1)
        ):
            self._drop_buffered(1)

    def _add_window(self, window: _Window) -> None:
        # Keep windows disjoint and sorted: overlapping triggers (motion flapping) merge, so
        # the count stays small.
        merged: list[_Window] = []
        current = window
        for existing in self._windows:
            if existing.hi_ns < current.lo_ns or existing.lo_ns > current.hi_ns:
                merged.append(existing)
            else:
                current = _Window(
                    min(existing.lo_ns, current.lo_ns), max(existing.hi_ns, current.hi_ns)
                )
        merged.append(current)
        merged.sort(key=lambda w: w.lo_ns)
        if len(merged) > self._max_windows:
            # Over the limit: forget the windows that end first (the oldest triggers).
            self._ignored_triggers += len(merged) - self._max_windows
            merged = sorted(merged, key=lambda w: w.hi_ns)[len(merged) - self._max_windows :]
            merged.sort(key=lambda w: w.lo_ns)
        self._windows = merged

    def _prune_windows(self, chunk_start_ns: int) -> None:
        # Chunks come in time order, so a window that ended before this chunk started is over.
        # (After a backwards clock step this forgets windows early; it never stores twice.)
        self._windows = [w for w in self._windows if w.hi_ns > chunk_start_ns]
