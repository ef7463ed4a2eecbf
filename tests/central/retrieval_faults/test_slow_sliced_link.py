"""A retrieval job over a slow, badly framed link: every byte delayed each way (a long
mobile round trip) and written on in small slices that split the link's frames at odd
places, with a reset at a random byte on top. The job completes with every chunk at the
central exactly once, verified, with its receipt, and at most one chunk of a stream handed
to the store again for the cut."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.central.retrieval_faults.fault_run import (
    WAIT_S,
    chunks_so_far,
    create_job,
    ended,
    job_until,
    recorded_span,
    site_until,
)
from tests.central.retrieval_faults.proxied_run import proxied_run

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DEVICES = ["cam-a", "cam-b"]
LATENCY_S = 0.08
"""Each way: a 160 ms round trip, as on a mobile line."""
SLICE_BYTES = 1_337
"""Smaller than a link frame's piece, and prime to nothing the protocol uses."""


async def test_a_job_over_a_slow_sliced_link_with_a_reset_brings_every_chunk_once(
    tmp_path: Path,
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    async with proxied_run(tmp_path, latency_s=LATENCY_S, slice_bytes=SLICE_BYTES) as run:
        span = await recorded_span(run.site.store, DEVICES, 6)
        job_id = await create_job(run.central, [run.added.devices[d] for d in DEVICES], span)
        await run.recorder.more(2)
        await run.reset_at_a_random_byte(rng, f"reset (seed {seed})", within_bytes=60_000)
        await site_until(run.central, run.added.site_id, online=True)
        job = await job_until(run.central, job_id, ended, timeout_s=WAIT_S * 2)
        check = await run.verdict(job, DEVICES)
        assert job["state"] == "completed", (seed, job)
        assert check.cuts == 1, (seed, check)
        assert run.recorder.already_held == check.resends <= len(DEVICES), (seed, check)
        assert chunks_so_far(job) == check.expected
        assert run.proxy.sends > run.proxy.forwarded_to_client // SLICE_BYTES  # sliced
