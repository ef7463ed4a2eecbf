"""The daily retrieval window: plain days, windows across midnight, the nights clocks change
(Europe/Paris, 2024), and a minute-by-minute cross-check around clock changes worldwide."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from central.retrieval.retrieval_window import AlwaysOpen, DailyWindow, retrieval_window
from shared.clock import NS_PER_S

H = 3_600 * NS_PER_S
MINUTE = 60 * NS_PER_S


def utc(moment: str) -> int:
    """UTC ns of "YYYY-MM-DD HH:MM[:SS]" read as UTC."""
    return int(datetime.fromisoformat(moment).replace(tzinfo=UTC).timestamp()) * NS_PER_S


def test_a_daytime_window_opens_at_its_start_and_closes_at_its_end() -> None:
    window = DailyWindow("09:00", "17:00", "UTC")
    assert not window.is_open(utc("2024-05-06 08:59:59"))
    assert window.is_open(utc("2024-05-06 09:00"))
    assert window.is_open(utc("2024-05-06 16:59:59"))
    assert not window.is_open(utc("2024-05-06 17:00"))
    assert window.next_opening_ns(utc("2024-05-06 03:00")) == utc("2024-05-06 09:00")
    assert window.next_opening_ns(utc("2024-05-06 18:00")) == utc("2024-05-07 09:00")
    inside = utc("2024-05-06 12:34:56") + 789
    assert window.next_opening_ns(inside) == inside
    assert window.closes_ns(inside) == utc("2024-05-06 17:00")
    # Closed: the end of the next opening.
    assert window.closes_ns(utc("2024-05-06 20:00")) == utc("2024-05-07 17:00")


def test_a_night_window_crosses_midnight_in_the_sites_zone() -> None:
    window = DailyWindow("22:00", "06:00", "Asia/Tokyo")  # UTC+9, no clock changes
    assert window.crosses_midnight
    assert not window.is_open(utc("2024-05-06 12:59"))  # 21:59 in Tokyo
    assert window.is_open(utc("2024-05-06 13:00"))  # 22:00
    assert window.is_open(utc("2024-05-06 15:00"))  # 00:00 the next day
    assert window.is_open(utc("2024-05-06 20:59:59"))  # 05:59:59
    assert not window.is_open(utc("2024-05-06 21:00"))  # 06:00
    assert window.next_opening_ns(utc("2024-05-06 03:00")) == utc("2024-05-06 13:00")
    assert window.closes_ns(utc("2024-05-06 16:00")) == utc("2024-05-06 21:00")
    assert window.closes_ns(utc("2024-05-06 03:00")) == utc("2024-05-06 21:00")


def test_the_night_the_clocks_go_forward_is_an_hour_shorter() -> None:
    window = DailyWindow("22:00", "06:00", "Europe/Paris")
    # 2024-03-31 has 23 hours in Paris: 22:00 CET is 21:00 UTC, 06:00 CEST is 04:00 UTC.
    opens = window.next_opening_ns(utc("2024-03-30 12:00"))
    assert opens == utc("2024-03-30 21:00")
    assert window.closes_ns(opens) == utc("2024-03-31 04:00")
    assert window.closes_ns(opens) - opens == 7 * H
    assert window.is_open(utc("2024-03-31 01:00"))  # 03:00 CEST, just after the jump


def test_the_night_the_clocks_go_back_is_an_hour_longer() -> None:
    window = DailyWindow("22:00", "06:00", "Europe/Paris")
    # 2024-10-27 has 25 hours: 22:00 CEST is 20:00 UTC, 06:00 CET is 05:00 UTC.
    opens = window.next_opening_ns(utc("2024-10-26 12:00"))
    assert opens == utc("2024-10-26 20:00")
    assert window.closes_ns(opens) == utc("2024-10-27 05:00")
    assert window.closes_ns(opens) - opens == 9 * H


def test_a_start_the_clock_skips_opens_at_the_first_instant_after_the_jump() -> None:
    window = DailyWindow("02:30", "05:00", "Europe/Paris")
    # 02:00 CET jumps to 03:00 CEST at 01:00 UTC; 02:30 is never shown that night.
    assert not window.is_open(utc("2024-03-31 00:59:59"))  # 01:59:59 CET
    assert window.next_opening_ns(utc("2024-03-30 12:00")) == utc("2024-03-31 01:00")
    assert window.closes_ns(utc("2024-03-31 01:00")) == utc("2024-03-31 03:00")  # 05:00 CEST
    # The next day is an ordinary one again: 02:30 CEST is 00:30 UTC.
    assert window.next_opening_ns(utc("2024-03-31 12:00")) == utc("2024-04-01 00:30")


def test_an_end_the_clock_skips_closes_the_window_at_the_jump() -> None:
    window = DailyWindow("22:00", "02:30", "Europe/Paris")
    opens = window.next_opening_ns(utc("2024-03-30 12:00"))
    assert opens == utc("2024-03-30 21:00")
    assert window.closes_ns(opens) == utc("2024-03-31 01:00")  # 03:00 CEST, past 02:30


def test_a_window_in_the_repeated_hour_is_open_in_both_passes() -> None:
    whole_hour = DailyWindow("02:00", "03:00", "Europe/Paris")
    # 02:00 CEST (00:00 UTC) to 03:00 CET (02:00 UTC): one opening of two hours.
    assert whole_hour.next_opening_ns(utc("2024-10-26 12:00")) == utc("2024-10-27 00:00")
    assert whole_hour.closes_ns(utc("2024-10-27 00:00")) == utc("2024-10-27 02:00")
    assert whole_hour.is_open(utc("2024-10-27 01:30"))

    ends_inside = DailyWindow("01:30", "02:15", "Europe/Paris")
    first = ends_inside.next_opening_ns(utc("2024-10-26 12:00"))
    assert first == utc("2024-10-26 23:30")  # 01:30 CEST
    assert ends_inside.closes_ns(first) == utc("2024-10-27 00:15")  # 02:15 CEST
    # The clock goes back from 03:00 CEST to 02:00 CET at 01:00 UTC: open again till 02:15.
    assert not ends_inside.is_open(utc("2024-10-27 00:30"))
    second = ends_inside.next_opening_ns(utc("2024-10-27 00:30"))
    assert second == utc("2024-10-27 01:00")
    assert ends_inside.closes_ns(second) == utc("2024-10-27 01:15")

    inside = DailyWindow("02:30", "02:45", "Europe/Paris")  # shown twice: two openings
    openings = []
    at_ns = utc("2024-10-26 12:00")
    for _ in range(2):
        opens = inside.next_opening_ns(at_ns)
        at_ns = inside.closes_ns(opens)
        openings.append((opens, at_ns))
    assert openings == [
        (utc("2024-10-27 00:30"), utc("2024-10-27 00:45")),  # CEST
        (utc("2024-10-27 01:30"), utc("2024-10-27 01:45")),  # CET
    ]


def test_wrong_settings_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus_Mons"):
        DailyWindow("22:00", "06:00", "Mars/Olympus_Mons")
    with pytest.raises(ValueError, match=re.escape("unknown time zone '../etc'")):
        DailyWindow("22:00", "06:00", "../etc")
    with pytest.raises(ValueError, match=r"start must be a time of day as HH:MM.*'24:00'"):
        DailyWindow("24:00", "06:00", "UTC")
    with pytest.raises(ValueError, match=r"end must be a time of day as HH:MM.*'6:00'"):
        DailyWindow("22:00", "6:00", "UTC")
    with pytest.raises(ValueError, match="empty"):
        DailyWindow("06:00", "06:00", "UTC")
    with pytest.raises(ValueError, match="both a start and an end"):
        retrieval_window("22:00", None, "UTC")


def test_no_window_is_always_open() -> None:
    window = retrieval_window(None, None, "Europe/Paris")
    assert isinstance(window, AlwaysOpen)
    at_ns = utc("2024-03-31 01:00")
    assert window.is_open(at_ns)
    assert window.next_opening_ns(at_ns) == at_ns
    assert window.closes_ns(at_ns) is None
    assert isinstance(retrieval_window("22:00", "06:00", "UTC"), DailyWindow)


# Days on which clocks change in 2024, with zones that change by an hour either way, by half
# an hour (Lord Howe), and never (Kolkata), to cross-check against a minute-by-minute scan.
_CHANGE_DAYS = [
    ("Europe/Paris", utc("2024-03-30 00:00")),
    ("Europe/Paris", utc("2024-10-26 00:00")),
    ("America/New_York", utc("2024-03-09 00:00")),
    ("America/New_York", utc("2024-11-02 00:00")),
    ("Australia/Lord_Howe", utc("2024-04-06 00:00")),
    ("Australia/Lord_Howe", utc("2024-10-05 00:00")),
    ("Asia/Kolkata", utc("2024-06-01 00:00")),
]
_clock_times = st.builds(
    lambda hour, minute: f"{hour:02d}:{minute:02d}",
    st.integers(0, 23),
    st.sampled_from([0, 15, 30, 45, 59]),
)


def _changes_by_scanning(window: DailyWindow, start_ns: int, minutes: int) -> list[int]:
    """Every instant (on a whole minute) at which `is_open` changes, in order."""
    changes = []
    was_open = window.is_open(start_ns)
    for step in range(1, minutes):
        now_open = window.is_open(start_ns + step * MINUTE)
        if now_open != was_open:
            changes.append(start_ns + step * MINUTE)
        was_open = now_open
    return changes


def _changes_by_window(window: DailyWindow, start_ns: int, end_ns: int) -> list[int]:
    """The same, from `next_opening_ns` and `closes_ns` alone."""
    changes = []
    at_ns = start_ns
    if window.is_open(at_ns):
        at_ns = window.closes_ns(at_ns)
        changes.append(at_ns)
    while at_ns < end_ns:
        opens = window.next_opening_ns(at_ns)
        closes = window.closes_ns(opens)
        assert opens < closes
        changes += [opens, closes]
        at_ns = closes
    return [change for change in changes if change < end_ns]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(_CHANGE_DAYS), _clock_times, _clock_times)
def test_openings_and_closings_match_a_minute_by_minute_scan(
    zone_day: tuple[str, int], start: str, end: str
) -> None:
    assume(start != end)
    zone, day_ns = zone_day
    window = DailyWindow(start, end, zone)
    minutes = int(timedelta(days=3).total_seconds()) // 60
    scanned = _changes_by_scanning(window, day_ns, minutes)
    assert _changes_by_window(window, day_ns, day_ns + minutes * MINUTE) == scanned
