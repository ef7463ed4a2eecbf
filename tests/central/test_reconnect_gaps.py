"""The gap a returning link queues (`ReconnectRetrieval`), next to other unfinished jobs of the
device's reference stream: a job of an older span (an earlier outage, a missed live chunk)
does not hide a new gap, and what a job still has to bring is not asked for twice. A real
catalog and store (one real H.264 chunk as the central's head of the stream) on a manual
clock; the retrieval engine is never given a link, so the jobs stay pending to be read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from central.catalog import NewRetrievalJob, SqliteCatalog
from central.retrieval.job_records import JobOrigin, RetrievalJob
from central.retrieval.reconnect_retrieval import ReconnectRetrieval
from central.retrieval.retrieval_service import RetrievalService
from central.retrieval.retrieval_work import RetrievalWork
from shared.chunk import GENESIS_HASH, ChunkDraft, seal_chunk
from shared.clock import NS_PER_S, ManualClock
from shared.media import MediaPacket
from shared.signing import SiteSigner
from shared.store.chunk_store import ChunkStore
from tests.central.catalog.catalog_parts import camera, dial_in_site, open_catalog
from tests.central.retrieval_rules.conftest import NoChunks
from tests.shared.test_chain_verification import CODEC, FRAME_NS, encoded_gops

REMOTE_SITE = "site-depot"
NO_LINK: Any = None  # ReconnectRetrieval only queues jobs; RetrievalWork runs them on a link


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def catalog(tmp_path: Path, clock: ManualClock) -> Iterator[SqliteCatalog]:
    yield from open_catalog(tmp_path, clock)


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[ChunkStore]:
    opened = ChunkStore.open(
        tmp_path / "media", quota_bytes=16 * 1024 * 1024, hold_budget_bytes=0, clock=clock
    )
    yield opened
    opened.close()


def store_head(store: ChunkStore, end_ns: int) -> None:
    """One real lq chunk of cam-a ending at `end_ns`: the central's head of the stream."""
    gop = encoded_gops()[0]
    start_ns = end_ns - len(gop) * FRAME_NS
    packets = tuple(
        MediaPacket("lq", i, i, 1, key, data, start_ns + i * FRAME_NS)
        for i, (key, data) in enumerate(gop)
    )
    draft = ChunkDraft("cam-a", "lq", start_ns, end_ns, CODEC, packets)
    chunk = seal_chunk(
        draft,
        site_id=REMOTE_SITE,
        seq=0,
        prev_chunk_hash=GENESIS_HASH,
        discontinuity=False,
        signer=SiteSigner.generate(),
    )
    assert store.put(chunk)


async def test_a_new_gap_is_queued_after_what_unfinished_jobs_bring(
    catalog: SqliteCatalog, store: ChunkStore, clock: ManualClock
) -> None:
    site, (cam,) = catalog.add_site(
        dial_in_site("Depot", remote_site_id=REMOTE_SITE), None, [camera("cam-a")]
    )
    cam = catalog.update_device(cam.device_id, recording="both")
    site = catalog.site(site.site_id)
    retrievals = RetrievalService(catalog, RetrievalWork(catalog, NoChunks(), clock=clock))
    reconnect = ReconnectRetrieval(catalog, store, retrievals, clock=clock)
    now = clock.now_ns()
    head_end = now - 100 * NS_PER_S
    await asyncio.to_thread(store_head, store, head_end)
    # An unfinished reconnect job of an older span (say, a missed live chunk still waiting
    # for the window) does not hide the gap since the head.
    older = catalog.add_retrieval_job(
        NewRetrievalJob(
            site_id=site.site_id,
            device_ids=(cam.device_id,),
            start_ns=now - 1000 * NS_PER_S,
            end_ns=now - 990 * NS_PER_S,
            quality="lq",
            origin=JobOrigin.RECONNECT,
        )
    )
    await reconnect.serve(site, NO_LINK)
    (gap,) = [job for job in await jobs(catalog) if job.job_id != older.job_id]
    assert (gap.start_ns, gap.end_ns) == (head_end, now)
    assert (gap.quality, gap.origin, gap.device_ids) == (
        "lq",
        JobOrigin.RECONNECT,
        (cam.device_id,),
    )
    # The link flaps: the head has not moved, and the pending gap job brings all but the
    # last 5 s, too short for a job.
    clock.advance(5)
    await reconnect.serve(site, NO_LINK)
    assert len(await jobs(catalog)) == 2
    # Longer: only what follows the pending job is asked for.
    clock.advance(20)
    await reconnect.serve(site, NO_LINK)
    latest = max(await jobs(catalog), key=lambda job: job.created_ns)
    assert (latest.start_ns, latest.end_ns) == (now, clock.now_ns())


async def jobs(catalog: SqliteCatalog) -> list[RetrievalJob]:
    return await asyncio.to_thread(lambda: catalog.retrieval_jobs(limit=100))
