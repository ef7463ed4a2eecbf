"""The gap a returning link queues (`ReconnectRetrieval`), next to other unfinished jobs of the
device's reference stream: a job of an older span (an earlier outage, a missed live chunk)
does not hide a new gap, and what a job still has to bring is not asked for twice. A real
catalog and store (one real H.264 chunk as the central's head of the stream) on a manual
clock; the retrieval engine is never given a link, so the jobs stay pending to be read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from central.catalog import NewRetrievalJob, SqliteCatalog
from central.catalog.records import DeviceRecord, SiteRecord
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


@dataclass(frozen=True)
class Depot:
    """A site of one camera the central records (`recording` both), and the works that
    queue its jobs."""

    site: SiteRecord
    cam: DeviceRecord
    retrievals: RetrievalService
    reconnect: ReconnectRetrieval


def depot_recorded_centrally(
    catalog: SqliteCatalog,
    store: ChunkStore,
    clock: ManualClock,
    *,
    central_rule: dict[str, Any] | None = None,
) -> Depot:
    site, (cam,) = catalog.add_site(
        dial_in_site("Depot", remote_site_id=REMOTE_SITE), None, [camera("cam-a")]
    )
    if central_rule is None:
        cam = catalog.update_device(cam.device_id, recording="both")
    else:
        cam = catalog.update_device(cam.device_id, recording="both", central_rule=central_rule)
    retrievals = RetrievalService(catalog, RetrievalWork(catalog, NoChunks(), clock=clock))
    reconnect = ReconnectRetrieval(catalog, store, retrievals, clock=clock)
    return Depot(catalog.site(site.site_id), cam, retrievals, reconnect)


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
    depot = depot_recorded_centrally(catalog, store, clock)
    site, cam, reconnect = depot.site, depot.cam, depot.reconnect
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


def store_chain(store: ChunkStore, end_ns: int, count: int, missing: set[int]) -> list[Any]:
    """`count` chained lq chunks of cam-a back to back, the last ending at `end_ns`, stored
    but for the seqs in `missing`; the headers of all of them."""
    gop = encoded_gops()[0]
    length_ns = len(gop) * FRAME_NS
    signer = SiteSigner.generate()
    prev, headers = GENESIS_HASH, []
    for seq in range(count):
        start_ns = end_ns - (count - seq) * length_ns
        packets = tuple(
            MediaPacket("lq", i, i, 1, key, data, start_ns + i * FRAME_NS)
            for i, (key, data) in enumerate(gop)
        )
        draft = ChunkDraft("cam-a", "lq", start_ns, start_ns + length_ns, CODEC, packets)
        chunk = seal_chunk(
            draft,
            site_id=REMOTE_SITE,
            seq=seq,
            prev_chunk_hash=prev,
            discontinuity=False,
            signer=signer,
        )
        prev = chunk.chunk_hash
        headers.append(chunk.header)
        if seq not in missing:
            assert store.put(chunk)
    return headers


async def test_a_hole_before_the_head_is_queued_once(
    catalog: SqliteCatalog, store: ChunkStore, clock: ManualClock
) -> None:
    # Chunks 3 and 4 were missed while an earlier link was up, and the central was killed
    # before their batch became a job: the next link's start finds the hole.
    depot = depot_recorded_centrally(catalog, store, clock)
    site, retrievals, reconnect = depot.site, depot.retrievals, depot.reconnect
    now = clock.now_ns()
    headers = await asyncio.to_thread(store_chain, store, now - 2 * NS_PER_S, 8, {3, 4})
    await reconnect.serve(site, NO_LINK)
    (hole,) = await jobs(catalog)  # the head is 2 s old: too little for a gap job
    assert (hole.start_ns, hole.end_ns) == (headers[3].start_ns, headers[4].end_ns)
    assert (hole.quality, hole.origin) == ("lq", JobOrigin.RECONNECT)
    # Asked once: not again at the next link, even once its job ended without the chunks.
    stopped = await retrievals.stop(hole.job_id)
    assert stopped.state.value == "stopped"
    await reconnect.serve(site, NO_LINK)
    assert len(await jobs(catalog)) == 1


async def test_under_a_triggered_rule_a_missing_seq_is_no_hole(
    catalog: SqliteCatalog, store: ChunkStore, clock: ManualClock
) -> None:
    # The rule may not have wanted those chunks: only a miss the gate released is a hole.
    depot = depot_recorded_centrally(catalog, store, clock, central_rule={"mode": "motion"})
    await asyncio.to_thread(store_chain, store, clock.now_ns() - 2 * NS_PER_S, 8, {3, 4})
    await depot.reconnect.serve(depot.site, NO_LINK)
    assert await jobs(catalog) == []


async def jobs(catalog: SqliteCatalog) -> list[RetrievalJob]:
    return await asyncio.to_thread(lambda: catalog.retrieval_jobs(limit=100))
