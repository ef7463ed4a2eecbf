"""ISO 8601 instants as the API reads and writes them: zones required, nanoseconds kept."""

from __future__ import annotations

import pytest

from shared.api_input import BadRequest, format_instant, parse_instant
from shared.clock import NS_PER_S

NOON_NS = 1_714_564_800 * NS_PER_S  # 2024-05-01T12:00:00Z


@pytest.mark.parametrize(
    ("text", "instant_ns"),
    [
        ("2024-05-01T12:00:00Z", NOON_NS),
        ("2024-05-01t12:00:00z", NOON_NS),
        ("2024-05-01 12:00:00Z", NOON_NS),
        ("2024-05-01T14:00:00+02:00", NOON_NS),
        ("2024-05-01T17:30:00+0530", NOON_NS),
        ("2024-05-01T11:00:00-01:00", NOON_NS),
        ("2024-05-01T12:00:00.5Z", NOON_NS + NS_PER_S // 2),
        ("2024-05-01T12:00:00,000000001Z", NOON_NS + 1),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_instants_with_a_zone_are_read_exactly(text: str, instant_ns: int) -> None:
    assert parse_instant("start", text) == instant_ns


@pytest.mark.parametrize(
    "instant_ns", [0, NOON_NS, NOON_NS + 1, NOON_NS + 123_456_789, NOON_NS + NS_PER_S // 2]
)
def test_formatting_round_trips(instant_ns: int) -> None:
    assert parse_instant("at", format_instant(instant_ns)) == instant_ns


def test_format_is_utc_with_only_the_fraction_needed() -> None:
    assert format_instant(NOON_NS) == "2024-05-01T12:00:00Z"
    assert format_instant(NOON_NS + 120_000_000) == "2024-05-01T12:00:00.12Z"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2024-05-01T12:00:00", "at: has no time zone"),
        ("2024-05-01", "at: not an ISO 8601 instant: '2024-05-01'"),
        ("2024-05-01T12:00:00.1234567891Z", "at: not an ISO 8601 instant"),
        ("2024-05-01T12:00:00+24:00", "at: not a valid date and time"),
        ("2024-13-01T12:00:00Z", "at: not a valid date and time"),
        ("2024-05-01T24:00:00Z", "at: not a valid date and time"),
        ("x" * 500, "at: not an ISO 8601 instant: '" + "x" * 64 + "...'"),
    ],
)
def test_bad_instants_are_refused_naming_the_parameter(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_instant("at", text)
    assert str(refused.value).startswith(message)
    assert refused.value.parameter == "at"
