"""A span asked for again after its job was stopped (how an operator restarts a retrieval):
the new job goes on after the chunks the central holds already, counts them as done, and
the link carries none of them a second time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.central.retrieval_faults.fault_run import (
    HQ,
    Span,
    chunks_so_far,
    create_job,
    ended,
    job_until,
    recorded_span,
    set_cap,
)
from tests.central.retrieval_faults.proxied_run import ProxiedRun, proxied_run

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DEVICES = ["cam-a", "cam-b"]
CAP_BPS = 1_000_000
SPAN_CHUNKS = 8


async def _held_at_central(run: ProxiedRun, span: Span) -> int:
    """How many HQ chunks of the span the central holds, once that stops changing (a chunk
    under way when the job stopped may still be committed after the stop answered)."""
    store, site_id = run.central.node.store, run.remote_site_id

    def count() -> int:
        return sum(
            len(store.chunk_metas(device, HQ, span.start_ns, span.end_ns, site_id=site_id))
            for device in DEVICES
        )

    held = await asyncio.to_thread(count)
    async with asyncio.timeout(10):
        while True:
            await asyncio.sleep(0.5)
            now = await asyncio.to_thread(count)
            if now == held:
                return held
            held = now


async def test_a_span_asked_for_again_brings_only_what_the_central_lacks(tmp_path: Path) -> None:
    async with proxied_run(tmp_path) as run:
        span = await recorded_span(run.site.store, DEVICES, SPAN_CHUNKS)
        expected = {
            device: await asyncio.to_thread(
                run.site.store.chunk_metas, device, HQ, span.start_ns, span.end_ns
            )
            for device in DEVICES
        }
        total = sum(len(metas) for metas in expected.values())
        await set_cap(run.central, run.added.site_id, CAP_BPS)
        device_ids = [run.added.devices[device] for device in DEVICES]

        first_id = await create_job(run.central, device_ids, span)
        await job_until(run.central, first_id, lambda job: chunks_so_far(job) >= 3, every_s=0.02)
        status, stopped = await run.central.call("POST", f"/retrievals/{first_id}/stop")
        assert status == 200, stopped
        assert stopped["state"] == "stopped"
        held = await _held_at_central(run, span)
        assert 3 <= held < total, (held, total)
        delivered_before = run.recorder.deliveries

        second_id = await create_job(run.central, device_ids, span)
        second = await job_until(run.central, second_id, ended)

        assert second["state"] == "completed", second
        # Every chunk of the span crossed the link once, over both jobs.
        assert run.recorder.already_held == 0
        assert run.recorder.deliveries == total
        assert run.recorder.deliveries - delivered_before == total - held
        # The second job counts the whole span as done, what it found held included.
        by_device = {p["device_id"]: p for p in second["progress"]}
        for device in DEVICES:
            progress = by_device[run.added.devices[device]]
            assert progress["chunks"] == len(expected[device])
            assert progress["bytes"] == sum(meta.payload_size for meta in expected[device])
        # And the central holds each chunk of the span exactly as the site signed it.
        for device, metas in expected.items():
            at_central = await asyncio.to_thread(
                run.central.node.store.chunk_metas,
                device,
                HQ,
                span.start_ns,
                span.end_ns,
                site_id=run.remote_site_id,
            )
            assert [(m.header_bytes, m.signature) for m in at_central] == [
                (m.header_bytes, m.signature) for m in metas
            ]
