"""A chunk that fails verification on the way: one byte of its payload flipped once, it is
rejected, requested again, and the job completes clean; flipped on every attempt, the
stream fails with a reason naming the chunk, its cursor stays on the chunk before it, and
the central holds the chunks before it and none after.

Where the flip is made: the link runs over TLS, so a proxy flipping a byte of the
ciphertext breaks the TLS record (a reset, not a chunk that fails verification). The flip is
made instead where the central's link client receives the decrypted chunk, before the
transfer verifies it (`LinkClient.on_answer`, patched for the test): the same bytes the
proxy would have changed, seen after TLS.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from shared.chunk import ChunkHeader
from shared.link import events as ev
from shared.link_io.client import LinkClient
from shared.store.chunk_store import ChunkStore
from tests.central.retrieval_faults.fault_run import (
    HQ,
    create_job,
    ended,
    job_until,
    recorded_span,
)
from tests.central.retrieval_faults.proxied_run import proxied_run
from tests.retrieval_checker import ChunkFact, RetrievalJob, chunks_in_store

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

DEVICE = "cam-a"
SPAN_CHUNKS = 6
BAD_INDEX = 2  # the third chunk of the span


class PayloadFlipper:
    """Flips one byte of the payload of chunk `seq` of `device` as the central receives
    it: the first time only, or every time."""

    def __init__(self, device: str, seq: int, *, every_time: bool) -> None:
        self.device = device
        self.seq = seq
        self.every_time = every_time
        self.flips = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        receive = LinkClient.on_answer

        def on_answer(client: LinkClient, event: ev.LinkEvent) -> None:
            if isinstance(event, ev.ChunkReceived) and self._flips(event):
                payload = bytearray(event.payload)
                payload[len(payload) // 2] ^= 0x01
                event = dataclasses.replace(event, payload=bytes(payload))
                self.flips += 1
            receive(client, event)

        monkeypatch.setattr(LinkClient, "on_answer", on_answer)

    def _flips(self, event: ev.ChunkReceived) -> bool:
        if self.flips and not self.every_time:
            return False
        header = ChunkHeader.decode(event.header)
        return (header.device_id, header.stream, header.seq) == (self.device, HQ, self.seq)


async def test_a_chunk_corrupted_once_is_requested_again_and_the_job_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxied_run(tmp_path) as run:
        span = await recorded_span(run.site.store, [DEVICE], SPAN_CHUNKS)
        wanted = await _chunks(run.site.store, run.remote_site_id, span.start_ns, span.end_ns)
        flipper = PayloadFlipper(DEVICE, wanted[BAD_INDEX].seq, every_time=False)
        flipper.install(monkeypatch)
        job_id = await create_job(run.central, [run.added.devices[DEVICE]], span)
        job = await job_until(run.central, job_id, ended)
        assert flipper.flips == 1
        await run.verdict(job, [DEVICE])
        assert run.central.node.catalog.retrieval_job(job_id).streams[0].rejected_once


async def test_a_chunk_corrupted_every_time_fails_the_stream_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxied_run(tmp_path) as run:
        span = await recorded_span(run.site.store, [DEVICE], SPAN_CHUNKS)
        wanted = await _chunks(run.site.store, run.remote_site_id, span.start_ns, span.end_ns)
        bad = wanted[BAD_INDEX]
        flipper = PayloadFlipper(DEVICE, bad.seq, every_time=True)
        flipper.install(monkeypatch)
        job_id = await create_job(run.central, [run.added.devices[DEVICE]], span)
        job = await job_until(run.central, job_id, ended)

        assert job["state"] == "failed", job
        (progress,) = job["progress"]
        assert progress["state"] == "failed"
        assert f"{DEVICE}/{HQ} #{bad.seq}" in progress["failure"], progress
        assert f"#{bad.seq}" in job["reason"], job
        assert flipper.flips == 2  # the first attempt, and the one request again
        stream = run.central.node.catalog.retrieval_job(job_id).streams[0]
        assert stream.cursor_seq == wanted[BAD_INDEX - 1].seq
        at_central = await _chunks(
            run.central.node.store, run.remote_site_id, span.start_ns, span.end_ns, central=True
        )
        assert [c.seq for c in at_central] == [c.seq for c in wanted[:BAD_INDEX]]
        assert progress["chunks"] == BAD_INDEX
        assert await asyncio.to_thread(run.site.store.list_holds) == []


async def _chunks(
    store: ChunkStore, site_id: str, start_ns: int, end_ns: int, *, central: bool = False
) -> list[ChunkFact]:
    """The store's HQ chunks of the device in the span (the site's own, or at the central)."""
    job = RetrievalJob(site_id, frozenset({(DEVICE, HQ)}), start_ns, end_ns)
    return await asyncio.to_thread(
        chunks_in_store, store, job, site_id=site_id if central else None
    )
