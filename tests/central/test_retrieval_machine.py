"""A Hypothesis state machine over the retrieval engine: jobs made, links cut and healed, the
central killed (its memory gone, its catalog and store as they were), jobs stopped, the
window closed and opened, hours and days passing (holds renewed during a link), in any order
and at any point of a transfer. Then the link heals and the engine settles, and every job not
stopped has completed with every chunk of its span stored once, verified, and no more than
one chunk re-sent per stream per cut or kill, and the site holds nothing for any job.

The engine, catalog, chunk store, ingest writer and chunk verification are the real ones.
The site is simulated at the link client's surface (`SimulatedLink`: transfer, holds,
the end of the link), which is ours, so that hundreds of interleavings run in seconds; the
real link under real cuts is covered by tests/central/retrieval_faults and
tests/link_io. A "kill" abandons the central's event loop without running any of its
pending work (as kill -9 would) once the writes already handed to worker threads are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from central.catalog import SecretBox, SqliteCatalog
from central.catalog.records import NewSite, RetrievalSettings
from central.ingest_writer import IngestWriter
from central.retrieval.job_records import JobState
from central.retrieval.retrieval_service import RetrievalService
from central.retrieval.retrieval_work import RetrievalWork
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, ManualClock
from shared.link_io.client import Commit, CreditGate, LinkLost, TransferOutcome
from shared.link_io.session import EndReason, SessionEnd
from shared.signing import SiteSigner
from shared.store import ChunkStore
from shared.transfer_acceptance import TransferCursor, TransferExpectation, accept_chunk
from tests.central.catalog.catalog_parts import camera
from tests.fakes.held_clock import HeldClock
from tests.store.store_chunks import ChunkFactory

SITE_ID = "site-machine"
T0 = 1_700_000_000 * NS_PER_S
CHUNK_NS = 2 * NS_PER_S
CHUNKS = 10
DEVICES = ("cam-1", "cam-2", "cam-3")
MAX_SETTLE_ROUNDS = 400
REAP_ROUNDS = 10


class SimulatedLink:
    """What `RetrievalWork` uses of a `LinkClient`, over the simulated site's chunks."""

    def __init__(self, site: SimulatedSite, life: int) -> None:
        self._site = site
        self._life = life
        self._closed = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return not self._closed.is_set()

    def cut(self) -> None:
        self._closed.set()

    async def wait_closed(self) -> SessionEnd:
        await self._closed.wait()
        return SessionEnd(EndReason.CUT, "cut by the test")

    def pace_background(self, rate_bps: int | None) -> bool:
        """The simulated site paces as told (the pace itself is not simulated)."""
        self._site.pace_bps = rate_bps
        return self.is_open

    async def transfer(
        self,
        expectation: TransferExpectation,
        cursor: TransferCursor,
        start_ns: int,
        end_ns: int,
        *,
        commit: Commit,
        priority: object = None,
        window_bytes: int = 0,
        gate: CreditGate | None = None,
    ) -> TransferOutcome:
        del priority, window_bytes, gate
        chunks = payload = 0
        for chunk in self._site.chunks[expectation.device_id]:
            header = chunk.header
            if cursor.seq is not None and header.seq <= cursor.seq:
                continue
            if header.end_ns <= start_ns or header.start_ns >= end_ns:
                continue
            await asyncio.sleep(0)  # the wire: others run meanwhile
            if not self.is_open:
                raise LinkLost(SessionEnd(EndReason.CUT, "cut by the test"))
            self._site.sent[(expectation.device_id, start_ns, end_ns, header.seq)] += 1
            accepted = accept_chunk(
                expectation, cursor, chunk.header_bytes, chunk.signature, chunk.payload
            )
            await commit(accepted)
            cursor = cursor.after(accepted.chunk)
            chunks += 1
            payload += len(chunk.payload)
        if not self.is_open:
            raise LinkLost(SessionEnd(EndReason.CUT, "cut by the test"))
        return TransferOutcome(cursor, chunks, payload, payload, 0)

    async def place_hold(
        self, device_id: str, *, streams: tuple[str, ...], start_ns: int, end_ns: int, **_: Any
    ) -> dict[str, Any]:
        self._require_open()
        self._site.next_hold += 1
        hold_id = self._site.next_hold
        hold = SimulatedHold(self._life, device_id, streams[0], start_ns, end_ns)
        self._site.holds[hold_id] = hold
        await asyncio.sleep(0)  # the answer on its way back: a cut now loses it
        self._require_open()
        return {"holds": [{"id": hold_id}]}

    async def list_holds(self) -> list[dict[str, Any]]:
        self._require_open()
        return [
            {
                "id": hold_id,
                "device_id": hold.device_id,
                "stream": hold.stream,
                "start_ns": hold.start_ns,
                "end_ns": hold.end_ns,
            }
            for hold_id, hold in self._site.holds.items()
        ]

    async def release_hold(self, hold_id: int) -> dict[str, Any]:
        self._require_open()
        self._site.holds.pop(hold_id, None)
        return {"released": hold_id}

    def _require_open(self) -> None:
        if not self.is_open:
            raise LinkLost(SessionEnd(EndReason.CUT, "cut by the test"))


@dataclass(frozen=True)
class SimulatedHold:
    life: int  # the central's life that placed it
    device_id: str
    stream: str
    start_ns: int
    end_ns: int


class SimulatedSite:
    def __init__(self) -> None:
        self.signer = SiteSigner.generate()
        self.pace_bps: int | None = None
        factory = ChunkFactory(self.signer, site_id=SITE_ID)
        self.chunks: dict[str, list[SignedChunk]] = {
            device: [
                factory.make(start_ns=T0 + i * CHUNK_NS, device_id=device, stream="hq")
                for i in range(CHUNKS)
            ]
            for device in DEVICES
        }
        # Chunks sent, by (device, span asked for, seq): a job's stream is its device and
        # span (the machine makes no two jobs of one device with the same span).
        self.sent: Counter[tuple[str, int, int, int]] = Counter()
        self.holds: dict[int, SimulatedHold] = {}
        self.next_hold = 0


class Central:
    """One life of the central: its loop, its threads, its engine, its link."""

    def __init__(
        self, catalog: SqliteCatalog, store: ChunkStore, clock: ManualClock, life: int
    ) -> None:
        self.life = life
        self.loop = asyncio.new_event_loop()
        self.executor = ThreadPoolExecutor(max_workers=4)
        self.loop.set_default_executor(self.executor)
        self.ingest = IngestWriter(store, None)
        self.work = RetrievalWork(catalog, self.ingest, clock=clock)
        self.service = RetrievalService(catalog, self.work)
        self.link: SimulatedLink | None = None
        self.serving: asyncio.Task[None] | None = None

    def run(self, steps: int) -> None:
        async def spin() -> None:
            for _ in range(steps):
                await asyncio.sleep(0)
            await asyncio.sleep(0.001)  # worker threads answer

        self.loop.run_until_complete(spin())

    def kill(self) -> None:
        """Abandon everything in memory, running none of it; writes already in worker
        threads finish (a write is done or not, as on a real machine)."""
        self.executor.shutdown(wait=True, cancel_futures=True)

    def reap(self) -> None:
        """After the checks: let the abandoned tasks end quietly, so nothing of them runs
        later (their catalog writes fail: their threads are gone)."""
        logger = logging.getLogger("central")
        level = logger.level
        logger.setLevel(logging.CRITICAL + 1)
        try:
            if self.link is not None:
                self.link.cut()
            # A task whose cleanup fails (its threads are gone) goes to the engine's retry
            # sleep, which the held clock never ends: cancelled again until none is left.
            for _ in range(REAP_ROUNDS):
                tasks = [task for task in asyncio.all_tasks(self.loop) if not task.done()]
                if not tasks:
                    break
                for task in tasks:
                    task.cancel()
                with contextlib.suppress(BaseException):
                    self.loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
            self.loop.close()
        finally:
            logger.setLevel(level)


class RetrievalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._dir = tempfile.TemporaryDirectory()
        root = Path(self._dir.name)
        # The engine's sleeps (a window's opening, holds falling due) last until the
        # machine lets time pass: a plain manual clock would run through days at once.
        self.clock = HeldClock()
        self.clock.set_wall_ns(T0 + 86_400 * NS_PER_S)
        self.site = SimulatedSite()
        self.catalog = SqliteCatalog.open(
            root / "catalog.sqlite3",
            clock=self.clock,
            secret_box=SecretBox.load_or_create(root / "secret.key"),
        )
        self.store = ChunkStore.open(
            root / "media", quota_bytes=1 << 30, hold_budget_bytes=0, clock=self.clock
        )
        record, devices = self.catalog.add_site(
            NewSite(
                name="Bus 7",
                dial="site",
                remote_site_id=SITE_ID,
                public_key=self.site.signer.public_key,
                retrieval=RetrievalSettings(parallel_devices=2),
            ),
            None,
            [camera(d) for d in DEVICES],
        )
        self.site_record = record
        self.device_ids = {d.remote_device_id: d.device_id for d in devices}
        self.lives = 1
        self.central = Central(self.catalog, self.store, self.clock, self.lives)
        self.dead: list[Central] = []
        self.jobs: dict[str, tuple[int, int, tuple[str, ...]]] = {}
        self.stopped: set[str] = set()
        self.spans: set[tuple[str, int, int]] = set()
        self.interruptions = 0
        self.window_closed = False
        self.closed_at_ns = 0
        self.unstarted_when_closed: set[str] = set()
        self.window_reached_ns: int | None = None  # the clock stood in the closed window

    # -- the link -----------------------------------------------------------------------

    def _connect(self) -> None:
        central = self.central
        central.link = SimulatedLink(self.site, central.life)
        site = self.catalog.site(self.site_record.site_id)
        central.serving = central.loop.create_task(
            central.work.serve(site, central.link)  # type: ignore[arg-type]
        )

    @rule()
    @precondition(lambda self: self.central.link is None or not self.central.link.is_open)
    def heal(self) -> None:
        self._connect()
        self.central.run(3)

    @rule()
    @precondition(lambda self: self.central.link is not None and self.central.link.is_open)
    def cut(self) -> None:
        assert self.central.link is not None
        self.central.link.cut()
        self.interruptions += 1
        self.central.run(20)

    @rule()
    def kill_central(self) -> None:
        self.central.kill()
        self.dead.append(self.central)
        self.interruptions += 1
        self.lives += 1
        self.central = Central(self.catalog, self.store, self.clock, self.lives)

    @rule(steps=st.integers(1, 60))
    @precondition(lambda self: self.central.link is not None and self.central.link.is_open)
    def let_it_run(self, steps: int) -> None:
        self.central.run(steps)

    @rule(hours=st.integers(1, 200))
    def time_passes(self, hours: int) -> None:
        # Past half their life (3.5 days), a link's holds are renewed; a closed window may
        # open meanwhile.
        self.clock.advance(hours * 3600)
        now_ns = self.clock.now_ns()
        if self.window_closed and self.window_reached_ns is None and self._window_open_at(now_ns):
            self.window_reached_ns = now_ns
        self.central.run(20)

    # -- operators ----------------------------------------------------------------------

    @rule(
        first=st.integers(0, CHUNKS - 1),
        length=st.integers(1, CHUNKS),
        devices=st.lists(st.sampled_from(DEVICES), min_size=1, max_size=3, unique=True),
    )
    def make_job(self, first: int, length: int, devices: list[str]) -> None:
        start_ns = T0 + first * CHUNK_NS + NS_PER_S // 2  # inside a chunk: it counts too
        end_ns = min(T0 + CHUNKS * CHUNK_NS, start_ns + length * CHUNK_NS)
        spans = {(d, start_ns, end_ns) for d in devices}
        if spans & self.spans:
            return  # a twin of a job made before: its chunks would count as re-sent
        self.spans |= spans
        central = self.central

        async def make() -> str:
            job = await central.service.create(
                [self.device_ids[d] for d in devices], start_ns, end_ns
            )
            return job.job_id

        job_id = central.loop.run_until_complete(make())
        self.jobs[job_id] = (start_ns, end_ns, tuple(devices))
        if self.window_closed:
            self.unstarted_when_closed.add(job_id)

    @rule(data=st.data())
    @precondition(lambda self: bool(set(self.jobs) - self.stopped))
    def stop_job(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(set(self.jobs) - self.stopped)))
        self.stopped.add(job_id)  # asked to stop (it may have completed already)
        if self.catalog.retrieval_job(job_id).state not in (JobState.PENDING, JobState.RUNNING):
            return
        central = self.central
        central.loop.run_until_complete(central.service.stop(job_id))

    @rule()
    @precondition(lambda self: not self.window_closed)
    def close_window(self) -> None:
        # A window that is closed now, in UTC: [now + 1 h, now + 2 h) of the site's day.
        hour = (self.clock.now_ns() // (3600 * NS_PER_S) + 1) % 24
        settings_now = RetrievalSettings(
            parallel_devices=2,
            window_start=f"{hour:02d}:00",
            window_end=f"{(hour + 1) % 24:02d}:00",
        )
        self.catalog.update_site(self.site_record.site_id, retrieval=settings_now)
        self.central.work.jobs_changed(self.site_record.site_id)
        self.window_closed = True
        self.closed_at_ns = self.clock.now_ns()
        self.window_reached_ns = None
        # Jobs whose streams the engine had already started (their tasks not yet run) count
        # as started: the decision was taken while the window was open.
        running = self.central.work.running_streams(self.site_record.site_id)
        scheduled = {key.job_id for key in running}
        self.unstarted_when_closed = {
            job_id
            for job_id in self.jobs
            if self.catalog.retrieval_job(job_id).started_ns is None and job_id not in scheduled
        }

    @rule()
    @precondition(lambda self: self.window_closed)
    def open_window(self) -> None:
        self.catalog.update_site(
            self.site_record.site_id, retrieval=RetrievalSettings(parallel_devices=2)
        )
        self.central.work.jobs_changed(self.site_record.site_id)
        self.window_closed = False
        self.unstarted_when_closed = set()

    # -- what holds at every step ---------------------------------------------------------

    @invariant()
    def nothing_unstarted_starts_while_the_window_is_closed(self) -> None:
        # Time passes only when the machine says so; until the clock reaches the window,
        # no job that had not started has started.
        if not self.window_closed:
            return
        # A scheduling pass under way when the window closed may still start what it chose;
        # the clock stands still between steps, so starts at the closing instant are that.
        # A pass made while the clock stood in the window may start a job after time moved
        # on past its end (the start is stamped when the stream begins).
        reached_ns = self.window_reached_ns
        for job_id in self.unstarted_when_closed:
            job = self.catalog.retrieval_job(job_id)
            if job.started_ns is not None and job.started_ns > self.closed_at_ns:
                decided_in_window = reached_ns is not None and reached_ns <= job.started_ns
                assert self._window_open_at(job.started_ns) or decided_in_window, job

    def _window_open_at(self, at_ns: int) -> bool:
        site = self.catalog.site(self.site_record.site_id)
        start = site.retrieval.window_start
        if start is None:
            return True
        hour_now = at_ns // (3600 * NS_PER_S) % 24
        return hour_now == int(start[:2])

    @invariant()
    def no_chunk_is_sent_more_than_once_per_interruption(self) -> None:
        resent = sum(count - 1 for count in self.site.sent.values() if count > 1)
        assert resent <= self.interruptions * len(DEVICES), (resent, self.interruptions)

    # -- the end ------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self._settle_and_check()
        finally:
            self.central.kill()
            for central in [*self.dead, self.central]:
                central.reap()
            self.store.close()
            self.catalog.close()
            self._dir.cleanup()

    def _settle_and_check(self) -> None:
        if self.window_closed:
            self.open_window()
        if self.central.link is None or not self.central.link.is_open:
            self._connect()
        for _ in range(MAX_SETTLE_ROUNDS):
            self.central.run(50)
            if not self.catalog.unfinished_retrieval_jobs():
                break
        unfinished = self.catalog.unfinished_retrieval_jobs()
        assert not unfinished, unfinished
        for job_id, (start_ns, end_ns, devices) in self.jobs.items():
            job = self.catalog.retrieval_job(job_id)
            if job_id in self.stopped and job.state is not JobState.COMPLETED:
                assert job.state is JobState.STOPPED, job
                continue
            assert job.state is JobState.COMPLETED, job
            assert job.holds == (), job
            for device in devices:
                wanted = [
                    c
                    for c in self.site.chunks[device]
                    if c.header.end_ns > start_ns and c.header.start_ns < end_ns
                ]
                for chunk in wanted:
                    stored = self.store.read_chunk(device, "hq", chunk.header.seq, site_id=SITE_ID)
                    assert stored == chunk, (job_id, device, chunk.header.seq)
        # Nothing the site has not got, nothing twice (the store is keyed by seq and hash).
        for device in DEVICES:
            metas = self.store.chunk_metas(device, "hq", 0, 1 << 62, site_id=SITE_ID)
            seqs = [m.seq for m in metas]
            assert len(seqs) == len(set(seqs))
            originals = {c.header.seq: c.chunk_hash for c in self.site.chunks[device]}
            assert all(originals[m.seq] == m.chunk_hash for m in metas)
        # Holds are released when their job ends; one placed and never recorded (a cut or
        # a kill before its answer was stored) is found and released on the next link.
        assert not self.site.holds, self.site.holds


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_engine_keeps_its_promises_whatever_happens(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="central")
    long_run = os.environ.get("SITELINE_LONG_FAULTS") == "1"  # the long runs, not in CI
    machine = settings(
        max_examples=300 if long_run else 25,
        stateful_step_count=60 if long_run else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )(RetrievalMachine)
    machine.TestCase().runTest()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
