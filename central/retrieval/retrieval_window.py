"""A site's daily retrieval window: when, by the site's own clock, background retrieval may
start.

The window "HH:MM-HH:MM" is open exactly while the site's wall clock (its IANA time zone)
shows a time of day in [start, end); when end is not after start the window crosses
midnight ("22:00-06:00" is open from 22:00 to 06:00 the next morning). Defined that way,
by what the clock shows, the nights the clocks change need no special case:

- Clocks go forward (Europe/Paris, 2024-03-31, 02:00 -> 03:00): "22:00-06:00" lasts 7 h.
  A start the clock skips opens the window at the first instant after the jump, when the
  clock shows a later time ("02:30-05:00" opens at 03:00); an end the clock skips closes it
  at the jump ("22:00-02:30" closes at 03:00 new time, which is past 02:30).
- Clocks go back (2024-10-27, 03:00 -> 02:00): "22:00-06:00" lasts 9 h. A window in the
  repeated hour is open in both passes ("02:00-03:00" stays open for two hours); one that
  ends inside it closes, then opens again when the clock goes back into it.

(Recording schedules, shared/recording_gate.py, instead shift a skipped start by the jump;
a retrieval window is a plain predicate on the clock, which is what an operator reading
"retrieve between 22:00 and 06:00" expects of a line reserved by day.)

A job that started inside the window may run past its end; the engine asks `is_open` before
starting one, `next_opening_ns` to know how long pending jobs wait, and `closes_ns` to know
until when it may start more. Pure: instants (UTC ns) in, instants out, no clock.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.clock import NS_PER_S

_CLOCK_TIME = re.compile(r"(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)")
_NS_PER_DAY = 86_400 * NS_PER_S
_SAMPLE_S = 3_600  # zones change their offset at most once in any hour
_SEARCH_DAYS = 2  # each step of the search for the next change looks this far ahead
_MAX_SEARCH_DAYS = 8  # a window of at least a minute opens within any such span


class RetrievalWindow(Protocol):
    """When background retrieval of a site may start."""

    def is_open(self, at_ns: int) -> bool: ...

    def next_opening_ns(self, at_ns: int) -> int:
        """`at_ns` when open, else the first instant after it when the window opens."""
        ...

    def closes_ns(self, at_ns: int) -> int | None:
        """When the opening in force at `at_ns` (or the next one) ends; None: never."""
        ...


class AlwaysOpen:
    """No window set: retrieval may run at any time."""

    def is_open(self, at_ns: int) -> bool:
        return True

    def next_opening_ns(self, at_ns: int) -> int:
        return at_ns

    def closes_ns(self, at_ns: int) -> int | None:
        return None


class DailyWindow:
    """A daily "HH:MM"-"HH:MM" window in a time zone; see the module docstring."""

    def __init__(self, start: str, end: str, time_zone: str) -> None:
        self._start_s = _seconds_of_day("start", start)
        self._end_s = _seconds_of_day("end", end)
        if self._start_s == self._end_s:
            raise ValueError(
                f"the window {start}-{end} is empty (start == end); set no window to retrieve "
                "at any time"
            )
        self._zone = _zone(time_zone)
        self.start = start
        self.end = end
        self.time_zone = time_zone

    def __repr__(self) -> str:
        return f"DailyWindow({self.start!r}, {self.end!r}, {self.time_zone!r})"

    @property
    def crosses_midnight(self) -> bool:
        return self._end_s < self._start_s

    def is_open(self, at_ns: int) -> bool:
        """Whether the site's clock shows a time of day inside the window at `at_ns`."""
        local = _local(self._zone, at_ns)
        second = local.hour * 3_600 + local.minute * 60 + local.second
        if self.crosses_midnight:
            return second >= self._start_s or second < self._end_s
        return self._start_s <= second < self._end_s

    def next_opening_ns(self, at_ns: int) -> int:
        """`at_ns` when open, else the first instant after it when the window opens."""
        if self.is_open(at_ns):
            return at_ns
        return self._next_change_ns(at_ns, self._start_s, to_open=True)

    def closes_ns(self, at_ns: int) -> int:
        """The end of the opening in force at `at_ns`, or of the next one when closed."""
        opening_ns = self.next_opening_ns(at_ns)
        return self._next_change_ns(opening_ns, self._end_s, to_open=False)

    def _next_change_ns(self, after_ns: int, second_of_day: int, *, to_open: bool) -> int:
        """The first instant after `after_ns` at which the window becomes open (`to_open`)
        or closed. It changes only when the clock reaches the start or end, or jumps."""
        lo_ns = after_ns + 1
        while lo_ns - after_ns < _MAX_SEARCH_DAYS * _NS_PER_DAY:
            hi_ns = lo_ns + _SEARCH_DAYS * _NS_PER_DAY
            candidates = sorted(
                {
                    *self._readings_ns(second_of_day, lo_ns, hi_ns),
                    *_offset_changes_ns(self._zone, lo_ns, hi_ns),
                }
            )
            for candidate_ns in candidates:
                if self.is_open(candidate_ns) == to_open:
                    return candidate_ns
            lo_ns = hi_ns
        raise AssertionError(  # pragma: no cover - no real zone skips a week of clock times
            f"{self!r} does not {'open' if to_open else 'close'} within {_MAX_SEARCH_DAYS} "
            f"days after {after_ns}"
        )

    def _readings_ns(self, second_of_day: int, lo_ns: int, hi_ns: int) -> list[int]:
        """Every instant in [lo_ns, hi_ns) at which the site's clock shows `second_of_day`
        (none on a day the clock skips it, two on a day it shows it twice)."""
        found: list[int] = []
        day = _local(self._zone, lo_ns).date() - timedelta(days=1)
        last_day = _local(self._zone, hi_ns).date() + timedelta(days=1)
        while day <= last_day:
            found.extend(
                reading_ns
                for reading_ns in _instants_showing(self._zone, day, second_of_day)
                if lo_ns <= reading_ns < hi_ns
            )
            day += timedelta(days=1)
        return found


def retrieval_window(
    window_start: str | None, window_end: str | None, time_zone: str
) -> RetrievalWindow:
    """The window of a site's retrieval settings: both times None means always open."""
    if window_start is None and window_end is None:
        return AlwaysOpen()
    if window_start is None or window_end is None:
        raise ValueError(
            f"a retrieval window needs both a start and an end (start {window_start!r}, "
            f"end {window_end!r})"
        )
    return DailyWindow(window_start, window_end, time_zone)


def _seconds_of_day(field: str, value: str) -> int:
    match = _CLOCK_TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"the window's {field} must be a time of day as HH:MM (00:00 to 23:59), not {value!r}"
        )
    return int(match["hour"]) * 3_600 + int(match["minute"]) * 60


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name such as Europe/Paris)"
        ) from None


def _local(zone: ZoneInfo, at_ns: int) -> datetime:
    """The site's wall clock at `at_ns` (to the second, which is all a window needs)."""
    return datetime.fromtimestamp(at_ns // NS_PER_S, tz=zone)


def _utc_ns(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp()) * NS_PER_S


def _instants_showing(zone: ZoneInfo, day: date, second_of_day: int) -> set[int]:
    """The instants at which the clock of `zone` shows this time on `day`."""
    naive = datetime.combine(
        day, time(second_of_day // 3_600, second_of_day // 60 % 60, second_of_day % 60)
    )
    found: set[int] = set()
    for fold in (0, 1):
        moment = naive.replace(tzinfo=zone, fold=fold)
        # A time in a gap has no instant: its conversion shows another time of day.
        if moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
            found.add(_utc_ns(moment))
    return found


def _offset_changes_ns(zone: ZoneInfo, lo_ns: int, hi_ns: int) -> list[int]:
    """The instants in [lo_ns, hi_ns) at which `zone` changes its offset from UTC."""
    changes: list[int] = []
    lo_s = lo_ns // NS_PER_S
    hi_s = -(-hi_ns // NS_PER_S)
    step_lo = lo_s
    while step_lo < hi_s:
        step_hi = min(step_lo + _SAMPLE_S, hi_s)
        if _offset_s(zone, step_lo) != _offset_s(zone, step_hi):
            # The first second with the new offset, by bisection.
            before, after = step_lo, step_hi
            while after - before > 1:
                middle = (before + after) // 2
                if _offset_s(zone, middle) == _offset_s(zone, step_lo):
                    before = middle
                else:
                    after = middle
            if lo_ns <= after * NS_PER_S < hi_ns:
                changes.append(after * NS_PER_S)
        step_lo = step_hi
    return changes


def _offset_s(zone: ZoneInfo, at_s: int) -> int:
    offset = datetime.fromtimestamp(at_s, tz=zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return int(offset.total_seconds())
