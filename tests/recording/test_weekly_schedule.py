"""Weekly schedules: parsing with clear errors, ranges across midnight, DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent.recording_policy import ScheduleError, ScheduleRange, WeeklySchedule
from shared.clock import NS_PER_S


def utc_ns(text: str) -> int:
    """'2024-03-30 21:00:00' (UTC) as ns since the epoch."""
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return int(moment.timestamp()) * NS_PER_S


def test_parse_day_lists_and_ranges() -> None:
    assert ScheduleRange.parse("mon-fri 08:00-18:00") == ScheduleRange(
        frozenset(range(5)), 8 * 60, 18 * 60
    )
    assert ScheduleRange.parse("Sat,SUN 22:00 - 06:00").days == frozenset({5, 6})
    assert ScheduleRange.parse("fri-mon 00:00-24:00").days == frozenset({4, 5, 6, 0})
    assert ScheduleRange.parse("daily 00:00-24:00").end_minute == 24 * 60
    assert ScheduleRange.parse("mon,wed-thu 10:00-11:00").days == frozenset({0, 2, 3})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon-fry 08:00-18:00", "unknown day 'fry'"),
        ("mon 25:00-26:00", "bad time '25:00'"),
        ("mon 08:60-09:00", "bad time '08:60'"),
        ("mon 24:00-06:00", "bad time '24:00'"),
        ("mon 8:00-9:00", "bad time '8:00'"),
        ("mon 08:00-08:00", "use 00:00-24:00 for a whole day"),
        ("08:00-18:00", "expected '<days> <HH:MM>-<HH:MM>'"),
        ("", "expected '<days> <HH:MM>-<HH:MM>'"),
    ],
)
def test_parse_errors_name_the_bad_value(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message) as caught:
        ScheduleRange.parse(text)
    assert repr(text) in str(caught.value)


def test_unknown_time_zone_is_named() -> None:
    with pytest.raises(ScheduleError, match="unknown time zone 'Europe/Pariss'"):
        WeeklySchedule.parse("Europe/Pariss", ["daily 00:00-24:00"])
    with pytest.raises(ScheduleError, match="unknown time zone '/etc/passwd'"):
        WeeklySchedule.parse("/etc/passwd", ["daily 00:00-24:00"])


def test_empty_schedule_and_single_string_are_refused() -> None:
    with pytest.raises(ScheduleError, match="at least one range"):
        WeeklySchedule.parse("UTC", [])
    with pytest.raises(ScheduleError, match="list of strings"):
        WeeklySchedule.parse("UTC", "mon 08:00-09:00")


def test_range_crossing_midnight() -> None:
    # 2024-01-05 is a Friday; Paris is UTC+1 in winter.
    schedule = WeeklySchedule.parse("Europe/Paris", ["fri 22:00-06:00"])
    assert not schedule.contains(utc_ns("2024-01-05 20:59:59"))  # Fri 21:59:59
    assert schedule.contains(utc_ns("2024-01-05 21:00:00"))  # Fri 22:00
    assert schedule.contains(utc_ns("2024-01-06 04:59:59"))  # Sat 05:59:59
    assert not schedule.contains(utc_ns("2024-01-06 05:00:00"))  # Sat 06:00
    assert not schedule.contains(utc_ns("2024-01-04 22:00:00"))  # Thu 23:00
    assert not schedule.contains(utc_ns("2024-01-06 21:30:00"))  # Sat 22:30


def test_sunday_night_range_reaches_into_monday() -> None:
    schedule = WeeklySchedule.parse("UTC", ["sun 22:00-02:00"])
    assert schedule.contains(utc_ns("2024-01-07 23:00:00"))  # Sunday
    assert schedule.contains(utc_ns("2024-01-08 01:59:59"))  # Monday
    assert not schedule.contains(utc_ns("2024-01-08 02:00:00"))
    assert not schedule.contains(utc_ns("2024-01-01 03:00:00"))


def test_overlaps_counts_any_part_of_an_interval() -> None:
    schedule = WeeklySchedule.parse("UTC", ["mon 10:00-10:01"])
    start = utc_ns("2024-01-08 09:59:30")
    assert schedule.overlaps(start, start + 40 * NS_PER_S)  # straddles the start
    assert not schedule.overlaps(start, start + 30 * NS_PER_S)  # ends exactly at it
    # A long interval containing the whole range.
    assert schedule.overlaps(utc_ns("2024-01-08 00:00:00"), utc_ns("2024-01-09 00:00:00"))
    assert not schedule.overlaps(utc_ns("2024-01-09 00:00:00"), utc_ns("2024-01-14 00:00:00"))
    # Longer than a week: always.
    assert schedule.overlaps(utc_ns("2024-01-09 00:00:00"), utc_ns("2024-01-17 00:00:00"))


def test_night_range_over_spring_forward_follows_the_wall_clock() -> None:
    # Paris, night of 30-31 March 2024: 02:00 CET became 03:00 CEST (01:00 UTC).
    schedule = WeeklySchedule.parse("Europe/Paris", ["sat 22:00-06:00"])
    assert not schedule.contains(utc_ns("2024-03-30 20:59:59"))
    assert schedule.contains(utc_ns("2024-03-30 21:00:00"))  # 22:00 CET
    assert schedule.contains(utc_ns("2024-03-31 03:59:59"))  # 05:59:59 CEST
    assert not schedule.contains(utc_ns("2024-03-31 04:00:00"))  # 06:00 CEST: 7 h in all


def test_night_range_over_fall_back_follows_the_wall_clock() -> None:
    # Paris, night of 26-27 October 2024: 03:00 CEST became 02:00 CET (01:00 UTC).
    schedule = WeeklySchedule.parse("Europe/Paris", ["sat 22:00-06:00"])
    assert not schedule.contains(utc_ns("2024-10-26 19:59:59"))
    assert schedule.contains(utc_ns("2024-10-26 20:00:00"))  # 22:00 CEST
    assert schedule.contains(utc_ns("2024-10-27 04:59:59"))  # 05:59:59 CET
    assert not schedule.contains(utc_ns("2024-10-27 05:00:00"))  # 06:00 CET: 9 h in all


def test_range_starting_in_the_skipped_hour_is_shortened() -> None:
    # 02:30 does not exist on 31 March 2024 in Paris: it is taken as 03:30 CEST (01:30 UTC).
    schedule = WeeklySchedule.parse("Europe/Paris", ["sun 02:30-04:00"])
    assert not schedule.contains(utc_ns("2024-03-31 01:29:59"))
    assert schedule.contains(utc_ns("2024-03-31 01:30:00"))  # 03:30 CEST
    assert schedule.contains(utc_ns("2024-03-31 01:59:59"))
    assert not schedule.contains(utc_ns("2024-03-31 02:00:00"))  # 04:00 CEST
    # A chunk across the start overlaps even though it starts before the range.
    assert schedule.overlaps(utc_ns("2024-03-31 01:29:50"), utc_ns("2024-03-31 01:30:05"))
    assert not schedule.overlaps(utc_ns("2024-03-31 01:29:50"), utc_ns("2024-03-31 01:30:00"))
    # The next Sunday it is the usual 90 minutes.
    assert schedule.contains(utc_ns("2024-04-07 00:30:00"))  # 02:30 CEST


def test_range_inside_the_skipped_hour_is_shifted_not_lost() -> None:
    schedule = WeeklySchedule.parse("Europe/Paris", ["sun 02:15-02:45"])
    assert not schedule.contains(utc_ns("2024-03-31 01:14:59"))
    assert schedule.contains(utc_ns("2024-03-31 01:15:00"))  # 03:15 CEST
    assert schedule.contains(utc_ns("2024-03-31 01:44:59"))
    assert not schedule.contains(utc_ns("2024-03-31 01:45:00"))


def test_range_in_the_repeated_hour_covers_both_passes() -> None:
    schedule = WeeklySchedule.parse("Europe/Paris", ["sun 02:15-02:45"])
    assert not schedule.contains(utc_ns("2024-10-27 00:14:59"))
    assert schedule.contains(utc_ns("2024-10-27 00:15:00"))  # 02:15 CEST, first pass
    assert schedule.contains(utc_ns("2024-10-27 01:00:00"))  # 02:00 CET, between the passes
    assert schedule.contains(utc_ns("2024-10-27 01:44:59"))  # 02:44:59 CET, second pass
    assert not schedule.contains(utc_ns("2024-10-27 01:45:00"))


def test_new_york_business_hours_across_dst() -> None:
    schedule = WeeklySchedule.parse("America/New_York", ["mon-fri 09:00-17:00"])
    # Friday 8 March 2024 (EST, UTC-5) and Monday 11 March (EDT, UTC-4).
    assert schedule.contains(utc_ns("2024-03-08 14:00:00"))
    assert not schedule.contains(utc_ns("2024-03-08 13:59:59"))
    assert schedule.contains(utc_ns("2024-03-11 13:00:00"))
    assert not schedule.contains(utc_ns("2024-03-11 12:59:59"))
    assert not schedule.contains(utc_ns("2024-03-09 15:00:00"))  # Saturday


def reading_inside(schedule_range: ScheduleRange, zone: ZoneInfo, at_s: int) -> bool:
    """Brute force for zones without clock changes: the local reading is inside the range."""
    local = datetime.fromtimestamp(at_s, tz=zone)
    minute = local.hour * 60 + local.minute
    today = local.weekday() in schedule_range.days
    if not schedule_range.crosses_midnight:
        return today and schedule_range.start_minute <= minute < schedule_range.end_minute
    yesterday = (local.weekday() - 1) % 7 in schedule_range.days
    return (today and minute >= schedule_range.start_minute) or (
        yesterday and minute < schedule_range.end_minute
    )


@settings(max_examples=300, deadline=None)
@given(
    days=st.frozensets(st.integers(0, 6), min_size=1),
    start=st.integers(0, 24 * 60 - 1),
    end=st.integers(1, 24 * 60),
    zone_name=st.sampled_from(["UTC", "Asia/Tokyo", "Asia/Kolkata"]),
    at_s=st.integers(1_600_000_000, 1_800_000_000),
)
def test_membership_matches_the_local_reading_where_clocks_never_change(
    days: frozenset[int], start: int, end: int, zone_name: str, at_s: int
) -> None:
    assume(start != end)
    schedule_range = ScheduleRange(days, start, end)
    schedule = WeeklySchedule(zone_name, (schedule_range,))
    expected = reading_inside(schedule_range, ZoneInfo(zone_name), at_s)
    assert schedule.contains(at_s * NS_PER_S) == expected
