"""Retention by age and by bytes, holds, tombstones and the retention horizon."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.clock import NS_PER_S, ManualClock
from shared.store import (
    ChunkConflict,
    ChunkStore,
    DeletionReason,
    HoldRefused,
    RetentionPolicy,
    check_store,
)
from tests.store.store_chunks import SITE_ID, T0_NS, ChunkFactory

MIB = 1 << 20
KIB = 1 << 10
S = NS_PER_S


def open_store(
    path: Path,
    clock: ManualClock,
    *,
    quota_bytes: int = 64 * MIB,
    hold_budget_bytes: int = 16 * MIB,
    retention: RetentionPolicy | None = None,
    home_site_id: str | None = SITE_ID,
) -> ChunkStore:
    return ChunkStore.open(
        path,
        quota_bytes=quota_bytes,
        hold_budget_bytes=hold_budget_bytes,
        clock=clock,
        retention=retention,
        home_site_id=home_site_id,
    )


def drain(store: ChunkStore, *, max_chunks: int = 64) -> int:
    """Run retention until nothing is pending; return how many calls it took."""
    calls = 0
    while True:
        calls += 1
        if not store.enforce_retention(max_chunks=max_chunks).pending:
            return calls


def test_age_retention_deletes_old_chunks_and_keeps_the_horizon(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    policy = RetentionPolicy(max_bytes=64 * MIB, default_max_age_ns=60 * S)
    with open_store(store_path, clock, retention=policy) as store:
        chunks = factory.run(60)  # two minutes, [T0, T0 + 120 s)
        for chunk in chunks:
            store.put(chunk)
        clock.set_wall_ns(T0_NS + 120 * S)

        report = store.enforce_retention(max_chunks=1000)

        # Chunks ending at or before T0 + 60 s are older than a minute: seqs 0..29.
        assert (report.deleted_by_age, report.deleted_by_bytes, report.pending) == (30, 0, False)
        assert store.read_chunk("cam-1", "lq", 29) is None
        assert store.read_chunk("cam-1", "lq", 30) is not None
        # Only the newest tombstone below the oldest chunk is kept: the retention horizon.
        tombstones = store.tombstones("cam-1", "lq")
        assert [t.seq for t in tombstones] == [29]
        horizon = store.retention_horizon("cam-1", "lq")
        assert horizon == tombstones[0]
        assert horizon.reason is DeletionReason.AGE
        assert horizon.deleted_at_ns == T0_NS + 120 * S
        assert horizon.chunk_hash == chunks[29].chunk_hash
        # Verification links the oldest stored chunk to the horizon.
        assert chunks[30].header.prev_chunk_hash == horizon.chunk_hash
        assert store.stream_head("cam-1", "lq").seq == 59  # type: ignore[union-attr]
    assert check_store(store_path).ok


def test_age_retention_is_per_stream_and_batched(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    policy = RetentionPolicy(
        max_bytes=64 * MIB,
        default_max_age_ns=3600 * S,
        max_age_ns_by_stream={"hq": 20 * S},
        max_age_ns={(SITE_ID, "cam-2", "hq"): 3600 * S},
    )
    with open_store(store_path, clock, retention=policy) as store:
        for device in ("cam-1", "cam-2"):
            for stream in ("lq", "hq"):
                for chunk in factory.run(30, device_id=device, stream=stream):
                    store.put(chunk)
        clock.set_wall_ns(T0_NS + 60 * S)

        first = store.enforce_retention(max_chunks=5)
        assert (first.deleted_by_age, first.pending) == (5, True)
        calls = drain(store, max_chunks=5)

        counts = {(s.device_id, s.stream): s.chunk_count for s in store.streams()}
        # cam-1/hq keeps 20 s (chunks ending after T0 + 40 s); the rest keep an hour.
        assert counts == {
            ("cam-1", "lq"): 30,
            ("cam-1", "hq"): 10,
            ("cam-2", "lq"): 30,
            ("cam-2", "hq"): 30,
        }
        assert calls == 3  # 15 more deletions in batches of 5, the last one finds none left
    assert check_store(store_path).ok


def test_byte_retention_keeps_live_bytes_and_file_bounded(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    quota = 2 * MIB
    with open_store(store_path, clock, quota_bytes=quota, hold_budget_bytes=0) as store:
        peak_live = 0
        for index, chunk in enumerate(factory.run(400, payload_size=32 * KIB)):
            store.put(chunk)
            report = store.enforce_retention()
            peak_live = max(peak_live, store.usage().live_bytes)
            if index > 100:
                assert report.live_bytes <= quota
        usage = store.usage()

        assert peak_live <= quota
        assert usage.live_bytes <= int(quota * 0.95)
        assert usage.chunk_count < 400
        # 12.5 MiB went through a 2 MiB quota; freed pages are reused, so the file stays
        # near the live data (B-tree pages and page rounding of 32 KiB values aside).
        assert usage.file_bytes <= int(quota * 1.5)
        reasons = {t.reason for t in store.tombstones("cam-1", "lq")}
        assert reasons <= {DeletionReason.BYTES}
    assert check_store(store_path).ok


def test_put_alone_keeps_live_bytes_within_the_quota(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    quota = MIB
    with open_store(store_path, clock, quota_bytes=quota, hold_budget_bytes=0) as store:
        for chunk in factory.run(100, payload_size=32 * KIB):
            store.put(chunk)  # no retention loop at all
            assert store.usage().live_bytes <= quota
        assert store.read_chunk("cam-1", "lq", 99) is not None
    assert check_store(store_path).ok


def test_held_chunks_survive_retention_until_the_hold_expires(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    policy = RetentionPolicy(max_bytes=64 * MIB, default_max_age_ns=10 * S)
    with open_store(store_path, clock, retention=policy) as store:
        chunks = factory.run(30)  # [T0, T0 + 60 s)
        for chunk in chunks:
            store.put(chunk)
        # Hold [T0 + 10 s, T0 + 20 s): seqs 5..9.
        hold = store.place_hold(
            "cam-1",
            "lq",
            T0_NS + 10 * S,
            T0_NS + 20 * S,
            expires_ns=T0_NS + 600 * S,
            owner="retrieval-job-7",
        )
        assert store.list_holds() == [hold]
        assert store.usage().held_bytes == sum(
            len(c.header_bytes) + len(c.signature) + len(c.payload) for c in chunks[5:10]
        )
        clock.set_wall_ns(T0_NS + 120 * S)

        report = store.enforce_retention(max_chunks=1000)

        assert report.blocked_by_holds is True
        assert report.deleted_by_age == 25
        stored = [m.seq for m in store.chunk_metas("cam-1", "lq", 0, T0_NS * 2)]
        assert stored == [5, 6, 7, 8, 9]
        # Tombstones above the oldest stored chunk are kept; below it only the horizon.
        assert [t.seq for t in store.tombstones("cam-1", "lq")] == [4, *range(10, 30)]

        clock.set_wall_ns(T0_NS + 601 * S)
        report = store.enforce_retention(max_chunks=1000)

        assert (report.expired_holds, report.deleted_by_age) == (1, 5)
        assert store.list_holds() == []
        assert [t.seq for t in store.tombstones("cam-1", "lq")] == [29]
        assert store.streams()[0].chunk_count == 0
    assert check_store(store_path).ok


def test_held_chunks_survive_byte_retention(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    with open_store(store_path, clock, quota_bytes=MIB, hold_budget_bytes=MIB // 2) as store:
        chunks = factory.run(8, payload_size=32 * KIB)
        for chunk in chunks:
            store.put(chunk)
        store.place_hold(
            "cam-1", "lq", T0_NS, T0_NS + 4 * S, expires_ns=T0_NS + 3600 * S, owner="job"
        )
        for chunk in factory.run(100, start_ns=T0_NS + 16 * S, payload_size=32 * KIB):
            store.put(chunk)
            store.enforce_retention()

        assert store.read_chunk("cam-1", "lq", 0) is not None
        assert store.read_chunk("cam-1", "lq", 1) is not None
        assert store.read_chunk("cam-1", "lq", 2) is None
        assert store.usage().live_bytes <= MIB
    assert check_store(store_path).ok


def test_holds_are_refused_over_budget_or_with_a_bad_range(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    chunks = factory.run(20, payload_size=10_000)
    one = len(chunks[0].header_bytes) + 64 + 10_000
    with open_store(store_path, clock, hold_budget_bytes=10 * one) as store:
        for chunk in chunks:
            store.put(chunk)
        later = T0_NS + 3600 * S

        first = store.place_hold("cam-1", "lq", T0_NS, T0_NS + 12 * S, expires_ns=later, owner="a")
        # Overlapping holds count each chunk once: seqs 0..7 are 8 chunks, within budget.
        store.place_hold("cam-1", "lq", T0_NS + 4 * S, T0_NS + 16 * S, expires_ns=later, owner="b")
        with pytest.raises(HoldRefused, match=r"over the hold budget of \d+ by \d+") as refused:
            store.place_hold("cam-1", "lq", T0_NS, T0_NS + 30 * S, expires_ns=later, owner="c")
        assert f"by {5 * one}" in str(refused.value)
        with pytest.raises(HoldRefused, match="empty or negative"):
            store.place_hold("cam-1", "lq", T0_NS, T0_NS, expires_ns=later, owner="d")
        with pytest.raises(HoldRefused, match="is not after now"):
            store.place_hold("cam-1", "lq", T0_NS, T0_NS + S, expires_ns=T0_NS, owner="e")
        with pytest.raises(HoldRefused, match="owner"):
            store.place_hold("cam-1", "lq", T0_NS, T0_NS + S, expires_ns=later, owner="")

        assert store.release_hold(first.hold_id) is True
        assert store.release_hold(first.hold_id) is False
        assert [h.owner for h in store.list_holds()] == ["b"]
        # With the first hold gone the budget has room again.
        store.place_hold("cam-1", "lq", T0_NS + 16 * S, T0_NS + 20 * S, expires_ns=later, owner="f")
    assert check_store(store_path).ok


def test_restoring_a_deleted_chunk_replaces_its_tombstone(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    policy = RetentionPolicy(max_bytes=64 * MIB, default_max_age_ns=10 * S)
    with open_store(store_path, clock, retention=policy) as store:
        chunks = factory.run(10)
        for chunk in chunks:
            store.put(chunk)
        clock.set_wall_ns(T0_NS + 20 * S)
        store.enforce_retention()
        assert [t.seq for t in store.tombstones("cam-1", "lq")] == [4]

        # A re-sent copy of the horizon chunk is stored again, replacing its tombstone.
        assert store.put(chunks[4]) is True
        assert store.tombstones("cam-1", "lq") == []
        assert check_store_ok_while_open(store)
        store.enforce_retention()
        assert [t.seq for t in store.tombstones("cam-1", "lq")] == [4]

        # A different chunk under a tombstoned seq contradicts what was deleted.
        forged = factory.make(start_ns=T0_NS + 8 * S + S // 2, duration_ns=S, seq=4)
        with pytest.raises(ChunkConflict, match="seq 4 was deleted by retention"):
            store.put(forged)
    assert check_store(store_path).ok


def check_store_ok_while_open(store: ChunkStore) -> bool:
    report = store.check()
    assert report.violations == ()
    return report.ok
