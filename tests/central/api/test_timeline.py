"""A device's merged timeline: through the API for a camera of a real recording site (what
the site holds, nothing before it recorded; the last answer reused while the site is away,
and only where it covers the range), and `central/merged_timeline.py` on its own, with
hand-made intervals (retrievals running and pending among them) and with random ones
checked against a point-by-point model."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path
from typing import Any

import pytest

from central.merged_timeline import (
    Interval,
    Period,
    PeriodKind,
    merge_timeline,
    normalise,
    subtract,
)
from shared.api_input import format_instant
from shared.clock import NS_PER_S
from tests.central.api.central_calls import add_site, site_devices, wait_for_state
from tests.central.central_fixture import RunningCentral, running_central
from tests.link_io.link_site import running_link_site

# -- through the API ---------------------------------------------------------------------------


async def _timeline(
    central: RunningCentral, device_id: str, start_ns: int, end_ns: int
) -> dict[str, Any]:
    status, body = await central.call(
        "GET",
        f"/devices/{device_id}/timeline",
        params={"start": format_instant(start_ns), "end": format_instant(end_ns)},
    )
    assert status == 200, body
    assert (body["start"], body["end"]) == (format_instant(start_ns), format_instant(end_ns))
    timeline: dict[str, Any] = body
    return timeline


def _spans(timeline: dict[str, Any], kind: str) -> list[Interval]:
    return [(p["start_ns"], p["end_ns"]) for p in timeline["periods"] if p["kind"] == kind]


async def test_a_camera_timeline_shows_the_site_holdings_then_the_cached_answer(
    tmp_path: Path,
) -> None:
    async with running_central(tmp_path / "central") as central:
        before_site_ns = time.time_ns() - NS_PER_S
        async with running_link_site(tmp_path / "site") as site:
            added = await add_site(central, site)
            site_id = added["id"]
            await wait_for_state(central, site_id, "online")
            await site.wait_for_chunks("cam-a", "hq", 2)
            [camera] = [
                d for d in await site_devices(central, site_id) if d["remote_device_id"] == "cam-a"
            ]
            start_ns = before_site_ns - 60 * NS_PER_S
            end_ns = time.time_ns()
            current = await _timeline(central, camera["id"], start_ns, end_ns)
            held = await asyncio.to_thread(site.store.timeline, "cam-a", "hq", start_ns, end_ns)

        assert current["site_answer"] == "current"
        assert current["site_answer_at"] is not None
        kinds = {p["kind"] for p in current["periods"]}
        assert kinds == {"none", "remote_available"}, current["periods"]
        available = _spans(current, "remote_available")
        nothing = _spans(current, "none")
        # Nothing before the site recorded; what the site holds after.
        assert nothing[0][0] == start_ns
        assert nothing[0][1] >= before_site_ns
        assert available[0][0] >= before_site_ns
        assert sum(e - s for s, e in available) >= NS_PER_S
        for s, e in available:
            assert any(span.start_ns <= s and e <= span.end_ns for span in held), (s, e)
        # The central holds nothing, so the two kinds tile the range exactly.
        assert normalise([*available, *nothing], start_ns, end_ns) == [(start_ns, end_ns)]
        assert subtract(available, nothing) == available

        # The site is gone: the last answer stands in where it covers the range.
        await wait_for_state(central, site_id, "offline")
        for inside in ((start_ns, end_ns), (start_ns + NS_PER_S, end_ns - NS_PER_S)):
            cached = await _timeline(central, camera["id"], *inside)
            assert cached["site_answer"] == "cached"
            assert cached["site_answer_at"] == current["site_answer_at"]
            expected = merge_timeline(
                inside[0],
                inside[1],
                central_lq=[],
                retrieved_hq=[],
                site_holds=available,
            )
            assert [(p["kind"], p["start_ns"], p["end_ns"]) for p in cached["periods"]] == [
                (p.kind.value, p.start_ns, p.end_ns) for p in expected
            ]
        for outside in ((start_ns, end_ns + NS_PER_S), (start_ns - NS_PER_S, end_ns)):
            unknown = await _timeline(central, camera["id"], *outside)
            assert unknown["site_answer"] == "unavailable"
            assert unknown["site_answer_at"] is None
            # Nothing is claimed about what the site holds, and the central holds nothing.
            assert unknown["periods"] == []


# -- merged_timeline on its own --------------------------------------------------------------


def _period_tuples(periods: list[Period]) -> list[tuple[str, int, int]]:
    return [(p.kind.value, p.start_ns, p.end_ns) for p in periods]


def test_normalise_clips_sorts_and_joins() -> None:
    assert normalise([(50, 60), (0, 10), (5, 20), (20, 25), (30, 30), (90, 200)], 0, 100) == [
        (0, 25),
        (50, 60),
        (90, 100),
    ]
    assert normalise([(-10, 5), (95, 100), (100, 120), (40, 30)], 0, 100) == [(0, 5), (95, 100)]
    assert normalise([], 0, 10) == []


def test_subtract_leaves_what_is_not_taken() -> None:
    assert subtract([(0, 100)], [(10, 20), (30, 40)]) == [(0, 10), (20, 30), (40, 100)]
    assert subtract([(0, 10), (20, 30)], [(5, 25)]) == [(0, 5), (25, 30)]
    assert subtract([(0, 10)], [(0, 10)]) == []
    assert subtract([(0, 10)], []) == [(0, 10)]
    assert subtract([], [(0, 10)]) == []
    assert subtract([(10, 20)], [(0, 5), (25, 30)]) == [(10, 20)]


def test_a_hand_made_day_merges_into_every_kind() -> None:
    periods = merge_timeline(
        0,
        100,
        central_lq=[(0, 40), (60, 70)],
        retrieved_hq=[(10, 20)],
        site_holds=[(5, 50), (80, 90)],
        pending=[(15, 30), (85, 95)],
    )
    assert _period_tuples(periods) == [
        ("central_lq", 0, 40),
        ("remote_available", 5, 10),
        ("retrieved_hq", 10, 20),
        ("remote_available", 20, 50),  # at the same start, kinds in PeriodKind's order
        ("pending", 20, 30),
        ("none", 50, 60),
        ("central_lq", 60, 70),
        ("none", 70, 80),
        ("remote_available", 80, 90),
        ("pending", 85, 95),
        ("none", 90, 100),
    ]


def test_what_a_retrieval_brings_now_is_running_and_only_the_rest_pending() -> None:
    periods = merge_timeline(
        0,
        100,
        central_lq=[],
        retrieved_hq=[(10, 30)],
        site_holds=[(0, 100)],
        running=[(30, 60)],  # a job brought 10-30 and brings the rest of its 10-60 now
        pending=[(40, 80), (90, 120)],  # another job, waiting, overlaps the running one
    )
    assert _period_tuples(periods) == [
        ("remote_available", 0, 10),
        ("retrieved_hq", 10, 30),
        ("remote_available", 30, 100),  # at the same start, kinds in PeriodKind's order
        ("running", 30, 60),
        ("pending", 60, 80),
        ("pending", 90, 100),
    ]
    # What the central already holds in HQ is neither running nor pending.
    held = merge_timeline(
        0,
        100,
        central_lq=[],
        retrieved_hq=[(0, 100)],
        site_holds=None,
        running=[(0, 50)],
        pending=[(50, 100)],
    )
    assert _period_tuples(held) == [("retrieved_hq", 0, 100)]


def test_without_the_site_answer_nothing_is_claimed_about_the_site() -> None:
    periods = merge_timeline(
        0, 100, central_lq=[(10, 20)], retrieved_hq=[(30, 40)], site_holds=None
    )
    assert _period_tuples(periods) == [("central_lq", 10, 20), ("retrieved_hq", 30, 40)]
    assert merge_timeline(0, 100, central_lq=[], retrieved_hq=[], site_holds=None) == []
    assert _period_tuples(
        merge_timeline(0, 100, central_lq=[], retrieved_hq=[], site_holds=[])
    ) == [("none", 0, 100)]


@pytest.mark.parametrize(("start_ns", "end_ns"), [(10, 10), (10, 5)])
def test_an_empty_or_reversed_range_is_refused(start_ns: int, end_ns: int) -> None:
    with pytest.raises(ValueError, match="end after it starts"):
        merge_timeline(start_ns, end_ns, central_lq=[], retrieved_hq=[], site_holds=[])


# Random checks: intervals on a small integer line, so that [s, e) is exactly the set of
# integers s..e-1 and every claim can be checked point by point.

_LINE = 60
_ROUNDS = 2000


def _points(intervals: list[Interval]) -> set[int]:
    return {t for s, e in intervals for t in range(s, e)}


def _points_within(raw: list[Interval], span: set[int]) -> set[int]:
    """The points of `raw` (empty or reversed intervals hold none) inside `span`."""
    return _points([(s, e) for s, e in raw if e > s]) & span


def _random_intervals(rng: random.Random) -> list[Interval]:
    intervals = []
    for _ in range(rng.randrange(0, 6)):
        start = rng.randrange(-10, _LINE + 10)
        intervals.append((start, start + rng.randrange(-3, 25)))  # some empty or reversed
    return intervals


def _assert_disjoint_sorted(intervals: list[Interval], start: int, end: int) -> None:
    for s, e in intervals:
        assert start <= s < e <= end, intervals
    for (_, e1), (s2, _) in itertools.pairwise(intervals):
        assert e1 < s2, intervals  # sorted, apart, and not even touching


def test_normalise_and_subtract_agree_with_sets_of_points() -> None:
    rng = random.Random(20240501)
    for _ in range(_ROUNDS):
        start = rng.randrange(0, 20)
        end = start + rng.randrange(1, _LINE)
        raw = _random_intervals(rng)
        merged = normalise(raw, start, end)
        _assert_disjoint_sorted(merged, start, end)
        assert _points(merged) == _points_within(raw, set(range(start, end)))
        taken = normalise(_random_intervals(rng), start, end)
        left = subtract(merged, taken)
        assert _points(left) == _points(merged) - _points(taken)
        for (_, e1), (s2, _) in itertools.pairwise(left):
            assert e1 <= s2, left


def test_random_merges_keep_every_rule() -> None:
    rng = random.Random(7)
    for _ in range(_ROUNDS):
        start = rng.randrange(0, 20)
        end = start + rng.randrange(1, _LINE)
        lq, hq, pending, running = (_random_intervals(rng) for _ in range(4))
        site = None if rng.random() < 0.2 else _random_intervals(rng)
        periods = merge_timeline(
            start,
            end,
            central_lq=lq,
            retrieved_hq=hq,
            site_holds=site,
            pending=pending,
            running=running,
        )
        order = list(PeriodKind)
        assert periods == sorted(periods, key=lambda p: (p.start_ns, order.index(p.kind)))
        by_kind = {
            kind: [(p.start_ns, p.end_ns) for p in periods if p.kind is kind] for kind in PeriodKind
        }
        for intervals in by_kind.values():
            _assert_disjoint_sorted(intervals, start, end)
        span = set(range(start, end))
        at_central = _points_within(lq, span)
        fetched = _points_within(hq, span)
        assert _points(by_kind[PeriodKind.CENTRAL_LQ]) == at_central
        assert _points(by_kind[PeriodKind.RETRIEVED_HQ]) == fetched
        moving = _points_within(running, span) - fetched
        assert _points(by_kind[PeriodKind.RUNNING]) == moving
        assert _points(by_kind[PeriodKind.PENDING]) == (
            _points_within(pending, span) - fetched - moving
        )
        available = _points(by_kind[PeriodKind.REMOTE_AVAILABLE])
        nothing = _points(by_kind[PeriodKind.NONE])
        assert not available & fetched  # never offered again once fetched
        if site is None:
            assert available == set()
            assert nothing == set()
        else:
            at_site = _points_within(site, span)
            assert available == at_site - fetched
            # "none" exactly where neither the central nor the site holds anything.
            assert nothing == span - at_central - fetched - at_site
