"""A full map and a full disk: emergency retention keeps recording going, or StoreFull."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.clock import ManualClock
from shared.store import ChunkStore, DeletionReason, StoreFull, check_store
from tests.conftest import TmpfsFactory
from tests.store.store_chunks import SITE_ID, T0_NS, ChunkFactory

MIB = 1 << 20
KIB = 1 << 10


def test_tiny_map_fills_and_recording_goes_on(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    # A 2 MiB map under a 64 MiB quota: the quota never triggers, the map fills.
    with ChunkStore.open(
        store_path,
        quota_bytes=64 * MIB,
        hold_budget_bytes=0,
        clock=clock,
        map_size_bytes=2 * MIB,
        home_site_id=SITE_ID,
    ) as store:
        chunks = factory.run(200, payload_size=32 * KIB)
        for chunk in chunks:
            assert store.put(chunk) is True

        usage = store.usage()
        assert usage.map_size_bytes == 2 * MIB
        assert usage.file_bytes <= 2 * MIB
        assert store.read_chunk("cam-1", "lq", 199) is not None
        assert 0 < usage.chunk_count < 64
        horizon = store.retention_horizon("cam-1", "lq")
        assert horizon is not None
        assert horizon.reason is DeletionReason.EMERGENCY
    assert check_store(store_path).ok


def test_full_map_with_everything_held_raises_store_full(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    with ChunkStore.open(
        store_path,
        quota_bytes=64 * MIB,
        hold_budget_bytes=64 * MIB,
        clock=clock,
        map_size_bytes=2 * MIB,
        home_site_id=SITE_ID,
    ) as store:
        hold = store.place_hold(
            "cam-1", "lq", 0, T0_NS * 2, expires_ns=T0_NS + 10**12, owner="evidence"
        )
        chunks = factory.run(200, payload_size=32 * KIB)
        stored = 0
        refusal: StoreFull | None = None
        for chunk in chunks:
            try:
                store.put(chunk)
            except StoreFull as exc:
                refusal = exc
                break
            stored += 1
        assert refusal is not None
        assert "no unheld chunk can be deleted" in str(refusal)
        assert 10 < stored < 200
        assert store.usage().chunk_count == stored  # nothing held was deleted

        # Releasing the hold lets emergency retention free space, and recording resumes
        # with the chunk that was refused.
        assert store.release_hold(hold.hold_id)
        assert store.put(chunks[stored]) is True
    assert check_store(store_path).ok


@pytest.fixture
def small_disk(tmpfs: TmpfsFactory) -> Path:
    """An 8 MiB disk."""
    return tmpfs("8m")


def test_full_disk_runs_emergency_retention(
    small_disk: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    path = small_disk / "store"
    # The quota and map (80+ MiB) are far larger than the 8 MiB disk: the disk fills first.
    with ChunkStore.open(
        path, quota_bytes=64 * MIB, hold_budget_bytes=0, clock=clock, home_site_id=SITE_ID
    ) as store:
        for chunk in factory.run(250, payload_size=100_000):  # 25 MB through 8 MiB
            assert store.put(chunk) is True
        usage = store.usage()
        assert usage.file_bytes <= 8 * MIB
        assert store.read_chunk("cam-1", "lq", 249) is not None
        reasons = {t.reason for t in store.tombstones("cam-1", "lq")}
        assert reasons == {DeletionReason.EMERGENCY}
    report = check_store(path)
    assert report.violations == ()
    assert report.chunk_count == usage.chunk_count
