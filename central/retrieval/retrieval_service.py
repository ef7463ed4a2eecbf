"""Retrieval jobs as operators and rules ask for them: create, list, read, stop.

A job retrieves one span of a set of devices of one site at one quality (HQ by default);
the catalog keeps it (and its cursors) and `RetrievalWork` runs it whenever the site's link
is up, so a job made while the site is offline simply waits, pending, for the site. Making
or stopping a job tells the site's run at once (`jobs_changed`). A job made while the site
is out of reach is flagged at risk at once when what the central last saw of the site's
retention says part of its span is gone by now (`away_risk`).

A request naming devices of several sites is refused with a reason (a job's pace, window and
holds are its site's); the caller makes one job per site.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Sequence

from central.catalog.catalog import Catalog
from central.merged_timeline import Interval, RetrievalSpans
from central.retrieval.away_risk import AwayRisk
from central.retrieval.job_records import JobOrigin, JobState, NewRetrievalJob, RetrievalJob
from central.retrieval.job_state import is_final
from central.retrieval.retrieval_work import RetrievalWork
from central.retrieval.stream_rate import RateReading


class RetrievalRefused(ValueError):
    """The request cannot make a job; `field` names what is wrong with it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class RetrievalService:
    """See the module docstring."""

    def __init__(
        self, catalog: Catalog, work: RetrievalWork, *, away: AwayRisk | None = None
    ) -> None:
        """`away`: judges a job queued while its site is out of reach (None: not judged
        until the site is back and its holds' answer tells)."""
        self._catalog = catalog
        self._work = work
        self._away = away

    async def create(
        self,
        device_ids: Sequence[str],
        start_ns: int,
        end_ns: int,
        *,
        quality: str = "hq",
        origin: JobOrigin = JobOrigin.USER,
        created_by: str | None = None,
        rule_id: str | None = None,
    ) -> RetrievalJob:
        """A new pending job (`NotFound` for an unknown device; `RetrievalRefused` for
        devices of several sites)."""
        devices = await asyncio.to_thread(lambda: [self._catalog.device(d) for d in device_ids])
        sites = sorted({device.site_id for device in devices})
        if len(sites) > 1:
            raise RetrievalRefused(
                "device_ids",
                f"the devices are of {len(sites)} sites ({', '.join(sites)}); a job retrieves "
                "from one site: make one per site",
            )
        job = await asyncio.to_thread(
            self._catalog.add_retrieval_job,
            NewRetrievalJob(
                site_id=sites[0],
                device_ids=tuple(device_ids),
                start_ns=start_ns,
                end_ns=end_ns,
                quality=quality,  # type: ignore[arg-type]
                origin=origin,
                created_by=created_by,
                rule_id=rule_id,
            ),
        )
        self._work.jobs_changed(job.site_id)
        if self._away is not None and await self._away.check(job):
            job = await asyncio.to_thread(self._catalog.retrieval_job, job.job_id)
        return job

    async def job(self, job_id: str) -> RetrievalJob:
        return await asyncio.to_thread(self._catalog.retrieval_job, job_id)

    async def jobs(
        self,
        *,
        states: Collection[JobState] | None = None,
        site_id: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> list[RetrievalJob]:
        return await asyncio.to_thread(
            lambda: self._catalog.retrieval_jobs(
                states=states, site_id=site_id, after=after, limit=limit
            )
        )

    async def stop(self, job_id: str) -> RetrievalJob:
        """Stop the job: what was retrieved stays. Stopping a stopped job changes nothing;
        `Conflict` (from the catalog) for a job that completed or failed."""
        job = await self.job(job_id)
        if job.state is JobState.STOPPED:
            return job
        if not is_final(job.state):
            job = await asyncio.to_thread(
                lambda: self._catalog.set_retrieval_job_state(
                    job_id, JobState.STOPPED, reason="stopped by a user"
                )
            )
        else:  # the catalog refuses it, saying why
            await asyncio.to_thread(
                lambda: self._catalog.set_retrieval_job_state(job_id, JobState.STOPPED)
            )
        await self._work.stop_streams_of(job_id, job.site_id)
        return await self.job(job_id)

    def pending_spans(self, device_id: str, start_ns: int, end_ns: int) -> list[Interval]:
        """What the device's unfinished jobs wait to bring within [start_ns, end_ns)
        (blocking; the timeline's `pending` periods). See `spans_to_bring`."""
        return self._spans_to_bring(device_id, start_ns, end_ns).pending

    def running_spans(self, device_id: str, start_ns: int, end_ns: int) -> list[Interval]:
        """What the device's unfinished jobs are bringing now, and have not brought yet,
        within [start_ns, end_ns) (blocking; the timeline's `running` periods)."""
        return self._spans_to_bring(device_id, start_ns, end_ns).running

    def _spans_to_bring(self, device_id: str, start_ns: int, end_ns: int) -> RetrievalSpans:
        jobs = self._catalog.unfinished_retrieval_jobs(device_id=device_id)
        return spans_to_bring(jobs, device_id, start_ns, end_ns)

    def settings_changed(self, site_id: str) -> None:
        """The site's retrieval settings changed: its run applies them now."""
        self._work.jobs_changed(site_id)

    def pace(self, job: RetrievalJob) -> dict[str, RateReading]:
        """The measured pace of the job's running streams, by device."""
        return self._work.pace(job)


def spans_to_bring(
    jobs: Iterable[RetrievalJob], device_id: str, start_ns: int, end_ns: int
) -> RetrievalSpans:
    """What `jobs` have yet to bring of the device within [start_ns, end_ns): for each job
    whose stream of the device is not final, from the stream's covered instant (the job's
    start before any chunk) to the job's end.

    That part is running when the job runs and the device's stream has started: it runs
    now, or it brought chunks and waits between two requests (for the site to record more,
    or to ask again after a rejected chunk). Otherwise it is pending: the stream has not
    started (it waits for a slot), or the whole job waits (for the link, the window, disk
    space). Spans are as the jobs give them: overlapping, in no order."""
    spans = RetrievalSpans(pending=[], running=[])
    for job in jobs:
        stream = job.stream_by_device.get(device_id)
        if stream is None or is_final(job.state) or is_final(stream.state):
            continue
        covered = job.start_ns if stream.covered_until_ns is None else stream.covered_until_ns
        low, high = max(covered, job.start_ns, start_ns), min(job.end_ns, end_ns)
        if low >= high:
            continue
        started = stream.state is JobState.RUNNING or stream.covered_until_ns is not None
        running = job.state is JobState.RUNNING and started
        (spans.running if running else spans.pending).append((low, high))
    return spans
