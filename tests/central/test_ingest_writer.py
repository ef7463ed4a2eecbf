"""The central's group commit: chunks handed in together are stored in one transaction,
each caller hears its own chunks' outcomes, and every chunk held gets an ingest receipt."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from central.ingest_writer import IngestClosed, IngestWriter
from central.receipt_book import ReceiptBook
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, ManualClock
from shared.signing import SiteSigner
from shared.store import ChunkConflict, ChunkStore
from tests.store.store_chunks import T0_NS, ChunkFactory

S = NS_PER_S


@dataclasses.dataclass
class Central:
    store: ChunkStore
    receipts: ReceiptBook
    signer: SiteSigner
    writer: IngestWriter


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Central]:
    clock = ManualClock(T0_NS)
    signer = SiteSigner.generate()
    store = await asyncio.to_thread(
        ChunkStore.open, tmp_path / "media", quota_bytes=1 << 30, hold_budget_bytes=0, clock=clock
    )
    receipts = await asyncio.to_thread(ReceiptBook.open, tmp_path / "receipts", signer, clock=clock)
    writer = IngestWriter(store, receipts)
    yield Central(store, receipts, signer, writer)
    await writer.close()
    store.close()
    receipts.close()


def _streams(count: int, chunks_each: int) -> list[list[SignedChunk]]:
    factory = ChunkFactory(SiteSigner.generate(), site_id="site-a")
    return [
        [factory.make(start_ns=T0_NS + i * 2 * S, device_id=f"cam-{n}") for i in range(chunks_each)]
        for n in range(count)
    ]


async def test_chunks_handed_in_together_share_a_commit_and_all_get_receipts(
    central: Central,
) -> None:
    streams = _streams(20, 3)

    answers = await asyncio.gather(*(central.writer.put_verified(s) for s in streams))

    assert answers == [[True, True, True]] * 20
    assert central.writer.commits < 20  # grouped: the first alone, the rest together
    hashes = [c.chunk_hash for s in streams for c in s]
    receipts = await asyncio.to_thread(central.receipts.receipts, hashes)
    assert len(receipts) == 60
    assert all(r.verify(central.signer.public_key) for r in receipts)
    assert central.store.usage().chunk_count == 60


async def test_each_caller_hears_its_own_refusals_and_duplicates(central: Central) -> None:
    first, second = _streams(2, 2)
    assert await central.writer.put_verified(first[:1]) == [True]
    factory = ChunkFactory(SiteSigner.generate(), site_id="site-a")
    other_at_seq_0 = factory.make(start_ns=T0_NS + 7 * S, device_id="cam-0")  # another seq 0

    answers = await asyncio.gather(
        central.writer.put_verified([first[0], first[1]]),
        central.writer.put_verified(second),
        central.writer.put_verified([other_at_seq_0]),
    )

    assert answers[0] == [False, True]  # a chunk held already is no error
    assert answers[1] == [True, True]
    (refusal,) = answers[2]
    assert isinstance(refusal, ChunkConflict)
    assert "seq 0 is already stored as a different chunk" in str(refusal)
    held = [first[0], first[1], *second]
    receipts = await asyncio.to_thread(central.receipts.receipts, [c.chunk_hash for c in held])
    assert len(receipts) == 4


async def test_a_cancelled_caller_still_has_its_chunks_stored(central: Central) -> None:
    (stream,) = _streams(1, 5)
    call = asyncio.create_task(central.writer.put_verified(stream))
    await asyncio.sleep(0)  # handed in
    call.cancel()
    await central.writer.close()
    metas = await asyncio.to_thread(
        central.store.chunk_metas, "cam-0", "lq", 0, T0_NS + 100 * S, site_id="site-a"
    )
    assert [m.seq for m in metas] == [0, 1, 2, 3, 4]


async def test_after_close_nothing_more_is_taken(central: Central) -> None:
    (stream,) = _streams(1, 1)
    await central.writer.close()
    with pytest.raises(IngestClosed, match="the central is stopping"):
        await central.writer.put_verified(stream)
    assert central.store.usage().chunk_count == 0
