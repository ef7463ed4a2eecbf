"""The collector of the chunks the live recording missed (`MissedChunkRetrieval`), on a real
catalog and retrieval service whose engine is never given a link (the jobs stay pending for
the test to read), with a held clock: consecutive misses of a device become one job after a
quiet time or once the span is long enough, devices are apart, and what an unfinished job of
the reference stream will bring is not asked for again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from central.catalog import DeviceRecord, NewRetrievalJob, SqliteCatalog
from central.retrieval.job_records import JobOrigin, JobState, RetrievalJob
from central.retrieval.missed_chunks import MissedChunkRetrieval
from central.retrieval.retrieval_service import RetrievalService
from central.retrieval.retrieval_work import RetrievalWork
from shared.clock import NS_PER_S
from tests.central.catalog.catalog_parts import camera, dial_in_site, open_catalog
from tests.central.retrieval_rules.conftest import NoChunks
from tests.fakes.held_clock import HeldClock

QUIET_S = 5.0
MAX_SPAN_S = 10.0
T0 = 1_699_999_000 * NS_PER_S  # the site's wall time of the first missed chunk


def chunk(index: int) -> tuple[int, int]:
    """The span of the `index`-th one-second chunk after T0."""
    return T0 + index * NS_PER_S, T0 + (index + 1) * NS_PER_S


@dataclass
class World:
    clock: HeldClock
    catalog: SqliteCatalog
    retrievals: RetrievalService
    missed: MissedChunkRetrieval
    cam_a: DeviceRecord
    cam_b: DeviceRecord

    async def jobs(self) -> list[RetrievalJob]:
        """Every job, oldest first (the clock moves between the jobs the tests make)."""
        jobs = await asyncio.to_thread(lambda: self.catalog.retrieval_jobs(limit=100))
        return sorted(jobs, key=lambda job: job.created_ns)

    async def jobs_once_settled(self, count: int) -> list[RetrievalJob]:
        """The jobs, once `count` exist and nothing is being made (bounded wait)."""
        for _ in range(400):
            jobs = await self.jobs()
            if len(jobs) >= count and not self.missed.waiting_devices:
                await self.missed.flush()  # nothing open: only waits for jobs being made
                return await self.jobs()
            await asyncio.sleep(0.01)
        raise AssertionError(f"never {count} jobs: {await self.jobs()}")

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        for _ in range(5):
            await asyncio.sleep(0)


@pytest.fixture
def clock() -> HeldClock:
    return HeldClock()


@pytest.fixture
def catalog(tmp_path: Path, clock: HeldClock) -> Iterator[SqliteCatalog]:
    yield from open_catalog(tmp_path, clock)


@pytest.fixture
async def world(catalog: SqliteCatalog, clock: HeldClock) -> AsyncIterator[World]:
    _, (cam_a, cam_b) = catalog.add_site(
        dial_in_site("Depot", remote_site_id="site-depot"), None, [camera("cam-a"), camera("cam-b")]
    )
    retrievals = RetrievalService(catalog, RetrievalWork(catalog, NoChunks(), clock=clock))
    missed = MissedChunkRetrieval(
        catalog, retrievals, clock=clock, quiet_s=QUIET_S, max_span_s=MAX_SPAN_S
    )
    yield World(clock, catalog, retrievals, missed, cam_a, cam_b)
    await missed.close()


async def test_consecutive_misses_become_one_job_after_a_quiet_time(world: World) -> None:
    cam = world.cam_a.device_id
    world.missed.chunk_missed(cam, *chunk(0))
    await world.advance(3)
    world.missed.chunk_missed(cam, *chunk(1))
    await world.advance(3)  # 6 s after the first miss, 3 s after the last
    world.missed.chunk_missed(cam, *chunk(2))
    await world.advance(QUIET_S - 1)
    assert await world.jobs() == []
    assert world.missed.waiting_devices == 1
    await world.advance(1)
    (job,) = await world.jobs_once_settled(1)
    assert (job.start_ns, job.end_ns) == (chunk(0)[0], chunk(2)[1])
    assert job.device_ids == (cam,)
    assert (job.quality, job.origin, job.state) == ("lq", JobOrigin.RECONNECT, JobState.PENDING)
    assert job.created_by is None
    assert world.missed.jobs_made == 1
    # The next miss opens a new batch, and a new job.
    world.missed.chunk_missed(cam, *chunk(8))
    await world.advance(QUIET_S)
    first, second = await world.jobs_once_settled(2)
    assert first == job
    assert (second.start_ns, second.end_ns) == chunk(8)


async def test_a_long_run_of_misses_is_queued_once_its_span_is_long_enough(world: World) -> None:
    cam = world.cam_a.device_id
    for index in range(int(MAX_SPAN_S) - 1):
        world.missed.chunk_missed(cam, *chunk(index))
    for _ in range(20):
        await asyncio.sleep(0)
    assert await world.jobs() == []  # 9 s of chunks, and no quiet time yet
    world.missed.chunk_missed(cam, *chunk(int(MAX_SPAN_S) - 1))  # now 10 s: at once
    assert world.missed.waiting_devices == 0
    (job,) = await world.jobs_once_settled(1)
    assert (job.start_ns, job.end_ns) == (chunk(0)[0], chunk(int(MAX_SPAN_S) - 1)[1])
    # The clock never moved: the job did not wait for the quiet time.
    assert world.clock.monotonic_ns() == 0


async def test_devices_are_collected_apart_and_close_queues_what_waits(world: World) -> None:
    a, b = world.cam_a.device_id, world.cam_b.device_id
    world.missed.chunk_missed(a, *chunk(0))
    world.missed.chunk_missed(b, *chunk(0))
    world.missed.chunk_missed(a, *chunk(1))
    assert world.missed.waiting_devices == 2
    await world.missed.close()  # before the quiet time: the central stops
    assert world.missed.waiting_devices == 0
    jobs = {job.device_ids: (job.start_ns, job.end_ns) for job in await world.jobs()}
    assert jobs == {(a,): (chunk(0)[0], chunk(1)[1]), (b,): chunk(0)}


async def test_what_an_unfinished_job_of_the_reference_stream_brings_is_not_asked_again(
    world: World,
) -> None:
    cam = world.cam_a.device_id

    def add_job(start_ns: int, end_ns: int, quality: str = "lq") -> RetrievalJob:
        return world.catalog.add_retrieval_job(
            NewRetrievalJob(
                site_id=world.cam_a.site_id,
                device_ids=(cam,),
                start_ns=start_ns,
                end_ns=end_ns,
                quality=quality,  # type: ignore[arg-type]
                origin=JobOrigin.USER,
                created_by="alice",
            )
        )

    # An LQ job that reaches into chunk 1 brings chunks 0 and 1 (the site sends every chunk
    # that overlaps a span); an HQ job and a stopped LQ job bring nothing of the LQ.
    covering = await asyncio.to_thread(add_job, chunk(0)[0] - NS_PER_S, chunk(1)[0] + 1)
    hq = await asyncio.to_thread(add_job, chunk(0)[0], chunk(9)[1], "hq")
    stopped = await asyncio.to_thread(add_job, chunk(3)[0], chunk(4)[1])
    await asyncio.to_thread(
        world.catalog.set_retrieval_job_state, stopped.job_id, JobState.STOPPED, reason="by alice"
    )
    for index in (0, 1, 3, 4):
        world.missed.chunk_missed(cam, *chunk(index))
    await world.advance(QUIET_S)
    jobs = await world.jobs_once_settled(4)
    there = {covering.job_id, hq.job_id, stopped.job_id}
    (made,) = [job for job in jobs if job.job_id not in there]
    assert (made.start_ns, made.end_ns) == (chunk(3)[0], chunk(4)[1])
    assert world.missed.chunks_already_coming == 2
    # Misses that the new job and the covering one bring make no job at all.
    world.missed.chunk_missed(cam, *chunk(1))
    world.missed.chunk_missed(cam, *chunk(4))
    await world.advance(QUIET_S)
    for _ in range(400):
        if world.missed.chunks_already_coming == 4:
            break
        await asyncio.sleep(0.01)
    assert world.missed.chunks_already_coming == 4
    assert len(await world.jobs()) == 4
    assert world.missed.jobs_made == 1
