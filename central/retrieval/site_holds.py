"""A site's holds for its retrieval jobs, over one link: placed, renewed, released.

Before a job's streams run on a link, a hold is placed at the site on each unfinished
stream's span, so the site's retention keeps what the job has yet to fetch. Holds expire
(`HoldRenewal`), so while the job is unfinished they are placed again during the link, when
they fall due, as they are at the start of each new link.

What the catalog records for a job and what the site holds stay consistent:

- a placement records the new holds first, then releases the old ones, then records what is
  left; a cut in between leaves holds recorded, which the next link releases;
- an old hold is released only when its device's stream got a new one (or needs none any
  more): a device whose new hold the site refused keeps its old one, the only hold covering
  its span, until it expires or the job ends;
- a job that ended while its holds were placed (stopped by a user) has everything released at
  once, what was just placed included;
- every placement and release of a job's holds takes the job's turn (`Turns`), so two of
  them never interleave and record over each other, which would leave a hold at the site
  that no job records.

A hold refused by the site, or a span the site's retention had already begun to delete,
flags the job at risk and raises the device's notification (`AtRiskNotice`), on a renewal
as on the first placement. At the start of a link, `tidy` releases the holds of jobs that
ended while the link was down, and the holds at the site that match one of the site's jobs
but that no unfinished job records (placed just before a cut or a kill).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from central.catalog.catalog import Catalog
from central.catalog.errors import NotFound
from central.catalog.records import SiteRecord
from central.retrieval.at_risk_notice import AtRiskNotice, DeviceRisk
from central.retrieval.hold_renewal import HoldRenewal
from central.retrieval.job_records import JobState, JobStream, RetrievalJob
from central.retrieval.job_state import JobTransitionError, is_final
from central.retrieval.turns import Turns
from shared.api_input import format_instant, parse_instant
from shared.clock import NS_PER_S, Clock
from shared.link_io.client import LinkClient, LinkLost, RequestFailed

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _StreamHold:
    """The site's answer to one stream's hold."""

    stream: JobStream
    remote_device_id: str | None  # None: the device was removed
    hold_ids: tuple[int, ...]
    risk: DeviceRisk | None
    refused: bool


@dataclass(frozen=True, slots=True)
class _Placed:
    """A placement done: when, what is at risk, whether the site refused some hold."""

    placed_ns: int
    risks: tuple[DeviceRisk, ...]
    refused: bool


class SiteHolds:
    """See the module docstring. `state_lock`: the run's lock on its jobs' state changes,
    taken to flag a job at risk (always after the job's turn, never before)."""

    def __init__(
        self,
        catalog: Catalog,
        clock: Clock,
        *,
        site: SiteRecord,
        link: LinkClient,
        renewal: HoldRenewal,
        locks: Turns[str],
        at_risk: AtRiskNotice,
        state_lock: asyncio.Lock,
    ) -> None:
        self._catalog = catalog
        self._clock = clock
        self._site = site
        self._link = link
        self._renewal = renewal
        self._locks = locks
        self._at_risk = at_risk
        self._state_lock = state_lock

    def turn(self, job_id: str) -> AbstractAsyncContextManager[None]:
        """The job's turn, for a caller that releases its holds (`release`)."""
        return self._locks.turn(job_id)

    async def place(self, job_id: str) -> int | None:
        """Place the job's holds, or renew them: when they fall due next (the central's
        wall clock), or None when the job has ended or is gone (nothing left to hold)."""
        async with self._locks.turn(job_id):
            placed = await self._place_in_turn(job_id)
        if placed is None:
            return None
        if placed.risks and await self._flag_at_risk(job_id):
            await self._at_risk.raise_for(job_id, placed.risks)
        return self._renewal.next_placement_ns(placed.placed_ns, refused=placed.refused)

    async def release(self, job: RetrievalJob) -> None:
        """Release the job's holds (the caller has its turn); those the link ended before
        reaching stay recorded, for the next link to release."""
        if job.holds:
            kept = await self._release_hold_ids(job.holds)
            await asyncio.to_thread(self._catalog.set_retrieval_job_holds, job.job_id, kept)

    async def release_job(self, job_id: str) -> None:
        """Release the holds the job records now, in its turn."""
        async with self._locks.turn(job_id):
            try:
                job = await asyncio.to_thread(self._catalog.retrieval_job, job_id)
            except NotFound:
                return  # removed with its site or device
            await self.release(job)

    async def tidy(self) -> None:
        """At the start of a link: release the holds of the site's jobs that ended while
        the link was down, and the holds at the site that no job records.

        A hold goes unrecorded when the link is cut (or the central killed) after the site
        placed it and before its answer was recorded. Such a hold is recognised by its
        device, stream and span, which are exactly one of the site's jobs' (the last ended
        ones or the unfinished ones), and by its id, which no unfinished job holds."""
        site_id = self._site.site_id
        ended = await asyncio.to_thread(
            self._catalog.retrieval_jobs,
            states=(JobState.COMPLETED, JobState.FAILED, JobState.STOPPED),
            site_id=site_id,
            limit=100,
        )
        for job in ended:
            if job.holds:
                await self.release_job(job.job_id)
        unfinished = await asyncio.to_thread(
            self._catalog.unfinished_retrieval_jobs, site_id=site_id
        )
        recorded = {hold_id for job in unfinished for hold_id in job.holds}
        ours = await asyncio.to_thread(self._held_spans, [*ended, *unfinished])
        orphans = [
            int(hold["id"])
            for hold in await self._link.list_holds()
            if int(hold["id"]) not in recorded
            and (hold["device_id"], hold["stream"], hold["start_ns"], hold["end_ns"]) in ours
        ]
        if orphans:
            _log.info("%s: releasing %d holds no job records", self._site.name, len(orphans))
            await self._release_hold_ids(tuple(orphans))

    # -- placing -------------------------------------------------------------------------

    async def _place_in_turn(self, job_id: str) -> _Placed | None:
        """One request per unfinished stream, at once; then the new holds are recorded,
        the old ones they supersede released, and what is left recorded."""
        catalog = self._catalog
        try:
            job = await asyncio.to_thread(catalog.retrieval_job, job_id)
        except NotFound:
            return None  # removed with its site or device
        if is_final(job.state):
            return None  # its end released its holds
        placed_ns = self._clock.now_ns()
        expires_ns = self._renewal.expires_ns(placed_ns)
        answers = await asyncio.gather(
            *(
                self._place_hold(job, stream, expires_ns)
                for stream in job.streams
                if not is_final(stream.state)
            )
        )
        placed = [hold_id for answer in answers for hold_id in answer.hold_ids]
        try:
            now = await asyncio.to_thread(catalog.retrieval_job, job_id)
        except NotFound:
            await self._release_hold_ids(tuple(placed))
            return None
        await asyncio.to_thread(catalog.set_retrieval_job_holds, job_id, [*placed, *now.holds])
        if is_final(now.state):
            # It ended while they were placed (a user stopped it): nothing is to be held.
            kept = await self._release_hold_ids((*placed, *now.holds))
            await asyncio.to_thread(catalog.set_retrieval_job_holds, job_id, kept)
            return None
        superseded, still_needed = await self._superseded(job, now.holds, answers)
        kept = await self._release_hold_ids(superseded)
        await asyncio.to_thread(
            catalog.set_retrieval_job_holds, job_id, [*placed, *still_needed, *kept]
        )
        risks = tuple(answer.risk for answer in answers if answer.risk is not None)
        return _Placed(placed_ns, risks, refused=any(answer.refused for answer in answers))

    async def _superseded(
        self, job: RetrievalJob, old: tuple[int, ...], answers: Sequence[_StreamHold]
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The old holds to release, and those still needed: the ones covering a stream
        whose new hold the site refused (the site's list says which stream each covers)."""
        refused = {(a.remote_device_id, a.stream.stream) for a in answers if a.refused}
        if not old or not refused:
            return old, ()
        needed = {
            int(hold["id"])
            for hold in await self._link.list_holds()
            if (hold["device_id"], hold["stream"]) in refused
            and (hold["start_ns"], hold["end_ns"]) == (job.start_ns, job.end_ns)
        }
        return (
            tuple(hold_id for hold_id in old if hold_id not in needed),
            tuple(hold_id for hold_id in old if hold_id in needed),
        )

    async def _place_hold(
        self, job: RetrievalJob, stream: JobStream, expires_ns: int
    ) -> _StreamHold:
        """The hold placed for one stream of the job, and what of the device's span is at
        risk: the site refused the hold (its reason), or its retention had already deleted
        part of the span."""
        try:
            device = await asyncio.to_thread(self._catalog.device, stream.device_id)
        except NotFound:
            return _StreamHold(stream, None, (), None, refused=False)
        remote = device.remote_device_id
        try:
            answer = await self._link.place_hold(
                remote,
                streams=(stream.stream,),
                start_ns=job.start_ns,
                end_ns=job.end_ns,
                expires_ns=expires_ns,
                reason=f"retrieval {job.job_id}",
            )
        except RequestFailed as exc:
            risk = DeviceRisk(
                stream.device_id,
                f"the site refused to hold the recordings ({stream.device_id}: "
                f"{exc.message or exc.code}); its retention may delete them before they are "
                "retrieved",
            )
            return _StreamHold(stream, remote, (), risk, refused=True)
        placed = tuple(int(hold["id"]) for hold in answer["holds"])
        deleted = [
            parse_instant("deleted_until", hold["deleted_until"])
            for hold in answer["holds"]
            if hold.get("deleted_until")
        ]
        if not deleted:
            return _StreamHold(stream, remote, placed, None, refused=False)
        until_ns = min(max(deleted), job.end_ns)
        lost_s = (until_ns - job.start_ns) / NS_PER_S
        risk = DeviceRisk(
            stream.device_id,
            f"the site's retention had already deleted part of the span ({stream.device_id}: "
            f"before {format_instant(until_ns)} ({lost_s:.0f} s)); those recordings are lost",
        )
        return _StreamHold(stream, remote, placed, risk, refused=False)

    async def _flag_at_risk(self, job_id: str) -> bool:
        """Flag the job at risk, its state and reason as they are now; False when it has
        ended (or is gone) meanwhile."""
        catalog = self._catalog
        async with self._state_lock:
            try:
                job = await asyncio.to_thread(catalog.retrieval_job, job_id)
                if is_final(job.state):
                    return False
                if not job.at_risk:
                    await asyncio.to_thread(
                        catalog.set_retrieval_job_state,
                        job_id,
                        job.state,
                        reason=job.reason,
                        at_risk=True,
                    )
            except (NotFound, JobTransitionError) as exc:
                _log.info("%s", exc)
                return False
        return True

    # -- releasing -----------------------------------------------------------------------

    async def _release_hold_ids(self, hold_ids: Sequence[int]) -> list[int]:
        """Release these holds at the site; the ones not released because the link ended."""
        kept: list[int] = []
        for hold_id in hold_ids:
            try:
                await self._link.release_hold(hold_id)
            except RequestFailed:
                pass  # already expired or released
            except LinkLost:
                kept.append(hold_id)
        return kept

    def _held_spans(self, jobs: list[RetrievalJob]) -> set[tuple[str, str, int, int]]:
        """(remote device, stream, start, end) of every hold these jobs place."""
        remote: dict[str, str] = {}
        spans = set()
        for job in jobs:
            for stream in job.streams:
                if stream.device_id not in remote:
                    try:
                        device = self._catalog.device(stream.device_id)
                    except NotFound:
                        continue
                    remote[stream.device_id] = device.remote_device_id
                spans.add((remote[stream.device_id], stream.stream, job.start_ns, job.end_ns))
        return spans
