"""Retrieval on a site's events: `EventRetrieval` over a link whose `events()` is a small
stand-in (the boundary the work consumes; the jobs go into a real catalog).

An event a rule names makes one job of the rule's devices for [at - before, at + after);
events of other kinds, from other devices, or for a disabled rule make none; a burst of
overlapping events queues only what is new; the subscription follows the kinds the rules
name and is renewed when they change; the work ends when the site ends the stream."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

from central.catalog import JobOrigin, NewRetrievalRule, RetrievalJob
from central.retrieval.event_rules import EventRetrieval
from shared.clock import NS_PER_S
from shared.link.messages import EventItem
from shared.link_io.client import LinkClient
from tests.central.catalog.catalog_parts import camera, door_input
from tests.central.retrieval_rules.conftest import RuleWorld

AT_NS = 1_699_990_000 * NS_PER_S
WAIT_S = 10.0


class EventLink:
    """Stands in for a `LinkClient`'s `events()`: each subscription gets the events put in
    `send` afterwards that are of its kinds; `end()` ends the current one as a site does."""

    def __init__(self) -> None:
        self.subscriptions: list[tuple[str, ...]] = []
        self._queue: asyncio.Queue[EventItem | None] = asyncio.Queue()
        self.open_subscriptions = 0

    def send(self, kind: str, device_id: str, at_ns: int) -> None:
        self._queue.put_nowait(EventItem(1, kind, device_id, at_ns, {}))

    def end(self) -> None:
        self._queue.put_nowait(None)

    @contextlib.asynccontextmanager
    async def events(self, kinds: tuple[str, ...] = ()) -> AsyncIterator[AsyncIterator[EventItem]]:
        self.subscriptions.append(kinds)
        self.open_subscriptions += 1

        async def items() -> AsyncIterator[EventItem]:
            while (event := await self._queue.get()) is not None:
                if event.kind in kinds:
                    yield event

        try:
            yield items()
        finally:
            self.open_subscriptions -= 1


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait, bounded, until `condition()` holds."""
    async with asyncio.timeout(WAIT_S):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.01)


async def _rule_jobs(world: RuleWorld) -> list[RetrievalJob]:
    jobs = await asyncio.to_thread(world.catalog.retrieval_jobs, limit=1000)
    return sorted((j for j in jobs if j.origin is JobOrigin.RULE), key=lambda j: j.start_ns)


async def _jobs_count(world: RuleWorld, count: int) -> list[RetrievalJob]:
    async def enough() -> bool:
        return len(await _rule_jobs(world)) >= count

    await _until(enough)
    return await _rule_jobs(world)


def _motion_rule(world: RuleWorld, **fields: object) -> NewRetrievalRule:
    values: dict[str, object] = {
        "name": "Yard",
        "site_id": world.site.site_id,
        "kind": "event",
        "device_ids": (world.cam_a.device_id, world.cam_b.device_id),
        "events": ("motion_started",),
        "sources": (world.cam_a.device_id,),
        "before_s": 60,
        "after_s": 120,
    }
    values.update(fields)
    return NewRetrievalRule(**values)  # type: ignore[arg-type]


async def _serving(work: EventRetrieval, world: RuleWorld, link: EventLink) -> asyncio.Task[None]:
    return asyncio.create_task(work.serve(world.site, cast(LinkClient, link)))


async def _subscribed(link: EventLink, count: int) -> None:
    async def subscribed() -> bool:
        return len(link.subscriptions) >= count and link.open_subscriptions == 1

    await _until(subscribed)


async def test_an_event_makes_a_job_around_it_for_the_rules_devices(world: RuleWorld) -> None:
    rule = world.catalog.add_retrieval_rule(_motion_rule(world))
    world.catalog.add_retrieval_rule(
        _motion_rule(world, name="Door", events=("input_active",), sources=(), before_s=0)
    )
    link = EventLink()
    work = EventRetrieval(world.catalog, world.retrievals)
    serving = await _serving(work, world, link)
    await _subscribed(link, 1)
    assert link.subscriptions == [("input_active", "motion_started")]
    link.send("motion_started", "cam-b", AT_NS)  # not a source of the rule
    link.send("motion_started", "cam-a", AT_NS + 10 * NS_PER_S)
    (job,) = await _jobs_count(world, 1)
    assert job.rule_id == rule.rule_id
    assert job.origin is JobOrigin.RULE
    assert job.site_id == world.site.site_id
    assert job.device_ids == (world.cam_a.device_id, world.cam_b.device_id)
    assert job.quality == "hq"
    assert (job.start_ns, job.end_ns) == (AT_NS - 50 * NS_PER_S, AT_NS + 130 * NS_PER_S)
    assert work.queued_until_ns(rule.rule_id) == job.end_ns
    link.end()
    await asyncio.wait_for(serving, WAIT_S)  # the stream ended: the work is done
    assert len(await _rule_jobs(world)) == 1


async def test_a_burst_queues_only_what_is_new(world: RuleWorld) -> None:
    rule = world.catalog.add_retrieval_rule(_motion_rule(world))
    link = EventLink()
    work = EventRetrieval(world.catalog, world.retrievals)
    serving = await _serving(work, world, link)
    await _subscribed(link, 1)
    for offset_s in (0, 1, 2, 30):  # motion reported again and again
        link.send("motion_started", "cam-a", AT_NS + offset_s * NS_PER_S)
    link.send("motion_started", "cam-a", AT_NS + 20 * NS_PER_S)  # late, inside what was queued
    link.send("motion_started", "cam-a", AT_NS + 1000 * NS_PER_S)  # a new incident
    jobs = await _jobs_count(world, 5)
    spans = [((j.start_ns - AT_NS) // NS_PER_S, (j.end_ns - AT_NS) // NS_PER_S) for j in jobs]
    assert spans == [(-60, 120), (120, 121), (121, 122), (122, 150), (940, 1120)]
    link.end()
    await asyncio.wait_for(serving, WAIT_S)
    assert len(await _rule_jobs(world)) == 5
    assert work.queued_until_ns(rule.rule_id) == AT_NS + 1120 * NS_PER_S


async def test_the_subscription_follows_the_rules(world: RuleWorld) -> None:
    link = EventLink()
    work = EventRetrieval(world.catalog, world.retrievals)
    serving = await _serving(work, world, link)
    await asyncio.sleep(0.05)
    assert link.subscriptions == []  # no rule: nothing to follow
    rule = world.catalog.add_retrieval_rule(_motion_rule(world))
    work.rules_changed(world.site.site_id)
    await _subscribed(link, 1)
    assert link.subscriptions == [("motion_started",)]
    world.catalog.update_retrieval_rule(rule.rule_id, events=["camera_lost", "storage_low"])
    work.rules_changed(world.site.site_id)
    await _subscribed(link, 2)
    assert link.subscriptions[-1] == ("camera_lost", "storage_low")
    # A storage event comes from the site itself: it triggers a rule for any source.
    world.catalog.update_retrieval_rule(rule.rule_id, sources=[])
    link.send("storage_low", "site", AT_NS)
    (job,) = await _jobs_count(world, 1)
    assert job.start_ns == AT_NS - 60 * NS_PER_S
    world.catalog.update_retrieval_rule(rule.rule_id, enabled=False)
    link.send("camera_lost", "cam-a", AT_NS + 5000 * NS_PER_S)  # read before the next change
    work.rules_changed(world.site.site_id)

    async def unsubscribed() -> bool:
        return link.open_subscriptions == 0

    await _until(unsubscribed)
    assert len(await _rule_jobs(world)) == 1
    work.rules_changed("s-elsewhere")  # another site's change touches nothing here
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    assert link.open_subscriptions == 0


async def test_a_job_the_catalog_refuses_is_skipped_and_the_work_goes_on(
    world: RuleWorld,
) -> None:
    lq_rule = world.catalog.add_retrieval_rule(_motion_rule(world, quality="lq"))
    hq_rule = world.catalog.add_retrieval_rule(_motion_rule(world, name="HQ", after_s=1))
    # Camera a no longer has an lq stream: the lq rule cannot make its job any more.
    only_hq = camera("cam-a")
    only_hq = dataclasses.replace(only_hq, streams=only_hq.streams[:1])
    world.catalog.apply_hardware(world.site.site_id, [only_hq, camera("cam-b"), door_input("door")])
    link = EventLink()
    work = EventRetrieval(world.catalog, world.retrievals)
    serving = await _serving(work, world, link)
    await _subscribed(link, 1)
    link.send("motion_started", "cam-a", AT_NS)
    (job,) = await _jobs_count(world, 1)
    assert job.rule_id == hq_rule.rule_id
    assert work.queued_until_ns(lq_rule.rule_id) is None
    assert not serving.done()
    link.end()
    await asyncio.wait_for(serving, WAIT_S)
