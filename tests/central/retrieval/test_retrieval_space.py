"""The central's room for retrievals over a real store: a job's hold protects what it
brought from the quota guard, the running total refuses a chunk over the hold budget naming
the store and the budget, releasing a job's holds makes room, and `tidy` releases the holds
of jobs that are not unfinished."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.config import ConfigError, load_central_config
from central.retrieval.retrieval_space import HeldStream, RetrievalSpace, hold_owner
from shared.clock import ManualClock
from shared.signing import SiteSigner
from shared.store.chunk_meta import stored_bytes_of
from shared.store.chunk_store import ChunkStore
from tests.store.store_chunks import T0_NS, ChunkFactory

KIB = 1 << 10
QUOTA = 1024 * KIB
BUDGET = 256 * KIB
CHUNK = 32 * KIB
SITE = "site-r"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChunkStore]:
    with ChunkStore.open(
        tmp_path / "media", quota_bytes=QUOTA, hold_budget_bytes=BUDGET, clock=ManualClock()
    ) as opened:
        yield opened


async def test_a_held_job_keeps_its_chunks_and_stops_at_the_budget(store: ChunkStore) -> None:
    factory = ChunkFactory(SiteSigner.generate(), site_id=SITE)
    space = RetrievalSpace(store, clock=ManualClock())
    old_live = factory.run(30, device_id="cam-1", stream="lq", payload_size=CHUNK)
    for chunk in old_live:
        await asyncio.to_thread(store.put, chunk)
    start_ns = T0_NS + 3600 * 10**9
    retrieved = factory.run(
        12, start_ns=start_ns, device_id="cam-2", stream="hq", payload_size=CHUNK
    )
    await space.refresh()
    await space.hold("j-1", HeldStream(SITE, "cam-2", "hq"), start_ns, start_ns + 10**12)
    await space.hold("j-1", HeldStream(SITE, "cam-2", "hq"), start_ns, start_ns + 10**12)
    assert [h.owner for h in store.list_holds()] == [hold_owner("j-1")]  # placed once

    stored = []
    refusal = None
    for chunk in retrieved:
        size = stored_bytes_of(chunk)
        refusal = space.reserve(size)
        if refusal is not None:
            break
        outcome = await asyncio.to_thread(store.put, chunk)
        space.settle(size, stored=outcome)
        stored.append(chunk)
    assert refusal is not None
    assert str(store.path) in refusal, refusal
    assert "hold budget of 262144 bytes" in refusal, refusal
    assert 0 < len(stored) < len(retrieved)
    usage = store.usage()
    assert usage.held_bytes == sum(stored_bytes_of(c) for c in stored) <= BUDGET
    for chunk in stored:  # the quota guard took old live chunks, none of the job's
        assert store.read_chunk("cam-2", "hq", chunk.header.seq, site_id=SITE) == chunk
    assert store.read_chunk("cam-1", "lq", 0, site_id=SITE) is None
    assert usage.live_bytes <= QUOTA

    # The job ends: its hold goes, and the room returns.
    releases = space.releases
    assert await space.release("j-1") == 1
    assert space.releases == releases + 1
    assert store.list_holds() == []
    assert space.has_room()
    assert space.reserve(stored_bytes_of(retrieved[len(stored)])) is None


async def test_tidy_releases_the_holds_of_jobs_not_unfinished(store: ChunkStore) -> None:
    space = RetrievalSpace(store, clock=ManualClock())
    for job_id in ("j-ended", "j-running", "j-gone"):
        await space.hold(job_id, HeldStream(SITE, "cam-1", "hq"), T0_NS, T0_NS + 10**12)
    store.place_hold(
        "cam-1", "hq", T0_NS, T0_NS + 10, expires_ns=T0_NS + 10**15, owner="evidence", site_id=SITE
    )
    released = await space.tidy(lambda job_id: job_id == "j-running")
    assert released == 2
    assert sorted(h.owner for h in store.list_holds()) == ["evidence", hold_owner("j-running")]


def test_the_hold_budget_fraction_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "central.toml"
    head = '[central]\nid = "central-0001"\n[storage]\nquota = "100 MiB"\n'
    path.write_text(head)
    assert load_central_config(path).storage.hold_budget_bytes == 50 * 1024**2  # the default
    path.write_text(head + "hold_budget_fraction = 0.25\n")
    assert load_central_config(path).storage.hold_budget_bytes == 25 * 1024**2
    path.write_text(head + "hold_budget_fraction = 0.95\n")
    with pytest.raises(ConfigError, match="hold_budget_fraction"):
        load_central_config(path)
