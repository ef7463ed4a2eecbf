"""A job whose site is out of reach: has the site's retention deleted part of its span by
now? Flag the job at risk and tell of it (`AtRiskNotice`) when so.

A job queued while its site has a link gets its holds at once, and the hold's answer tells
of a span already deleted (`site_holds`). A site out of reach cannot be asked, so the
central goes by what it last saw of the site's retention (`retention_trends`): a job is at
risk when, for one of its devices, the forecast point up to which the site has deleted the
stream by now lies after the job's start. What is before the last reading's oldest
recording is known to be gone; beyond it, the message says it is a forecast and from what.

Checked when a job is created for a site without a link (`RetrievalService.create`), and
again for every unfinished job of such a site every `AWAY_CHECK_INTERVAL_S`, since the
forecast moves on while the site stays away. A job flagged stays flagged; once the site is
back, its holds' answer says what was really lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from central.catalog.catalog import Catalog
from central.catalog.errors import NotFound
from central.retrieval.at_risk_notice import AtRiskNotice, DeviceRisk
from central.retrieval.job_records import RetrievalJob
from central.retrieval.job_state import JobTransitionError, is_final
from central.retrieval.retention_trends import RetentionTrend, RetentionTrends
from shared.api_input import format_instant
from shared.clock import NS_PER_S, Clock

_log = logging.getLogger(__name__)

AWAY_CHECK_INTERVAL_S = 600.0
"""How often the unfinished jobs of sites without a link are checked again."""


class AwayRisk:
    """See the module docstring. `linked(site_id)` says whether the site has a link now."""

    def __init__(
        self,
        catalog: Catalog,
        trends: RetentionTrends,
        at_risk: AtRiskNotice,
        *,
        clock: Clock,
        linked: Callable[[str], bool],
    ) -> None:
        self._catalog = catalog
        self._trends = trends
        self._at_risk = at_risk
        self._clock = clock
        self._linked = linked

    async def check(self, job: RetrievalJob) -> bool:
        """Flag `job` at risk if its site is away and the forecast says part of its span is
        gone; True when it is flagged now."""
        if job.at_risk or is_final(job.state) or self._linked(job.site_id):
            return False
        risks = await asyncio.to_thread(self._risks, job, self._clock.now_ns())
        if not risks or not await asyncio.to_thread(self._flag, job.job_id):
            return False
        await self._at_risk.raise_for(job.job_id, risks)
        return True

    async def check_all(self) -> int:
        """`check` every unfinished job of the sites away; how many were flagged now."""
        jobs = await asyncio.to_thread(self._catalog.unfinished_retrieval_jobs)
        flagged = 0
        for job in jobs:
            try:
                flagged += await self.check(job)
            except NotFound:
                continue  # removed meanwhile
        return flagged

    async def run(self) -> None:
        """`check_all` every `AWAY_CHECK_INTERVAL_S`, until cancelled."""
        while True:
            await self._clock.sleep(AWAY_CHECK_INTERVAL_S)
            try:
                await self.check_all()
            except Exception:
                _log.exception("checking the jobs of sites out of reach failed")

    def _risks(self, job: RetrievalJob, now_ns: int) -> list[DeviceRisk]:
        """What the forecast says each device of the job has lost (blocking)."""
        trends = self._trends.of_site(job.site_id)
        if not trends:
            return []
        risks = []
        for stream in job.streams:
            try:
                device = self._catalog.device(stream.device_id)
            except NotFound:
                continue
            trend = trends.get((device.remote_device_id, stream.stream))
            if trend is None:
                continue
            start_ns = job.start_ns
            if stream.covered_until_ns is not None:
                start_ns = max(start_ns, stream.covered_until_ns)  # what is left to bring
            what = _lost(
                trend,
                stream.device_id,
                stream.stream,
                start_ns=start_ns,
                end_ns=job.end_ns,
                now_ns=now_ns,
            )
            if what is not None:
                risks.append(DeviceRisk(stream.device_id, what))
        return risks

    def _flag(self, job_id: str) -> bool:
        """Flag the job at risk, its state and reason as they are (blocking); False when it
        ended meanwhile or is gone."""
        try:
            job = self._catalog.retrieval_job(job_id)
            if is_final(job.state):
                return False
            if not job.at_risk:
                self._catalog.set_retrieval_job_state(
                    job_id, job.state, reason=job.reason, at_risk=True
                )
        except (NotFound, JobTransitionError) as exc:
            _log.info("%s", exc)
            return False
        return True


def _lost(
    trend: RetentionTrend,
    device_id: str,
    stream: str,
    *,
    start_ns: int,
    end_ns: int,
    now_ns: int,
) -> str | None:
    """The words for what the site has (probably) deleted of [start_ns, end_ns) by
    `now_ns`; None when nothing."""
    if start_ns >= end_ns:
        return None
    known_ns = trend.last.oldest_ns
    forecast_ns = trend.deleted_until(now_ns)
    if forecast_ns <= start_ns:
        return None
    seen = format_instant(trend.last.at_ns)
    if known_ns > start_ns:
        until_ns = min(known_ns, end_ns)
        return (
            f"the site is out of reach; when last reached ({seen}) it no longer held "
            f"{device_id} {stream} before {format_instant(known_ns)}: the span before "
            f"{format_instant(until_ns)} ({(until_ns - start_ns) / NS_PER_S:.0f} s) is lost"
        )
    until_ns = min(forecast_ns, end_ns)
    return (
        f"the site is out of reach since {seen}; its retention was deleting {device_id} "
        f"{stream} at {trend.pace or 0:.2f} s a second, so it has probably deleted the span "
        f"before {format_instant(until_ns)} ({(until_ns - start_ns) / NS_PER_S:.0f} s) by "
        "now, and goes on while the site is away"
    )
