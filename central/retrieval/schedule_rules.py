"""Retrieval on a schedule: every daily interval of a schedule rule becomes a job once it ends.

A schedule rule says "retrieve 07:00-22:00 of these devices every day", by the site's clock
in its time zone (the interval may cross midnight). `ScheduleRetrieval` is one task for the
whole central (not a link work: a job made while the site is away waits, pending, for the
site's link like any other). Each pass, for every enabled schedule rule, every interval
that has ended, after the rule's `last_queued_end_ns`, becomes a job with origin `rule` of
the rule's devices in its quality; then the rule's `last_queued_end_ns` moves to the end of
the last one. On the first pass of a new rule, or after the central was stopped for long,
only intervals ending in the last `CATCH_UP_DAYS` are queued (and a first interval that
began before that is cut there): older recordings are likely gone at the site, and an
operator can still ask for them.

The intervals are the openings of a `DailyWindow` of the rule's `daily` times, so the
nights the clocks change need no special case: the interval lasts what the clock shows
(07:00-22:00 is 14 or 16 hours long on those days; see `retrieval_window.py`).

Exactly once: the job is made before `last_queued_end_ns` moves, and before making one the
pass looks for a job of the rule with the same span among the site's newest jobs, so a
central killed between the two makes no second job for the interval.

The task wakes at the next end of an interval of any rule, and at least every
`RECHECK_S` seconds, since rules may be added or changed at any time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from central.catalog.catalog import Catalog
from central.catalog.errors import CatalogError
from central.catalog.records import SiteRecord
from central.retrieval.job_records import JobOrigin
from central.retrieval.retrieval_service import RetrievalRefused, RetrievalService
from central.retrieval.retrieval_window import DailyWindow
from central.retrieval.rule_records import RetrievalRule, daily_bounds
from shared.clock import NS_PER_S, Clock

_log = logging.getLogger(__name__)

CATCH_UP_DAYS = 7
RECHECK_S = 60.0
RETRY_S = 60.0
_NS_PER_DAY = 86_400 * NS_PER_S
_LOOK_BACK_NS = 2 * _NS_PER_DAY  # an interval lasts at most a day: its start is within this
_RECENT_JOBS = 200  # how far back among the site's jobs a pass looks for one it made


@dataclass(frozen=True, slots=True)
class Interval:
    """One daily interval of a rule: [start_ns, end_ns)."""

    start_ns: int
    end_ns: int


def ended_intervals(window: DailyWindow, after_ns: int, now_ns: int) -> list[Interval]:
    """The openings of `window` that end in (after_ns, now_ns], oldest first, each cut to
    begin no earlier than `after_ns` (pure)."""
    intervals: list[Interval] = []
    at_ns = after_ns - _LOOK_BACK_NS
    if window.is_open(at_ns):
        at_ns = window.closes_ns(at_ns)  # start from a closed instant, never mid-interval
    while True:
        start_ns = window.next_opening_ns(at_ns)
        if start_ns >= now_ns:
            return intervals
        end_ns = window.closes_ns(start_ns)
        if end_ns > now_ns:
            return intervals
        if end_ns > after_ns:
            intervals.append(Interval(max(start_ns, after_ns), end_ns))
        at_ns = end_ns


def rule_window(rule: RetrievalRule, site: SiteRecord) -> DailyWindow:
    """The rule's daily interval as a window on the site's clock."""
    assert rule.daily is not None  # a schedule rule has one
    start, end = daily_bounds(rule.daily)
    return DailyWindow(start, end, site.time_zone)


class ScheduleRetrieval:
    """See the module docstring. `start()` runs it; `stop()` ends it."""

    def __init__(self, catalog: Catalog, retrievals: RetrievalService, *, clock: Clock) -> None:
        self._catalog = catalog
        self._retrievals = retrievals
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="schedule-retrieval")

    async def stop(self) -> None:
        """End the task (idempotent); a pass under way is cancelled where it is."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def rules_changed(self, site_id: str) -> None:
        """A rule changed: look again now rather than at the next planned wake."""
        del site_id  # every rule is looked at on each pass
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.queue_ended()
                delay_s = await asyncio.to_thread(self.seconds_to_next_end)
            except Exception:
                # Logged, never fatal: the schedule goes on at the next pass.
                _log.exception("schedule retrieval failed; again in %.0f s", RETRY_S)
                delay_s = RETRY_S
            sleeping = asyncio.create_task(self._clock.sleep(delay_s))
            waking = asyncio.create_task(self._wake.wait())
            try:
                await asyncio.wait((sleeping, waking), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeping, waking):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def queue_ended(self) -> int:
        """One pass: queue every ended interval of every enabled schedule rule; how many
        jobs were made."""
        now_ns = self._clock.now_ns()
        made = 0
        for rule, site in await asyncio.to_thread(self._schedule_rules):
            made += await self._queue_rule(rule, site, now_ns)
        return made

    def seconds_to_next_end(self) -> float:
        """How long until the next interval of an enabled rule ends, at most `RECHECK_S`
        (blocking)."""
        now_ns = self._clock.now_ns()
        soonest_ns = now_ns + int(RECHECK_S * NS_PER_S)
        for rule, site in self._schedule_rules():
            soonest_ns = min(soonest_ns, rule_window(rule, site).closes_ns(now_ns))
        return max(0.0, (soonest_ns - now_ns) / NS_PER_S)

    def _schedule_rules(self) -> list[tuple[RetrievalRule, SiteRecord]]:
        sites = {site.site_id: site for site in self._catalog.sites()}
        return [
            (rule, sites[rule.site_id])
            for rule in self._catalog.retrieval_rules()
            if rule.enabled and rule.kind == "schedule" and rule.site_id in sites
        ]

    async def _queue_rule(self, rule: RetrievalRule, site: SiteRecord, now_ns: int) -> int:
        horizon_ns = now_ns - CATCH_UP_DAYS * _NS_PER_DAY
        after_ns = max(horizon_ns, rule.last_queued_end_ns or 0)
        intervals = await asyncio.to_thread(
            ended_intervals, rule_window(rule, site), after_ns, now_ns
        )
        made = 0
        for interval in intervals:
            if not await asyncio.to_thread(self._already_queued, rule, interval):
                try:
                    job = await self._retrievals.create(
                        rule.device_ids,
                        interval.start_ns,
                        interval.end_ns,
                        quality=rule.quality,
                        origin=JobOrigin.RULE,
                        rule_id=rule.rule_id,
                    )
                except (CatalogError, RetrievalRefused) as exc:
                    # The interval is passed over: its rule cannot make a job now.
                    _log.warning("rule %s (%s): interval skipped: %s", rule.rule_id, rule.name, exc)
                else:
                    made += 1
                    _log.info("rule %s (%s): retrieval %s", rule.rule_id, rule.name, job.job_id)
            await asyncio.to_thread(
                self._catalog.set_rule_last_queued, rule.rule_id, interval.end_ns
            )
        return made

    def _already_queued(self, rule: RetrievalRule, interval: Interval) -> bool:
        """Whether a job of the rule for this interval exists (a pass killed between making
        it and recording it)."""
        recent = self._catalog.retrieval_jobs(site_id=rule.site_id, limit=_RECENT_JOBS)
        return any(
            job.rule_id == rule.rule_id
            and (job.start_ns, job.end_ns) == (interval.start_ns, interval.end_ns)
            for job in recent
        )
