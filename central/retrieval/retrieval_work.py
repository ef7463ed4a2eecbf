"""Running retrieval jobs over a site's link: the job engine's I/O half.

`RetrievalWork` is one of the works the site registry runs over every open link
(`LinkWork`). While a site's link is up, its `_SiteRun` starts the streams the scheduling
rule picks (`site_schedule.streams_to_start`: oldest job first, `parallel_devices` at once,
one stream per device, the daily window gating jobs not yet started), and starts more as
streams end, jobs arrive (`jobs_changed`) or the window opens. When the link ends, the
run ends: its streams stop where they are and their jobs wait, pending, for the next link.
Nothing is kept in memory that the catalog does not also hold, so a central restarted
(even by kill -9) resumes every unfinished job from its cursors.

A stream is one `LinkClient.transfer` of the job's span of one device's stream (HQ by
default) from the stream's cursor, in the link's background class, so live and interactive
traffic keep their priority. The site's cap (`max_bandwidth_bps`, shared by all its
streams) is kept by the site itself: the run tells the link its pace
(`LinkClient.pace_background`) and the site spaces its background frames to it. A site
whose protocol has no pace (version 2) is paced through credit instead: every grant passes
the site's `BandwidthCap` first, which holds the long-run rate but lets the opening window
of each stream through early. Each chunk is verified by the
transfer (signature, chain) before `commit` sees it; `commit` stores it through the
central's `IngestWriter` (idempotent: a chunk already held is not stored twice, and gets
its receipt) and only then advances the stream's cursor in the catalog. A cut between the
two re-sends that one chunk, which the store recognises: nothing lost, nothing twice.

Outcomes of a stream:

- the transfer completes: the stream is completed;
- a chunk fails verification: the stream waits and is requested again once from its
  cursor; a second failure fails the stream with the reason (the cursor never moved past
  a chunk that did not verify);
- the site refuses the request (unknown device, bad range): failed, with the site's reason;
- the central's store has no room for the chunk: the stream waits, the job says why, the
  notification "central_store_full" is raised, and the run tries again when a job's holds
  in the central's store are released or after the retry delay (`STORE_FULL_RETRY_S`).
  No room is either the hold budget used up (`RetrievalSpace`: the job's own chunks are
  held, so it never deletes them to make room) or the store refusing (`StoreFull`: the map
  or the disk is full of held chunks). Whichever run stores a retrieved chunk next clears
  the notification, and so does a central started with room for retrievals;
- the link ends or the job is stopped: the stream stops where it is.

A job is running while any of its streams runs, and becomes completed (or failed, if a
stream failed) when all of its streams are. Holds (`site_holds`): before a job's first
stream starts, the run places a hold at the site on each device's span, so the site's
retention does not delete what the job has yet to fetch, and renews them while the link
lasts, before they expire (`hold_renewal`); a refused hold, or a span the site's retention
already began to delete, marks the job at risk and raises the device's "retrieval_at_risk"
notification (`at_risk_notice`), cleared when no unfinished job at risk has yet to finish
the device's stream. The holds are released when the job ends (completed, failed or
stopped); a hold the link ended before reaching stays recorded until the next link releases
it. A hold placed but never recorded (the link cut, or the central killed, before its answer
was stored) is found at the start of the next link by its device, stream and span, and
released.
In the central's own store, each stream of an unfinished job holds the job's span
(`RetrievalSpace`), so what it brought survives until the job ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from central.catalog.catalog import Catalog
from central.catalog.errors import CatalogError, Conflict, NotFound
from central.catalog.records import SiteRecord
from central.ingest_writer import ChunkSink
from central.retrieval.at_risk_notice import AtRiskNotice
from central.retrieval.bandwidth_cap import BandwidthCap
from central.retrieval.held_run import HeldRun, held_after_cursor, held_run
from central.retrieval.hold_renewal import HOLD_LIFETIME_S, HoldRenewal
from central.retrieval.job_records import JobState, RetrievalJob
from central.retrieval.job_state import JobTransitionError, is_final, state_from_streams
from central.retrieval.retrieval_space import HeldStream, RetrievalSpace
from central.retrieval.retrieval_window import DailyWindow
from central.retrieval.site_holds import SiteHolds
from central.retrieval.site_schedule import StreamKey, has_started, streams_to_start
from central.retrieval.stream_rate import RateReading, StreamRate
from central.retrieval.turns import Turns
from shared.clock import NS_PER_S, Clock
from shared.link import messages as m
from shared.link_io.client import (
    LinkClient,
    LinkLost,
    RequestFailed,
    paced_window_bytes,
)
from shared.store.chunk_meta import ChunkMeta, stored_bytes_of
from shared.store.errors import HoldRefused, StoreError, StoreFull
from shared.transfer_acceptance import (
    AcceptedChunk,
    ChunkRejected,
    TransferCursor,
    TransferExpectation,
)

UNPACED_WINDOW_BYTES = 64 * 1024
"""The credit window of a transfer the site does not pace (no cap, or a site before link
protocol 3). The site queues a stream's next chunk as soon as the stream has credit, so every
chunk it has queued and the central has not yet committed is sent again after a cut that
ends the link. With a window smaller than a chunk, the central's credit for a chunk's rest,
granted when the chunk's head arrives, is all the site has: each stream has one chunk out
at a time (of small chunks, audio or a low-quality stream, at most this window's worth and
one more), so a cut re-sends at most one chunk per stream. The price is a round trip and a
commit between one chunk of a stream and the next, which the other streams of the job fill
when devices run in parallel (docs/benchmarks.md, retrieval)."""

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

STORE_FULL_RETRY_S = 60.0
RETRY_S = 10.0
SPAN_SETTLE_S = 30.0
"""A span is over at the site this long after its end (its last chunk sealed and stored);
until then a stream that reached the end of what exists rests and asks again."""
CATCH_UP_REST_S = 15.0
NOTICE_STORE_FULL = "central_store_full"
LINK_DOWN_REASON = "waiting for the site's link"


class HeldChunks(Protocol):
    """The central's store as retrieval reads it (a `ChunkStore`): what it holds already."""

    def chunk_metas(
        self, device_id: str, stream: str, start_ns: int, end_ns: int, *, site_id: str | None
    ) -> list[ChunkMeta]: ...

    def chunk_meta(
        self, device_id: str, stream: str, seq: int, *, site_id: str | None
    ) -> ChunkMeta | None: ...


class _StoreFullPause(Exception):
    """The central's store refused a chunk for want of space."""


class _ChunkNotStored(Exception):
    """The central's store refused a verified chunk for another reason (a conflict)."""


class _StoreFullNotice:
    """The "central_store_full" notification: raised by a run that paused for space, cleared
    by whichever run stores a retrieved chunk next. One may be open from before this start
    (a restart, a link that ended while paused), so the first stored chunk clears whatever
    the catalog has open; afterwards a clear is written only after a raise."""

    def __init__(self, catalog: Catalog, clock: Clock) -> None:
        self._catalog = catalog
        self._clock = clock
        self._maybe_open = True

    async def raise_notice(self, problem: str) -> None:
        self._maybe_open = True
        await asyncio.to_thread(
            self._catalog.raise_notification,
            NOTICE_STORE_FULL,
            None,
            None,
            f"retrieval paused: the central's store is full ({problem}); jobs resume when "
            "space returns",
            self._clock.now_ns(),
        )

    async def clear(self) -> None:
        if self._maybe_open:
            self._maybe_open = False
            await asyncio.to_thread(
                self._catalog.clear_notification,
                NOTICE_STORE_FULL,
                None,
                None,
                self._clock.now_ns(),
            )


@dataclass(slots=True)
class _CentralRoom:
    """What every site's run shares about the central's own store: the room for retrievals
    (None: not kept, for tests of scheduling alone), the notification, the retry delay, and
    how to wake every run (holds were released: a paused run may go on)."""

    catalog: Catalog
    space: RetrievalSpace | None
    notice: _StoreFullNotice
    retry_s: float
    wake_all: Callable[[], None]

    async def release(self, job_id: str) -> None:
        """The job ended: release its holds in the central's store."""
        if self.space is not None and await self.space.release(job_id):
            self.wake_all()

    async def tidy(self) -> None:
        """Release the holds of jobs that ended (or are gone) in the central's store."""
        if self.space is not None and await self.space.tidy(self._unfinished):
            self.wake_all()

    def _unfinished(self, job_id: str) -> bool:
        try:
            return not is_final(self.catalog.retrieval_job(job_id).state)
        except NotFound:
            return False


@dataclass(slots=True)
class _SiteState:
    """What outlives one link of a site: its cap and the signal that its jobs changed."""

    cap: BandwidthCap
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    run: _SiteRun | None = None


class RetrievalWork:
    """See the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        ingest: ChunkSink,
        *,
        clock: Clock,
        held: HeldChunks | None = None,
        space: RetrievalSpace | None = None,
        store_full_retry_s: float = STORE_FULL_RETRY_S,
        hold_lifetime_s: float = HOLD_LIFETIME_S,
    ) -> None:
        """`held`: the central's store, read to start each stream after what it holds of
        the span already (`held_run`); `space`: the room for retrievals in that store (its
        holds and budget). None, for tests of scheduling alone: nothing held, no holds.
        `store_full_retry_s`: how long a run paused for space waits before it tries again
        when no hold was released meanwhile. `hold_lifetime_s`: how long a job's holds at
        the site last (`HoldRenewal`: renewed during a link before they expire)."""
        self._catalog = catalog
        self._ingest = ingest
        self._clock = clock
        self._held_chunks = held
        self._sites: dict[str, _SiteState] = {}
        self._room = _CentralRoom(
            catalog,
            space,
            _StoreFullNotice(catalog, clock),
            store_full_retry_s,
            self._wake_all,
        )
        self._at_risk = AtRiskNotice(catalog, clock)
        self._hold_renewal = HoldRenewal(hold_lifetime_s)
        self._hold_turns = Turns[str]()
        self._commit_turns = Turns[StreamKey]()

    async def start(self) -> None:
        """Before the first link: clear the at-risk notifications whose jobs ended while
        the central was down, release the central's holds of such jobs, and clear a
        store-full notification when there is room again."""
        await self._at_risk.settle_open()
        space = self._room.space
        if space is None:
            return
        await self._room.tidy()
        if space.has_room():
            await self._room.notice.clear()

    async def serve(self, site: SiteRecord, link: LinkClient) -> None:
        """Run the site's jobs until the link ends (or this is cancelled)."""
        state = self._site_state(site)
        while link.is_open:
            run = _SiteRun(
                self._catalog,
                self._ingest,
                self._clock,
                site=site,
                link=link,
                state=state,
                held=self._held_chunks,
                room=self._room,
                at_risk=self._at_risk,
                hold_renewal=self._hold_renewal,
                hold_turns=self._hold_turns,
                commit_turns=self._commit_turns,
            )
            state.run = run
            try:
                await run.run()
            except LinkLost:
                return
            except Exception:
                # A defect or a catalog failure: retrieval stops for a while, but the link
                # (live, recording, events) is not closed for it.
                _log.exception("%s: retrieval stopped; trying again in %g s", site.name, RETRY_S)
                await self._clock.sleep(RETRY_S)
            finally:
                if state.run is run:
                    state.run = None

    def jobs_changed(self, site_id: str) -> None:
        """A job of the site was created, stopped or changed, or the site's retrieval
        settings: its run looks again."""
        state = self._sites.get(site_id)
        if state is not None:
            state.changed.set()

    @property
    def at_risk(self) -> AtRiskNotice:
        """The `retrieval_at_risk` notifications, one change at a time for every user."""
        return self._at_risk

    def running_streams(self, site_id: str) -> frozenset[StreamKey]:
        state = self._sites.get(site_id)
        if state is None or state.run is None:
            return frozenset()
        return frozenset(state.run.running)

    def pace(self, job: RetrievalJob) -> dict[str, RateReading]:
        """The pace of the job's running streams, by device (those measured so far)."""
        state = self._sites.get(job.site_id)
        if state is None or state.run is None:
            return {}
        now_ns = self._clock.monotonic_ns()
        paces = {}
        for key, rate in list(state.run.rates.items()):
            if key.job_id == job.job_id and (reading := rate.reading(now_ns)) is not None:
                paces[key.device_id] = reading
        return paces

    async def stop_streams_of(self, job_id: str, site_id: str) -> None:
        """Stop the job's running streams now (the job was stopped); clear its devices'
        at-risk notifications that no other job keeps open."""
        state = self._sites.get(site_id)
        if state is not None and state.run is not None:
            await state.run.stop_job(job_id)
        await self._room.release(job_id)
        try:
            job = await asyncio.to_thread(self._catalog.retrieval_job, job_id)
        except NotFound:
            return  # removed with its devices or site, and their notifications
        if job.at_risk:
            await self._at_risk.settle(job.site_id, job.device_ids)

    def _wake_all(self) -> None:
        for state in self._sites.values():
            state.changed.set()

    def _site_state(self, site: SiteRecord) -> _SiteState:
        state = self._sites.get(site.site_id)
        if state is None:
            state = _SiteState(BandwidthCap(self._clock, site.retrieval.max_bandwidth_bps))
            self._sites[site.site_id] = state
        return state


class _SiteRun:
    """The jobs of one site over one link."""

    def __init__(
        self,
        catalog: Catalog,
        ingest: ChunkSink,
        clock: Clock,
        *,
        site: SiteRecord,
        link: LinkClient,
        state: _SiteState,
        held: HeldChunks | None,
        room: _CentralRoom,
        at_risk: AtRiskNotice,
        hold_renewal: HoldRenewal,
        hold_turns: Turns[str],
        commit_turns: Turns[StreamKey],
    ) -> None:
        self._catalog = catalog
        self._ingest = ingest
        self._clock = clock
        self._held_chunks = held
        self._site = site
        self._link = link
        self._state = state
        self.running: dict[StreamKey, asyncio.Task[None]] = {}
        self.rates: dict[StreamKey, StreamRate] = {}
        self._resting_until_ns: dict[StreamKey, int] = {}  # caught up with a span still recorded
        self._holds_due_ns: dict[str, int] = {}  # when each job's holds are placed again
        self._room = room
        self._at_risk = at_risk
        self._paused_until_ns: int | None = None  # the central's store was full
        self._paused_at_releases = 0  # the space's releases when it paused
        # Streams of one job end concurrently; one state change at a time, so a job's
        # final state is computed from what the others wrote.
        self._state_lock = asyncio.Lock()
        self._holds = SiteHolds(
            catalog,
            clock,
            site=site,
            link=link,
            renewal=hold_renewal,
            locks=hold_turns,
            at_risk=at_risk,
            state_lock=self._state_lock,
        )
        self._commit_turns = commit_turns
        self._site_paces: bool | None = None  # None: not asked yet on this link
        self._paced_bps: int | None = None

    async def run(self) -> None:
        try:
            await self._room.tidy()
            await self._holds.tidy()
            while True:
                self._state.changed.clear()
                wake_in_s = await self._schedule()
                await self._wait(wake_in_s)
        finally:
            await self._stop_all()

    async def stop_job(self, job_id: str) -> None:
        """The job was stopped in the catalog: stop its streams and release its holds."""
        tasks = [task for key, task in self.running.items() if key.job_id == job_id]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._holds.release_job(job_id)
        self._state.changed.set()

    # -- scheduling ----------------------------------------------------------------------------

    async def _schedule(self) -> float | None:
        """Start what may start; seconds until something time-bound changes (None: no
        such time)."""
        site = await asyncio.to_thread(self._catalog.site, self._site.site_id)
        self._site = site
        self._apply_cap(site.retrieval.max_bandwidth_bps)
        jobs = await asyncio.to_thread(
            self._catalog.unfinished_retrieval_jobs, site_id=site.site_id
        )
        now_ns = self._clock.now_ns()
        if self._paused_until_ns is not None:
            space = self._room.space
            released = space is not None and space.releases != self._paused_at_releases
            if now_ns < self._paused_until_ns and not released:
                return (self._paused_until_ns - now_ns) / NS_PER_S
            self._paused_until_ns = None
            if not released:
                await self._room.tidy()  # reads the held bytes afresh
        window = _window_of(site)
        window_open = window is None or window.is_open(now_ns)
        await self._place_due_holds(jobs, now_ns)
        for key, until_ns in list(self._resting_until_ns.items()):
            if until_ns <= now_ns:
                del self._resting_until_ns[key]
        starting = streams_to_start(
            jobs,
            self.running.keys(),
            parallel=site.retrieval.parallel_devices,
            window_open=window_open,
            resting=self._resting_until_ns.keys(),
        )
        by_id = {job.job_id: job for job in jobs}
        for key in starting:
            self._start(key, by_id[key.job_id])
        if not window_open and window is not None:
            waiting = [j for j in jobs if not has_started(j)]
            opens_ns = window.next_opening_ns(now_ns)
            reason = (
                f"waiting for the retrieval window {window.start}-{window.end} ({window.time_zone})"
            )
            for job in waiting:
                if job.reason != reason:
                    await self._write(
                        self._catalog.set_retrieval_job_state,
                        job.job_id,
                        JobState.PENDING,
                        reason=reason,
                    )
            if waiting:
                return self._soonest(now_ns, opens_ns)
        return self._soonest(now_ns, None)

    async def _place_due_holds(self, jobs: list[RetrievalJob], now_ns: int) -> None:
        """Place the holds of the jobs this run has not held yet, and renew those that fall
        due (`HoldRenewal`), one job at a time."""
        unfinished = {job.job_id for job in jobs}
        for job_id in [j for j in self._holds_due_ns if j not in unfinished]:
            del self._holds_due_ns[job_id]
        for job in jobs:
            due_ns = self._holds_due_ns.get(job.job_id)
            if due_ns is not None and due_ns > now_ns:
                continue
            next_ns = await self._holds.place(job.job_id)
            if next_ns is None:
                self._holds_due_ns.pop(job.job_id, None)
            else:
                self._holds_due_ns[job.job_id] = next_ns

    def _apply_cap(self, rate_bps: int | None) -> None:
        """The cap as set now: the site paces to it, or, if its protocol cannot, the credit
        gate does."""
        self._state.cap.set_rate(rate_bps)
        if self._site_paces is False:
            return
        if self._site_paces is None or rate_bps != self._paced_bps:
            self._site_paces = self._link.pace_background(rate_bps)
            self._paced_bps = rate_bps

    def _credit_gate(self) -> BandwidthCap | None:
        """What the next transfer's credit passes: the cap, unless the site paces."""
        return None if self._site_paces else self._state.cap

    def _window_bytes(self) -> int:
        """The next transfer's credit window."""
        if self._site_paces and self._paced_bps is not None:
            return paced_window_bytes(self._paced_bps)
        return UNPACED_WINDOW_BYTES

    def _soonest(self, now_ns: int, other_ns: int | None) -> float | None:
        """Seconds until the window opens (`other_ns`), a resting stream may go on, or a
        job's holds fall due."""
        instants = [
            *self._resting_until_ns.values(),
            *self._holds_due_ns.values(),
            *([] if other_ns is None else [other_ns]),
        ]
        if not instants:
            return None
        return max(0.0, (min(instants) - now_ns) / NS_PER_S)

    async def _wait(self, wake_in_s: float | None) -> None:
        """Until a stream ends, the jobs change, or `wake_in_s` passes; raises `LinkLost`
        when the link ends (the run ends with it)."""
        mine: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._state.changed.wait()),
            asyncio.ensure_future(self._link.wait_closed()),
        ]
        if wake_in_s is not None:
            mine.append(asyncio.ensure_future(self._clock.sleep(wake_in_s)))
        waits: list[asyncio.Future[Any]] = [*mine, *self.running.values()]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in mine:
                future.cancel()
        if not self._link.is_open:
            raise LinkLost(await self._link.wait_closed())

    def _start(self, key: StreamKey, job: RetrievalJob) -> None:
        task = asyncio.create_task(
            self._retrieve(key, job), name=f"retrieve-{key.job_id}-{key.device_id}"
        )
        self.running[key] = task
        self.rates[key] = StreamRate()

        def ended(_: asyncio.Task[None]) -> None:
            self.running.pop(key, None)
            self.rates.pop(key, None)

        task.add_done_callback(ended)

    async def _stop_all(self) -> None:
        """The link ended: stop the streams; their jobs wait for the next link."""
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(CatalogError):
            jobs = await asyncio.to_thread(
                self._catalog.unfinished_retrieval_jobs, site_id=self._site.site_id
            )
            for job in jobs:
                async with self._state_lock:
                    await self._wait_for_link(job)

    async def _wait_for_link(self, job: RetrievalJob) -> None:
        """Running job and streams back to pending."""
        for stream in job.streams:
            if stream.state is JobState.RUNNING:
                await self._write(
                    self._catalog.set_retrieval_stream_state,
                    job.job_id,
                    stream.device_id,
                    stream.stream,
                    JobState.PENDING,
                )
        if job.state is JobState.RUNNING or job.reason != LINK_DOWN_REASON:
            await self._write(
                self._catalog.set_retrieval_job_state,
                job.job_id,
                JobState.PENDING,
                reason=LINK_DOWN_REASON,
            )

    async def _write(self, change: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
        """A state change in the catalog (worker thread); None when the catalog refuses it
        because the job ended meanwhile (a user stopped it, another stream ended it)."""
        try:
            return await asyncio.to_thread(change, *args, **kwargs)
        except JobTransitionError as exc:
            _log.info("%s", exc)
            return None

    # -- one stream ----------------------------------------------------------------------------

    async def _mark_running(self, key: StreamKey) -> RetrievalJob | None:
        """Mark the stream (and its job, if pending) running; the job as it is now, or None
        if it ended meanwhile."""
        catalog = self._catalog
        async with self._state_lock:
            job = await asyncio.to_thread(catalog.retrieval_job, key.job_id)
            if is_final(job.state):
                return None  # stopped meanwhile
            if job.state is JobState.PENDING:
                running = await self._write(
                    catalog.set_retrieval_job_state, job.job_id, JobState.RUNNING, reason=None
                )
                if running is None:
                    return None
                job = running
            marked = await self._write(
                catalog.set_retrieval_stream_state,
                key.job_id,
                key.device_id,
                key.stream,
                JobState.RUNNING,
            )
            return None if marked is None else job

    async def _retrieve(self, key: StreamKey, job: RetrievalJob) -> None:
        # A commit the previous link began finishes first (`_commit`): the cursor the
        # stream starts from is then the one after it, and that chunk is not asked for again.
        async with self._commit_turns.turn(key):
            pass
        await self._retrieve_from_cursor(key, job)

    async def _retrieve_from_cursor(self, key: StreamKey, job: RetrievalJob) -> None:
        catalog = self._catalog
        site = self._site
        try:
            device = await asyncio.to_thread(catalog.device, key.device_id)
            running_job = await self._mark_running(key)
            if running_job is None:
                return
            job = running_job
            stream = job.stream_by_device[key.device_id]
        except NotFound:
            return  # the job's site or device was removed meanwhile
        if site.remote_site_id is None or site.public_key is None:
            await self._end_stream(key, JobState.FAILED, "the site was never reached")
            return
        expectation = TransferExpectation(
            site.remote_site_id, device.remote_device_id, key.stream, site.public_key
        )
        if not await self._hold_at_central(key, job, expectation):
            return
        if stream.cursor_seq is None or stream.cursor_hash is None:
            cursor = await self._cursor_after_held(key, job, expectation)
        else:
            cursor = await self._cursor_past_held(
                key, job, expectation, TransferCursor(stream.cursor_seq, stream.cursor_hash)
            )

        async def commit(accepted: AcceptedChunk) -> None:
            await self._commit(key, accepted)

        asked_ns = self._clock.now_ns()
        try:
            await self._link.transfer(
                expectation,
                cursor,
                job.start_ns,
                job.end_ns,
                commit=commit,
                priority=m.Priority.BACKGROUND,
                window_bytes=self._window_bytes(),
                gate=self._credit_gate(),
            )
        except ChunkRejected as exc:
            fresh = (await asyncio.to_thread(catalog.retrieval_job, key.job_id)).stream_by_device
            if fresh[key.device_id].rejected_once:
                await self._end_stream(
                    key, JobState.FAILED, f"a chunk failed verification twice: {exc}"
                )
            else:
                _log.warning("%s/%s: %s; requesting it again", key.job_id, key.device_id, exc)
                await self._write(
                    catalog.set_retrieval_stream_state,
                    key.job_id,
                    key.device_id,
                    key.stream,
                    JobState.PENDING,
                    rejected_once=True,
                )
        except RequestFailed as exc:
            await self._end_stream(
                key, JobState.FAILED, f"the site refused: {exc.message or exc.code}"
            )
        except _ChunkNotStored as exc:
            await self._end_stream(key, JobState.FAILED, str(exc))
        except _StoreFullPause as exc:
            await self._pause_for_space(key, str(exc))
        except LinkLost:
            return
        else:
            now_job = await asyncio.to_thread(catalog.retrieval_job, key.job_id)
            covered = now_job.stream_by_device[key.device_id].covered_until_ns
            reached_end = covered is not None and covered >= job.end_ns
            if not reached_end and job.end_ns + int(SPAN_SETTLE_S * NS_PER_S) > asked_ns:
                # The site sent all it has, but the span is still being recorded there.
                await self._write(
                    catalog.set_retrieval_stream_state,
                    key.job_id,
                    key.device_id,
                    key.stream,
                    JobState.PENDING,
                )
                self._resting_until_ns[key] = self._clock.now_ns() + int(CATCH_UP_REST_S * NS_PER_S)
            else:
                await self._end_stream(key, JobState.COMPLETED, None)
        finally:
            self._state.changed.set()

    async def _hold_at_central(
        self, key: StreamKey, job: RetrievalJob, expectation: TransferExpectation
    ) -> bool:
        """Hold the job's span of the stream in the central's store; False when the hold
        budget has no room for what the span holds already (the stream paused)."""
        space = self._room.space
        if space is None:
            return True
        held = HeldStream(expectation.site_id, expectation.device_id, key.stream)
        try:
            await space.hold(key.job_id, held, job.start_ns, job.end_ns)
        except HoldRefused as exc:
            await self._pause_for_space(key, str(exc))
            self._state.changed.set()
            return False
        return True

    async def _cursor_after_held(
        self, key: StreamKey, job: RetrievalJob, expectation: TransferExpectation
    ) -> TransferCursor:
        """Where a stream that never stored a chunk starts: after the held run of its span
        (`held_run`), which then counts in its progress; else at the span's start."""
        held = self._held_chunks
        if held is None:
            return TransferCursor()

        def find() -> HeldRun | None:
            site_id, device_id = expectation.site_id, expectation.device_id
            metas = held.chunk_metas(
                device_id, key.stream, job.start_ns, job.end_ns, site_id=site_id
            )
            if not metas:
                return None
            before = held.chunk_meta(device_id, key.stream, metas[0].seq - 1, site_id=site_id)
            return held_run(metas, start_ns=job.start_ns, predecessor=before)

        run = await asyncio.to_thread(find)
        if run is None:
            return TransferCursor()
        return await self._advance_over_held(key, run, fallback=TransferCursor())

    async def _cursor_past_held(
        self,
        key: StreamKey,
        job: RetrievalJob,
        expectation: TransferExpectation,
        cursor: TransferCursor,
    ) -> TransferCursor:
        """Where a stream with a cursor resumes: after the held chunks that follow the
        cursor (`held_after_cursor`: stored before a cut or a stop let the cursor move),
        which then count in its progress; else at the cursor."""
        held = self._held_chunks
        if held is None or cursor.seq is None or cursor.chunk_hash is None:
            return cursor
        site_id, device_id = expectation.site_id, expectation.device_id

        def held_seq(seq: int) -> ChunkMeta | None:
            return held.chunk_meta(device_id, key.stream, seq, site_id=site_id)

        run = await asyncio.to_thread(
            held_after_cursor,
            held_seq,
            cursor_seq=cursor.seq,
            cursor_hash=cursor.chunk_hash,
            end_ns=job.end_ns,
        )
        if run is None:
            return cursor
        return await self._advance_over_held(key, run, fallback=cursor)

    async def _advance_over_held(
        self, key: StreamKey, run: HeldRun, *, fallback: TransferCursor
    ) -> TransferCursor:
        """Move the stream's cursor (and progress) over a held run; `fallback` when the
        stream ended meanwhile (its transfer stops at once)."""
        try:
            await asyncio.to_thread(
                self._catalog.advance_retrieval_stream,
                key.job_id,
                key.device_id,
                key.stream,
                cursor_seq=run.cursor_seq,
                cursor_hash=run.cursor_hash,
                chunks_added=run.chunks,
                bytes_added=run.payload_bytes,
                covered_until_ns=run.covered_until_ns,
            )
        except Conflict as exc:
            _log.info("%s", exc)
            return fallback
        _log.info(
            "%s/%s: the central holds %d chunks of the span already; continuing after seq %d",
            key.job_id,
            key.device_id,
            run.chunks,
            run.cursor_seq,
        )
        return TransferCursor(run.cursor_seq, run.cursor_hash)

    async def _commit(self, key: StreamKey, accepted: AcceptedChunk) -> None:
        """Store the chunk and advance the stream's cursor past it, both or (when the store
        refuses) neither. The link ending meanwhile cancels the stream's task, not this:
        the commit runs to its end in a task of its own, in the stream's turn, so the store
        and the cursor agree before the stream starts again on the next link."""
        settling = asyncio.create_task(self._commit_in_turn(key, accepted))
        try:
            await asyncio.shield(settling)
        except asyncio.CancelledError:
            settling.add_done_callback(_orphaned_commit_done)
            raise

    async def _commit_in_turn(self, key: StreamKey, accepted: AcceptedChunk) -> None:
        async with self._commit_turns.turn(key):
            await self._store_and_advance(key, accepted)

    async def _store_and_advance(self, key: StreamKey, accepted: AcceptedChunk) -> None:
        chunk = accepted.chunk
        space = self._room.space
        size = stored_bytes_of(chunk)
        if space is not None and (problem := space.reserve(size)) is not None:
            raise _StoreFullPause(problem)
        outcome: bool | StoreError = False
        try:
            (outcome,) = await self._ingest.put_verified([chunk])
        finally:
            if space is not None:
                space.settle(size, stored=outcome is True)
        if isinstance(outcome, StoreFull):
            raise _StoreFullPause(str(outcome))
        if isinstance(outcome, StoreError):
            raise _ChunkNotStored(
                f"the central's store refused chunk seq {chunk.header.seq}: {outcome}"
            )
        await self._room.notice.clear()
        header = chunk.header
        rate = self.rates.get(key)
        if rate is not None:
            rate.add(self._clock.monotonic_ns(), len(chunk.payload), header.end_ns)
        await asyncio.to_thread(
            self._catalog.advance_retrieval_stream,
            key.job_id,
            key.device_id,
            key.stream,
            cursor_seq=header.seq,
            cursor_hash=chunk.chunk_hash,
            chunks_added=1,
            bytes_added=len(chunk.payload),
            covered_until_ns=header.end_ns,
        )

    async def _end_stream(self, key: StreamKey, state: JobState, failure: str | None) -> None:
        # The job's turn first: its holds are released here when it ends, never while they
        # are placed or renewed.
        async with self._holds.turn(key.job_id), self._state_lock:
            await self._end_stream_locked(key, state, failure)

    async def _end_stream_locked(
        self, key: StreamKey, state: JobState, failure: str | None
    ) -> None:
        catalog = self._catalog
        ended = await self._write(
            catalog.set_retrieval_stream_state,
            key.job_id,
            key.device_id,
            key.stream,
            state,
            failure=failure,
        )
        if ended is None:
            return
        job = await asyncio.to_thread(catalog.retrieval_job, key.job_id)
        if job.at_risk:
            # Before the job's final state: whoever sees it ended sees the notification
            # it kept open cleared.
            await self._at_risk.settle(job.site_id, (key.device_id,))
        if is_final(job.state):
            return
        overall = state_from_streams(s.state for s in job.streams)
        if is_final(overall):
            reason = None
            failed = [s for s in job.streams if s.state is JobState.FAILED]
            if failed:
                reason = "; ".join(f"{s.device_id}: {s.failure}" for s in failed)
            # Holds first: whoever sees the job ended sees its holds released. (A cut in
            # between leaves a job that places its holds again on the next link.) The
            # central's own holds go after: a crash in between leaves them to `tidy`.
            await self._holds.release(job)
            await self._write(catalog.set_retrieval_job_state, job.job_id, overall, reason=reason)
            await self._room.release(job.job_id)

    async def _pause_for_space(self, key: StreamKey, problem: str) -> None:
        catalog = self._catalog
        reason = f"paused: the central's store is full ({problem})"
        async with self._state_lock:
            await self._write(
                catalog.set_retrieval_stream_state,
                key.job_id,
                key.device_id,
                key.stream,
                JobState.PENDING,
            )
            await self._write(
                catalog.set_retrieval_job_state, key.job_id, JobState.PENDING, reason=reason
            )
        await self._room.notice.raise_notice(problem)
        space = self._room.space
        self._paused_at_releases = 0 if space is None else space.releases
        self._paused_until_ns = self._clock.now_ns() + int(self._room.retry_s * NS_PER_S)


def _orphaned_commit_done(task: asyncio.Task[None]) -> None:
    """A commit whose stream's task was cancelled (the link ended) finished: what it raised
    has no one to tell but the log; the stream learns it on its next link."""
    if task.cancelled():
        return
    problem = task.exception()
    if problem is not None:
        _log.warning("a commit finished after its link ended: %s", problem)


def _window_of(site: SiteRecord) -> DailyWindow | None:
    settings = site.retrieval
    if settings.window_start is None or settings.window_end is None:
        return None
    return DailyWindow(settings.window_start, settings.window_end, site.time_zone)
