"""A retrieval job over a link that is cut again and again: resets at random byte offsets of
what the site sends, and silent stalls (a half-open connection, found by the read timeout).
The job completes with every chunk of its span at the central exactly once, verified, with
its receipt, at most one chunk handed to the store again per cut (of all its streams), and the
site's holds released.

Deliveries are counted where the central hands a chunk to its store (`DeliveryRecorder`);
`already_held` is how many of them the store already had, the re-sends the cuts cost.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.central.retrieval_faults.fault_run import (
    READ_TIMEOUT_S,
    WAIT_S,
    chunks_so_far,
    create_job,
    ended,
    job_until,
    recorded_span,
    set_cap,
    site_until,
)
from tests.central.retrieval_faults.proxied_run import ProxiedRun, proxied_run

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DEVICES = ["cam-a", "cam-b"]
CAP_BPS = 1_000_000
"""Slow enough that the job outlasts its cuts, fast enough to keep the test short."""
STALL_FOUND_WITHIN_S = READ_TIMEOUT_S + 1.0
"""The read timeout, plus the time the central's status and this test's polling take."""
LONG = os.environ.get("SITELINE_LONG_FAULTS") == "1"


async def _stall(run: ProxiedRun, label: str) -> float:
    """Stop forwarding without closing (half-open), until the central gives the link up;
    the seconds that took. Then the dead connections are dropped and forwarding resumes."""
    run.proxy.flowing.clear()
    stalled = time.monotonic()
    await site_until(run.central, run.added.site_id, online=False)
    found_s = time.monotonic() - stalled
    run.proxy.cut_now(label)
    run.proxy.flowing.set()
    return found_s


async def _cut_repeatedly(tmp_path: Path, *, cuts: int, chunks: int, seed: int) -> None:
    rng = random.Random(seed)
    async with proxied_run(tmp_path) as run:
        span = await recorded_span(run.site.store, DEVICES, chunks)
        await set_cap(run.central, run.added.site_id, CAP_BPS)
        job_id = await create_job(run.central, [run.added.devices[d] for d in DEVICES], span)
        made = 0
        stalls: list[float] = []
        for number in range(cuts):
            await site_until(run.central, run.added.site_id, online=True)
            await run.recorder.more(rng.randrange(1, 3))
            _, job = await run.central.call("GET", f"/retrievals/{job_id}")
            if ended(job):
                break
            label = f"cut {number + 1} of seed {seed}"
            if number % 3 == 2:
                stalls.append(await _stall(run, f"{label}: stall"))
            else:
                await run.reset_at_a_random_byte(rng, f"{label}: reset", within_bytes=80_000)
            made += 1
        job = await job_until(run.central, job_id, ended, timeout_s=WAIT_S * 2)
        check = await run.verdict(job, DEVICES)
        assert made >= min(cuts, 3), f"only {made} cuts landed before the job ended (seed {seed})"
        assert check.cuts >= made
        assert run.recorder.already_held == check.resends <= made, (
            run.recorder.already_held,
            check,
        )
        assert all(found_s <= STALL_FOUND_WITHIN_S for found_s in stalls), stalls
        assert chunks_so_far(job) == check.expected


async def test_cuts_at_random_points_lose_nothing_and_resend_at_most_one_chunk_each(
    tmp_path: Path,
) -> None:
    await _cut_repeatedly(tmp_path, cuts=4, chunks=10, seed=random.randrange(1 << 32))


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(not LONG, reason="the long fault runs need SITELINE_LONG_FAULTS=1")
async def test_many_cuts_over_a_long_span(tmp_path: Path) -> None:
    await _cut_repeatedly(tmp_path, cuts=15, chunks=40, seed=random.randrange(1 << 32))


async def test_a_stalled_link_is_found_within_the_read_timeout_and_the_job_resumes(
    tmp_path: Path,
) -> None:
    async with proxied_run(tmp_path) as run:
        span = await recorded_span(run.site.store, DEVICES, 8)
        await set_cap(run.central, run.added.site_id, CAP_BPS)
        job_id = await create_job(run.central, [run.added.devices[d] for d in DEVICES], span)
        await run.recorder.more(2)
        before = run.recorder.deliveries
        found_s = await _stall(run, "the link stalled (half-open)")
        assert found_s <= STALL_FOUND_WITHIN_S, f"the stall was found after {found_s:.2f} s"
        at_stall = run.recorder.deliveries
        job = await job_until(run.central, job_id, ended)
        assert run.recorder.deliveries > at_stall >= before  # it went on after the stall
        await run.verdict(job, DEVICES)
