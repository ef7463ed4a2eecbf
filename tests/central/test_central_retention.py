"""The central's own retention: a running central deletes the chunks and the ingest receipts
older than `[storage] max_age_days`, and keeps the rest and the deleted streams' chain
horizon. A real central (tests/central/central_fixture.py) on a store written beforehand."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from central.central_init import init_central
from central.central_node import RECEIPTS_FOLDER
from central.config import load_central_config
from central.receipt_book import ReceiptBook
from shared.clock import NS_PER_S, ManualClock, SystemClock
from shared.signing import SiteSigner
from shared.store import ChunkStore
from tests.central.central_fixture import ADMIN_PASSWORD, running_central
from tests.central.export.recorded_site import lq_clip, seal

MAX_AGE_S = 86.4  # max_age_days = 0.001


async def test_a_running_central_deletes_what_is_older_than_its_age_limit(tmp_path: Path) -> None:
    directory = tmp_path / "central"
    await asyncio.to_thread(
        init_central, directory, clock=SystemClock(), admin_password=ADMIN_PASSWORD, port=1
    )
    config_path = directory / "central.toml"
    text = config_path.read_text()
    assert "max_age_days = 30\n" in text
    config_path.write_text(text.replace("max_age_days = 30\n", "max_age_days = 0.001\n"))
    config = load_central_config(config_path)
    assert config.storage.max_age_s == round(MAX_AGE_S)

    now_ns = time.time_ns()
    old_base_ns, recent_base_ns = now_ns - 600 * NS_PER_S, now_ns - 20 * NS_PER_S
    signer = SiteSigner.generate()
    old = seal(lq_clip(old_base_ns), device_id="cam-old", signer=signer)
    recent = seal(lq_clip(recent_base_ns), device_id="cam-recent", signer=signer)
    store = ChunkStore.open(
        config.storage.media_path,
        quota_bytes=config.storage.quota_bytes,
        hold_budget_bytes=config.storage.hold_budget_bytes,
        clock=SystemClock(),
    )
    try:
        for chunk in [*old, *recent]:
            assert store.put(chunk)
    finally:
        store.close()
    receipts_path = config.storage.media_path.parent / RECEIPTS_FOLDER
    for issued_ns, chunks in ((old_base_ns, old), (recent_base_ns, recent)):
        book = ReceiptBook.open(receipts_path, signer, clock=ManualClock(issued_ns))
        try:
            book.issue(chunks)
        finally:
            book.close()

    async with running_central(directory) as central:
        node = central.node

        def by_device() -> dict[str, int]:
            return {s.device_id: s.chunk_count for s in node.store.streams()}

        deadline = time.monotonic() + 20
        while by_device().get("cam-old", 0):
            assert time.monotonic() < deadline, f"retention never ran: {by_device()}"
            await asyncio.sleep(0.1)
        assert by_device() == {"cam-old": 0, "cam-recent": len(recent)}
        # The deleted stream keeps its horizon: a later chunk still chains to it.
        site_id = old[0].header.site_id
        assert node.store.retention_horizon("cam-old", "lq", site_id=site_id) is not None
        while node.receipts.receipts([c.chunk_hash for c in old]):
            assert time.monotonic() < deadline, "the old receipts were never pruned"
            await asyncio.sleep(0.1)
        assert len(node.receipts.receipts([c.chunk_hash for c in recent])) == len(recent)
        assert node.store.check().ok
