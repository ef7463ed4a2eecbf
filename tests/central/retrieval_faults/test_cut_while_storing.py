"""A link that ends while the central is still storing a chunk it received: the next link
waits for that commit, so it starts after the chunk instead of asking for it again.

The central's store is made slow for one chunk, as a slow disk would be: that chunk's
commit goes on in the background (the central's `IngestWriter` stores a chunk even when
whoever handed it in was cancelled), well past the link's end and the next link's start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from central.ingest_writer import PutOutcome
from shared.chunk import SignedChunk
from tests.central.retrieval_faults.fault_run import (
    WAIT_S,
    chunks_so_far,
    create_job,
    ended,
    job_until,
    recorded_span,
    site_until,
)
from tests.central.retrieval_faults.proxied_run import ProxiedRun, proxied_run

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DEVICE = "cam-a"
SLOW_CHUNK = 2
"""The delivery whose commit outlasts its link."""
NEW_LINK_HEAD_START_S = 1.5
"""How long the next link runs before the slow commit ends: ample to ask for a chunk again."""


def _slow_disk(run: ProxiedRun) -> None:
    """The central's store, as a slow disk makes it: a commit runs to its end whether or
    not its caller is still waiting (the recorder's hooks run inside it)."""
    ingest = run.central.node.ingest
    assert ingest is not None
    store_them = ingest.put_verified

    async def put_verified(chunks: Sequence[SignedChunk]) -> list[PutOutcome]:
        return await asyncio.shield(asyncio.ensure_future(store_them(chunks)))

    ingest.put_verified = put_verified  # type: ignore[method-assign]


async def test_a_cut_while_a_chunk_is_stored_does_not_ask_for_it_again(tmp_path: Path) -> None:
    async with proxied_run(tmp_path) as run:
        site_id = run.added.site_id
        span = await recorded_span(run.site.store, [DEVICE], 6)
        next_link_started = asyncio.Event()

        async def cut_while_storing(deliveries: int) -> None:
            if deliveries != SLOW_CHUNK:
                return
            run.proxy.cut_now(f"cut while the central stores delivery {SLOW_CHUNK}")
            await site_until(run.central, site_id, online=False)
            await site_until(run.central, site_id, online=True)
            await asyncio.sleep(NEW_LINK_HEAD_START_S)
            next_link_started.set()

        run.recorder.on_delivery.append(cut_while_storing)
        _slow_disk(run)
        job_id = await create_job(run.central, [run.added.devices[DEVICE]], span)
        async with asyncio.timeout(WAIT_S):
            await next_link_started.wait()
        job = await job_until(run.central, job_id, ended)
        check = await run.verdict(job, [DEVICE])
        assert check.cuts == 1
        # The chunk under commit when the link ended was not asked for again: nothing
        # reached the store twice.
        assert run.recorder.already_held == 0, check
        assert run.recorder.deliveries == check.expected == chunks_so_far(job)
