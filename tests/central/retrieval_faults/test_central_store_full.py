"""The central's store without room for a retrieval: the job pauses, keeps what it brought,
and goes on by itself when room returns.

A real site records on loopback; a real central, its store filled with another site's live
recording, has a hold budget (`[storage] hold_budget_fraction`) smaller than what two jobs
bring together. Job A (cam-a) brings its span and stays unfinished (its span ends in the
future); job B (cam-b) is larger than the room A leaves: it pauses with the notification
"central_store_full", none of its chunks is deleted (they are held), and live recording of
the other site still stores (the quota guard deletes that site's oldest chunks, which
nothing holds). Stopping A releases its holds: B resumes at once (no retry delay passes in
the test) and completes with every chunk once, verified; the notification is cleared and
the central holds nothing any more. A hold left by a job that ended (as after a crash
between the job's end and the release) and a notification left open are tidied when the
central starts again. When room comes back without any job ending (another owner's hold
lifted), the paused run finds it by its retry timer (`store_full_retry_s`, 1 s here; with
a long delay the job does not go on within the test's wait, so the timer is what it tests).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from central.central_init import init_central
from central.ingest_writer import IngestWriter, PutOutcome
from central.retrieval.retrieval_space import hold_owner
from central.retrieval.retrieval_work import NOTICE_STORE_FULL
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, SystemClock
from shared.signing import SiteSigner
from shared.store.chunk_meta import stored_bytes_of
from shared.store.chunk_store import ChunkStore
from tests.central.central_fixture import ADMIN_PASSWORD, RunningCentral, running_central
from tests.central.retrieval_faults.fault_run import (
    HQ,
    LINKS_TOML,
    Span,
    add_site,
    create_job,
    job_until,
    recorded_span,
)
from tests.link_io.link_site import running_link_site
from tests.retrieval_checker import (
    DeliveryHistory,
    RetrievalJob,
    check_retrieval,
    chunks_in_store,
)
from tests.store.store_chunks import T0_NS, ChunkFactory

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")

MIB = 1 << 20
QUOTA_BYTES = 64 * MIB  # the least a central's quota may be
FILLER_CHUNK_BYTES = 256 * 1024
LIVE_SITE = "live-site"


def _write_config(directory: Path, hold_budget_bytes: int) -> None:
    """A central's folder whose store has the smallest quota and this hold budget."""
    init_central(directory, clock=SystemClock(), admin_password=ADMIN_PASSWORD, port=1)
    path = directory / "central.toml"
    text = path.read_text()
    fraction = hold_budget_bytes / QUOTA_BYTES
    text = re.sub(
        r'^quota = ".*"$',
        f'quota = "64 MiB"\nhold_budget_fraction = {fraction:.6f}',
        text,
        flags=re.MULTILINE,
    )
    head, _, _ = text.partition("[links]")
    path.write_text(head + "[links]\n" + LINKS_TOML + "\n")


async def _span_bytes(store: ChunkStore, device: str, span: Span) -> int:
    chunks = await asyncio.to_thread(store.read_chunks, device, HQ, span.start_ns, span.end_ns)
    return sum(stored_bytes_of(chunk) for chunk in chunks)


def _record_deliveries(ingest: IngestWriter, site_id: str, device: str) -> DeliveryHistory:
    """Every chunk of the site's `device` HQ handed to the central's store, in order."""
    history = DeliveryHistory()
    store_them = ingest.put_verified

    async def put_verified(chunks: Sequence[SignedChunk]) -> list[PutOutcome]:
        for chunk in chunks:
            header = chunk.header
            if (header.site_id, header.device_id, header.stream) == (site_id, device, HQ):
                history.delivered(chunk)
        return await store_them(chunks)

    ingest.put_verified = put_verified  # type: ignore[method-assign]
    return history


def _job_b(site_id: str, span: Span) -> RetrievalJob:
    return RetrievalJob(site_id, frozenset({("cam-b", HQ)}), span.start_ns, span.end_ns)


async def _completes_with_every_chunk_once(
    central: RunningCentral,
    site_store: ChunkStore,
    job_id: str,
    job: RetrievalJob,
    history: DeliveryHistory,
) -> int:
    """Wait for the job to end: it completed with every chunk of its span once, verified,
    no store-full notification is open and the central holds nothing; the chunks expected."""
    done = await job_until(
        central, job_id, lambda j: j["state"] in ("completed", "failed", "stopped")
    )
    assert done["state"] == "completed", done
    at_site = await asyncio.to_thread(chunks_in_store, site_store, job)
    at_central = await asyncio.to_thread(
        chunks_in_store, central.node.store, job, site_id=job.site_id
    )
    check = check_retrieval(job, site=at_site, central=at_central, history=history)
    check.assert_clean()
    assert check.expected == len(at_central) == done["progress"][0]["chunks"]
    assert await _open_notices(central) == []
    assert await asyncio.to_thread(central.node.store.list_holds) == []
    return check.expected


async def _fill_with_live_recording(
    central: RunningCentral, live: ChunkFactory
) -> list[SignedChunk]:
    """Store another site's live recording until the central's quota is all but full."""
    fillers = live.run(
        (QUOTA_BYTES - 2 * MIB) // FILLER_CHUNK_BYTES,
        device_id="cam-9",
        payload_size=FILLER_CHUNK_BYTES,
    )
    ingest = central.node.ingest
    assert ingest is not None
    assert all(o is True for o in await ingest.put_verified(fillers))
    return fillers


async def _open_notices(central: RunningCentral) -> list[str]:
    notes = await asyncio.to_thread(central.node.catalog.notifications)
    return [n.message for n in notes if n.kind == NOTICE_STORE_FULL]


async def test_a_job_without_room_pauses_keeps_its_chunks_and_resumes_when_room_returns(
    tmp_path: Path,
) -> None:
    live = ChunkFactory(SiteSigner.generate(), site_id=LIVE_SITE)
    async with running_link_site(tmp_path / "site") as site:
        remote_site_id = site.config.site.id
        span_a = await recorded_span(site.store, ["cam-a"], 8)
        span_b = await recorded_span(site.store, ["cam-b"], 10)
        bytes_a = await _span_bytes(site.store, "cam-a", span_a)
        bytes_b = await _span_bytes(site.store, "cam-b", span_b)
        # Room for B alone, not for B beside what A brought.
        budget = bytes_b + bytes_a // 3
        await asyncio.to_thread(_write_config, tmp_path / "central", budget)

        async with running_central(tmp_path / "central") as central:
            node = central.node
            fillers = await _fill_with_live_recording(central, live)
            assert node.ingest is not None
            history = _record_deliveries(node.ingest, remote_site_id, "cam-b")
            added = await add_site(
                central, address="127.0.0.1", port=site.port, fingerprint=site.identity.fingerprint
            )
            far_end = Span(span_a.start_ns, node.clock.now_ns() + 3600 * NS_PER_S)
            job_a = await create_job(central, [added.devices["cam-a"]], far_end)
            await job_until(central, job_a, lambda j: j["progress"][0]["chunks"] >= 8)
            job_b = await create_job(central, [added.devices["cam-b"]], span_b)

            paused = await job_until(
                central, job_b, lambda j: "store is full" in (j.get("reason") or "")
            )
            assert paused["state"] == "pending", paused
            (notice,) = await _open_notices(central)
            assert str(node.store.path) in notice, notice
            assert "hold budget" in notice, notice
            assert "resume when space returns" in notice, notice
            brought = paused["progress"][0]["chunks"]
            at_central = await asyncio.to_thread(
                node.store.chunk_metas,
                "cam-b",
                HQ,
                span_b.start_ns,
                span_b.end_ns,
                site_id=remote_site_id,
            )
            assert len(at_central) == brought > 0  # none of its chunks was deleted
            holds = await asyncio.to_thread(node.store.list_holds)
            assert {h.owner for h in holds} == {hold_owner(job_a), hold_owner(job_b)}
            usage = await asyncio.to_thread(node.store.usage)
            assert usage.held_bytes <= usage.hold_budget_bytes
            assert abs(usage.hold_budget_bytes - budget) <= 64  # the fraction, rounded

            # Live recording goes on: the quota guard deletes the oldest unheld chunks.
            more_live = live.run(
                8,
                start_ns=T0_NS + len(fillers) * 2 * NS_PER_S,
                device_id="cam-9",
                payload_size=FILLER_CHUNK_BYTES,
            )
            assert all(o is True for o in await node.ingest.put_verified(more_live))
            usage = await asyncio.to_thread(node.store.usage)
            assert usage.live_bytes <= QUOTA_BYTES
            still = await asyncio.to_thread(
                node.store.chunk_metas,
                "cam-b",
                HQ,
                span_b.start_ns,
                span_b.end_ns,
                site_id=remote_site_id,
            )
            assert [m.seq for m in still] == [m.seq for m in at_central]

            # A ends: its holds go, and B goes on by itself (no retry delay passes here).
            status, stopped = await central.call("POST", f"/retrievals/{job_a}/stop")
            assert status == 200, stopped
            job = _job_b(remote_site_id, span_b)
            expected = await _completes_with_every_chunk_once(
                central, site.store, job_b, job, history
            )
            report = await asyncio.to_thread(node.store.check)
            assert report.ok, report

            # As if the central died between B's end and the release of its hold, with the
            # notification still open: both are tidied when it starts again.
            await asyncio.to_thread(
                node.store.place_hold,
                "cam-b",
                HQ,
                span_b.start_ns,
                span_b.end_ns,
                expires_ns=node.clock.now_ns() + 86_400 * NS_PER_S,
                owner=hold_owner(job_b),
                site_id=remote_site_id,
            )
            await asyncio.to_thread(
                node.catalog.raise_notification,
                NOTICE_STORE_FULL,
                None,
                None,
                "retrieval paused: the central's store is full (left open)",
                node.clock.now_ns(),
            )

        async with running_central(tmp_path / "central") as central:
            assert await asyncio.to_thread(central.node.store.list_holds) == []
            assert await _open_notices(central) == []
            _, after = await central.call("GET", f"/retrievals/{job_b}")
            assert after["state"] == "completed"
            kept = await asyncio.to_thread(
                chunks_in_store, central.node.store, job, site_id=remote_site_id
            )
            assert len(kept) == expected  # what B brought now follows retention


async def test_room_freed_without_a_job_ending_is_found_by_the_retry_timer(
    tmp_path: Path,
) -> None:
    """Room can come back without any job's holds being released (an operator's hold
    lifted, retention, a disk cleaned): nothing wakes the paused run then but its retry
    delay, here 1 s instead of the default minute."""
    live = ChunkFactory(SiteSigner.generate(), site_id=LIVE_SITE)
    async with running_link_site(tmp_path / "site") as site:
        remote_site_id = site.config.site.id
        span_b = await recorded_span(site.store, ["cam-b"], 10)
        bytes_b = await _span_bytes(site.store, "cam-b", span_b)
        await asyncio.to_thread(_write_config, tmp_path / "central", bytes_b)

        async with running_central(tmp_path / "central", store_full_retry_s=1.0) as central:
            node = central.node
            fillers = await _fill_with_live_recording(central, live)
            assert node.ingest is not None
            # Another owner holds about half of the budget in the live site's recording.
            half = -(-bytes_b // 2 // FILLER_CHUNK_BYTES)
            other = await asyncio.to_thread(
                node.store.place_hold,
                "cam-9",
                "lq",
                fillers[0].header.start_ns,
                fillers[half - 1].header.end_ns,
                expires_ns=node.clock.now_ns() + 86_400 * NS_PER_S,
                owner="operator:evidence",
                site_id=LIVE_SITE,
            )
            history = _record_deliveries(node.ingest, remote_site_id, "cam-b")
            added = await add_site(
                central, address="127.0.0.1", port=site.port, fingerprint=site.identity.fingerprint
            )
            job_b = await create_job(central, [added.devices["cam-b"]], span_b)
            paused = await job_until(
                central, job_b, lambda j: "store is full" in (j.get("reason") or "")
            )
            assert paused["state"] == "pending", paused
            assert paused["progress"][0]["chunks"] > 0, paused
            assert len(await _open_notices(central)) == 1

            assert await asyncio.to_thread(node.store.release_hold, other.hold_id)
            await _completes_with_every_chunk_once(
                central, site.store, job_b, _job_b(remote_site_id, span_b), history
            )
