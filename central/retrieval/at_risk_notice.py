"""The "retrieval_at_risk" notification: a device whose recordings a retrieval may not get.

Placing a job's holds at the site (`RetrievalWork`) can show that part of a device's span
is at risk: the site refused the hold, so its retention may delete the recordings before
they are retrieved, or its retention had already deleted part of the span, which is lost.
The job is then flagged `at_risk`, and the device gets a notification (its site and device
set, so it shows on the camera) naming the job and what is at risk.

One notification is open per device, however many jobs put it at risk (the catalog keeps
at most one open per kind, site and device). When a further job puts a device at risk while
its notification is open, that one is cleared and a new one is raised, naming the new job
and what it risks, then the device's other unfinished jobs at risk: the operator sees a
new notification, and the earlier one stays in the history with its own message. A job
whose risk is found again (its holds are placed anew on each link) changes nothing, since
the open notification names it already.

The notification is cleared once no unfinished job at risk has yet to finish the device's
stream: those jobs completed (the recordings were retrieved), failed or were stopped, or
that stream of theirs ended. A job removed with its device or site takes the device's
notifications with it (the catalog's cascade). The flag is the job's, not the device's: a
job at risk on one of its devices keeps the notification of another of its devices open
(if another job raised one) until its stream of that device ends.

At start-up the open notifications of this kind are checked the same way, so one left open
by a central stopped between a job's end and the clear is cleared; one without a device
(raised before notifications were per device) is cleared too, and a job still at risk
raises its devices' notifications when its holds are placed on the next link.

One change at a time: a risk raised and a job's end settled never interleave, so a clear
decided on what the catalog said cannot close a notification raised meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from central.catalog import validation as check
from central.catalog.catalog import MAX_NOTIFICATION_LIMIT, Catalog
from central.catalog.errors import NotFound
from central.retrieval.job_records import RetrievalJob
from central.retrieval.job_state import is_final
from shared.clock import Clock

NOTICE_AT_RISK = "retrieval_at_risk"
MAX_NAMED_JOBS = 20
"""How many other jobs at risk a notification names; the rest are counted."""


@dataclass(frozen=True, slots=True)
class DeviceRisk:
    """What a job may not get of one device's span, in words: the hold the site refused
    and why, or the part of the span its retention already deleted."""

    device_id: str
    what: str


class AtRiskNotice:
    """See the module docstring."""

    def __init__(self, catalog: Catalog, clock: Clock) -> None:
        self._catalog = catalog
        self._clock = clock
        self._one_at_a_time = asyncio.Lock()

    async def raise_for(self, job_id: str, risks: Sequence[DeviceRisk]) -> None:
        """The job (already flagged at risk) may not get these devices' recordings: open
        each device's notification, or name the job in a new one if another is open. A
        device whose stream of the job ended meanwhile is left alone."""
        async with self._one_at_a_time:
            await asyncio.to_thread(self._raise_for, job_id, tuple(risks))

    async def settle(self, site_id: str, device_ids: Iterable[str]) -> None:
        """A job at risk, or its stream of some of these devices, ended: clear the
        notification of each device no unfinished job at risk has yet to finish."""
        async with self._one_at_a_time:
            await asyncio.to_thread(self._settle, site_id, tuple(device_ids))

    async def settle_open(self) -> None:
        """At start-up: settle every open notification of this kind."""
        async with self._one_at_a_time:
            await asyncio.to_thread(self._settle_open)

    def _raise_for(self, job_id: str, risks: tuple[DeviceRisk, ...]) -> None:
        try:
            job = self._catalog.retrieval_job(job_id)
        except NotFound:
            return  # removed with its devices or site, and their notifications
        streams = job.stream_by_device
        for risk in risks:
            stream = streams.get(risk.device_id)
            if is_final(job.state) or stream is None or is_final(stream.state):
                continue  # ended meanwhile: nothing left at risk
            try:
                self._raise_one(job, risk)
            except NotFound:
                continue  # the device was removed meanwhile

    def _raise_one(self, job: RetrievalJob, risk: DeviceRisk) -> None:
        site_id, device_id = job.site_id, risk.device_id
        message = _fitted(f"retrieval {job.job_id}: {risk.what}")
        now_ns = self._clock.now_ns()
        opened = self._catalog.raise_notification(
            NOTICE_AT_RISK, site_id, device_id, message, now_ns
        )
        if job.job_id in opened.message:
            return  # raised now, or it names this job already
        at_risk = self._at_risk_jobs(site_id, device_id)
        others = [other.job_id for other in at_risk if other.job_id != job.job_id]
        self._catalog.clear_notification(NOTICE_AT_RISK, site_id, device_id, now_ns)
        self._catalog.raise_notification(
            NOTICE_AT_RISK, site_id, device_id, _naming_others(message, others), now_ns
        )

    def _settle(self, site_id: str, device_ids: tuple[str, ...]) -> None:
        for device_id in device_ids:
            if not self._at_risk_jobs(site_id, device_id):
                self._catalog.clear_notification(
                    NOTICE_AT_RISK, site_id, device_id, self._clock.now_ns()
                )

    def _settle_open(self) -> None:
        opened = self._catalog.notifications(open_only=True, limit=MAX_NOTIFICATION_LIMIT)
        for note in opened:
            if note.kind != NOTICE_AT_RISK:
                continue
            if note.site_id is None or note.device_id is None:
                self._catalog.clear_notification(
                    NOTICE_AT_RISK, note.site_id, note.device_id, self._clock.now_ns()
                )
            else:
                self._settle(note.site_id, (note.device_id,))

    def _at_risk_jobs(self, site_id: str, device_id: str) -> list[RetrievalJob]:
        """The unfinished jobs at risk that have yet to finish the device's stream."""
        try:
            jobs = self._catalog.unfinished_retrieval_jobs(site_id=site_id, device_id=device_id)
        except NotFound:
            return []  # the site or device was removed
        found = []
        for job in jobs:
            stream = job.stream_by_device.get(device_id)
            if job.at_risk and stream is not None and not is_final(stream.state):
                found.append(job)
        return found


def _naming_others(message: str, others: Sequence[str]) -> str:
    """The message, then the device's other jobs at risk (the first `MAX_NAMED_JOBS`)."""
    if not others:
        return message
    named = ", ".join(f"retrieval {job_id}" for job_id in others[:MAX_NAMED_JOBS])
    if len(others) > MAX_NAMED_JOBS:
        named += f" and {len(others) - MAX_NAMED_JOBS} more"
    return _fitted(f"{message}; also at risk on this device: {named}")


def _fitted(message: str) -> str:
    """The message, cut to what a notification takes."""
    if len(message) <= check.MAX_MESSAGE_CHARS:
        return message
    return message[: check.MAX_MESSAGE_CHARS - 3] + "..."
