"""Retrieval on a schedule: each daily interval of a schedule rule becomes one job once it
has ended, by the site's clock in its time zone (Europe/Paris here): across midnight, on
the nights the clocks change, at most the last 7 days on a first pass, never twice (not
even when a pass was killed between making the job and recording it), and the task wakes
at the next end of an interval."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from central.catalog import JobOrigin, NewRetrievalJob, NewRetrievalRule, RetrievalJob
from central.retrieval.retrieval_window import DailyWindow
from central.retrieval.schedule_rules import (
    CATCH_UP_DAYS,
    RECHECK_S,
    Interval,
    ScheduleRetrieval,
    ended_intervals,
)
from shared.clock import NS_PER_S
from tests.central.retrieval_rules.conftest import RuleWorld
from tests.fakes.held_clock import HeldClock

PARIS = ZoneInfo("Europe/Paris")
HOUR_NS = 3600 * NS_PER_S
WAIT_S = 10.0


def paris_ns(text: str) -> int:
    """The instant at which a clock in Paris shows `text` ("2024-03-30 22:00")."""
    return int(datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()) * NS_PER_S


def _rule(world: RuleWorld, daily: str, **fields: object) -> NewRetrievalRule:
    values: dict[str, object] = {
        "name": "Daily",
        "site_id": world.site.site_id,
        "kind": "schedule",
        "device_ids": (world.cam_a.device_id, world.cam_b.device_id),
        "daily": daily,
    }
    values.update(fields)
    return NewRetrievalRule(**values)  # type: ignore[arg-type]


async def _rule_jobs(world: RuleWorld) -> list[RetrievalJob]:
    jobs = await asyncio.to_thread(world.catalog.retrieval_jobs, limit=1000)
    return sorted((j for j in jobs if j.origin is JobOrigin.RULE), key=lambda j: j.start_ns)


def test_the_intervals_that_ended_follow_the_clock_in_the_time_zone() -> None:
    day = DailyWindow("07:00", "22:00", "Europe/Paris")
    assert ended_intervals(day, paris_ns("2024-05-01 12:00"), paris_ns("2024-05-03 21:59")) == [
        Interval(paris_ns("2024-05-01 12:00"), paris_ns("2024-05-01 22:00")),  # cut at after
        Interval(paris_ns("2024-05-02 07:00"), paris_ns("2024-05-02 22:00")),
    ]
    assert ended_intervals(day, paris_ns("2024-05-02 22:00"), paris_ns("2024-05-03 22:00")) == [
        Interval(paris_ns("2024-05-03 07:00"), paris_ns("2024-05-03 22:00"))
    ]
    night = DailyWindow("22:00", "06:00", "Europe/Paris")
    assert ended_intervals(night, paris_ns("2024-05-01 23:00"), paris_ns("2024-05-03 05:00")) == [
        Interval(paris_ns("2024-05-01 23:00"), paris_ns("2024-05-02 06:00")),
    ]


def test_the_nights_the_clocks_change_last_what_the_clock_shows() -> None:
    night = DailyWindow("22:00", "06:00", "Europe/Paris")
    spring = ended_intervals(night, paris_ns("2024-03-30 12:00"), paris_ns("2024-03-31 12:00"))
    assert spring == [Interval(paris_ns("2024-03-30 22:00"), paris_ns("2024-03-31 06:00"))]
    assert spring[0].end_ns - spring[0].start_ns == 7 * HOUR_NS
    autumn = ended_intervals(night, paris_ns("2024-10-26 12:00"), paris_ns("2024-10-27 12:00"))
    assert autumn[0].end_ns - autumn[0].start_ns == 9 * HOUR_NS
    day = DailyWindow("07:00", "22:00", "Europe/Paris")
    (sunday,) = ended_intervals(day, paris_ns("2024-03-31 00:00"), paris_ns("2024-03-31 23:00"))
    assert sunday.end_ns - sunday.start_ns == 15 * HOUR_NS


async def test_each_ended_interval_becomes_one_job_and_catch_up_is_bounded(
    world: RuleWorld,
) -> None:
    world.clock.set_wall_ns(paris_ns("2024-05-20 12:00"))
    rule = world.catalog.add_retrieval_rule(_rule(world, "22:00-06:00", quality="lq"))
    disabled = world.catalog.add_retrieval_rule(_rule(world, "07:00-08:00", enabled=False))
    schedule = ScheduleRetrieval(world.catalog, world.retrievals, clock=world.clock)
    assert await schedule.queue_ended() == CATCH_UP_DAYS
    jobs = await _rule_jobs(world)
    # The nights that ended in the last 7 days, no older one.
    assert [(j.start_ns, j.end_ns) for j in jobs] == [
        (paris_ns(f"2024-05-{d:02} 22:00"), paris_ns(f"2024-05-{d + 1:02} 06:00"))
        for d in range(13, 20)
    ]
    for job in jobs:
        assert job.rule_id == rule.rule_id
        assert job.quality == "lq"
        assert job.device_ids == rule.device_ids
    stored = world.catalog.retrieval_rule(rule.rule_id)
    assert stored.last_queued_end_ns == paris_ns("2024-05-20 06:00")
    assert world.catalog.retrieval_rule(disabled.rule_id).last_queued_end_ns is None
    # Nothing new has ended: nothing more is queued.
    assert await schedule.queue_ended() == 0
    world.clock.set_wall_ns(paris_ns("2024-05-21 06:00"))
    assert await schedule.queue_ended() == 1
    assert (await _rule_jobs(world))[-1].start_ns == paris_ns("2024-05-20 22:00")
    # After a long stop, still no more than 7 days back.
    world.clock.set_wall_ns(paris_ns("2024-06-30 07:00"))
    assert await schedule.queue_ended() == CATCH_UP_DAYS


async def test_an_interval_queued_before_a_kill_is_not_queued_again(world: RuleWorld) -> None:
    world.clock.set_wall_ns(paris_ns("2024-05-20 23:00"))
    rule = world.catalog.add_retrieval_rule(_rule(world, "07:00-22:00"))
    world.catalog.set_rule_last_queued(rule.rule_id, paris_ns("2024-05-19 22:00"))
    # The last pass made the job for the 20th, then the central was killed.
    world.catalog.add_retrieval_job(
        NewRetrievalJob(
            site_id=world.site.site_id,
            device_ids=rule.device_ids,
            start_ns=paris_ns("2024-05-20 07:00"),
            end_ns=paris_ns("2024-05-20 22:00"),
            origin=JobOrigin.RULE,
            rule_id=rule.rule_id,
        )
    )
    schedule = ScheduleRetrieval(world.catalog, world.retrievals, clock=world.clock)
    assert await schedule.queue_ended() == 0
    assert len(await _rule_jobs(world)) == 1
    stored = world.catalog.retrieval_rule(rule.rule_id)
    assert stored.last_queued_end_ns == paris_ns("2024-05-20 22:00")


async def test_the_task_wakes_at_the_next_end_and_runs_until_stopped(world: RuleWorld) -> None:
    world.clock.set_wall_ns(paris_ns("2024-05-20 21:59:30"))
    held = HeldClock()  # the task's sleeps wait for the test to move time on
    held.set_wall_ns(paris_ns("2024-05-20 21:59:30"))
    schedule = ScheduleRetrieval(world.catalog, world.retrievals, clock=held)
    assert await asyncio.to_thread(schedule.seconds_to_next_end) == RECHECK_S
    world.catalog.add_retrieval_rule(_rule(world, "07:00-22:00"))
    assert await asyncio.to_thread(schedule.seconds_to_next_end) == 30.0
    world.catalog.set_rule_last_queued(
        world.catalog.retrieval_rules()[0].rule_id, paris_ns("2024-05-19 22:00")
    )
    schedule.start()
    try:
        async with asyncio.timeout(WAIT_S):
            while True:  # until the task waits for the next end, 30 s on
                if held.sleepers:
                    break
                await asyncio.sleep(0.01)
            assert not await _rule_jobs(world)
            held.advance(30)
            world.clock.advance(30)
            while True:
                if await _rule_jobs(world):
                    break
                await asyncio.sleep(0.01)
    finally:
        await schedule.stop()
    jobs = await _rule_jobs(world)
    assert (jobs[0].start_ns, jobs[0].end_ns) == (
        paris_ns("2024-05-20 07:00"),
        paris_ns("2024-05-20 22:00"),
    )
    count = len(jobs)
    await asyncio.sleep(0.05)
    assert len(await _rule_jobs(world)) == count  # stopped: nothing more is queued
    await schedule.stop()  # idempotent
