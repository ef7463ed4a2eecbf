"""Writing and reading chunks: round trips, idempotence, conflicts, ranges, cursors, reopen."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from pathlib import Path

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.clock import NS_PER_S, ManualClock
from shared.signing import SiteSigner
from shared.store import (
    ChunkConflict,
    ChunkInvalid,
    ChunkStore,
    StoreFormatError,
    StoreOpenError,
    StoreReadOnlyError,
    check_store,
    gaps_between,
    map_size_for_quota,
)
from shared.store.keys import META_FORMAT_VERSION, encode_u64
from tests.store.store_chunks import SITE_ID, T0_NS, ChunkFactory

MIB = 1 << 20
S = NS_PER_S


def test_put_then_read_returns_the_same_chunk(store: ChunkStore, factory: ChunkFactory) -> None:
    chunk = factory.make(start_ns=T0_NS, payload_size=10_000)

    assert store.put(chunk) is True

    read = store.read_chunk("cam-1", "lq", 0)
    assert read is not None
    assert (read.header_bytes, read.signature, read.payload) == (
        chunk.header_bytes,
        chunk.signature,
        chunk.payload,
    )
    assert store.read_chunk("cam-1", "lq", 1) is None
    assert store.read_chunk("cam-2", "lq", 0) is None


def test_same_chunk_again_is_a_no_op(store: ChunkStore, factory: ChunkFactory) -> None:
    chunk = factory.make(start_ns=T0_NS)
    assert store.put(chunk) is True
    usage = store.usage()

    assert store.put(chunk) is False

    assert store.usage().live_bytes == usage.live_bytes
    assert store.usage().chunk_count == 1


def test_different_chunk_at_a_stored_seq_conflicts(
    store: ChunkStore, factory: ChunkFactory
) -> None:
    store.put(factory.make(start_ns=T0_NS, seq=0))
    other = factory.make(start_ns=T0_NS + 10 * S, seq=0)

    with pytest.raises(ChunkConflict, match="seq 0 is already stored as a different chunk"):
        store.put(other)


def test_start_collision_overlap_and_order_conflict(
    store: ChunkStore, factory: ChunkFactory
) -> None:
    store.put(factory.make(start_ns=T0_NS + 10 * S, seq=5))

    with pytest.raises(ChunkConflict, match="where seq 5 is already stored"):
        store.put(factory.make(start_ns=T0_NS + 10 * S, seq=6))
    with pytest.raises(ChunkConflict, match="overlaps stored seq 5"):
        store.put(factory.make(start_ns=T0_NS + 11 * S, seq=6))
    with pytest.raises(ChunkConflict, match="out of order"):
        store.put(factory.make(start_ns=T0_NS + 20 * S, seq=4))
    # A gap in seq (and time) is fine: chain continuity is not the store's business.
    assert store.put(factory.make(start_ns=T0_NS + 30 * S, seq=9)) is True
    assert store.put(factory.make(start_ns=T0_NS, seq=1)) is True


def test_payload_that_does_not_match_its_header_is_refused(
    store: ChunkStore, factory: ChunkFactory
) -> None:
    chunk = factory.make(start_ns=T0_NS, payload_size=1000)

    with pytest.raises(ChunkInvalid, match="payload is 999 bytes, header says 1000"):
        store.put(dataclasses.replace(chunk, payload=chunk.payload[:-1]))
    flipped = bytes([chunk.payload[0] ^ 1]) + chunk.payload[1:]
    with pytest.raises(ChunkInvalid, match="SHA-256 does not match"):
        store.put(dataclasses.replace(chunk, payload=flipped))
    assert store.usage().chunk_count == 0


def test_chunk_metas_returns_chunks_overlapping_the_range(
    store: ChunkStore, factory: ChunkFactory
) -> None:
    for chunk in factory.run(3):  # [0,2) [2,4) [4,6) seconds after T0
        store.put(chunk)
    store.put(factory.make(start_ns=T0_NS + 10 * S))  # [10,12)

    def seqs(start_s: float, end_s: float) -> list[int]:
        metas = store.chunk_metas("cam-1", "lq", T0_NS + int(start_s * S), T0_NS + int(end_s * S))
        return [m.seq for m in metas]

    assert seqs(3, 5) == [1, 2]
    assert seqs(0, 100) == [0, 1, 2, 3]
    assert seqs(6, 10) == []  # half-open on both sides
    assert seqs(11, 11.5) == [3]
    metas = store.chunk_metas("cam-1", "lq", T0_NS, T0_NS + 1)
    assert metas[0].header.device_id == "cam-1"
    assert metas[0].signature == store.read_chunk("cam-1", "lq", 0).signature  # type: ignore[union-attr]
    assert store.chunk_metas("cam-9", "lq", 0, T0_NS * 2) == []


def test_timeline_merges_chunks_into_spans_with_gaps(
    store: ChunkStore, factory: ChunkFactory
) -> None:
    for chunk in factory.run(3):  # [0, 6) s
        store.put(chunk)
    store.put(factory.make(start_ns=T0_NS + 6 * S + S // 2))  # 0.5 s hole: joins
    store.put(factory.make(start_ns=T0_NS + 20 * S))  # a real gap

    spans = store.timeline("cam-1", "lq", 0, T0_NS * 2)

    assert [(s.start_ns - T0_NS, s.end_ns - T0_NS) for s in spans] == [
        (0, 8 * S + S // 2),
        (20 * S, 22 * S),
    ]
    assert [(s.first_seq, s.last_seq, s.chunk_count) for s in spans] == [(0, 3, 4), (4, 4, 1)]
    assert [(g.start_ns - T0_NS, g.end_ns - T0_NS) for g in gaps_between(spans)] == [
        (8 * S + S // 2, 20 * S)
    ]
    strict = store.timeline("cam-1", "lq", 0, T0_NS * 2, join_tolerance_ns=0)
    assert len(strict) == 3


def test_chunks_after_seq_respects_limit_and_max_bytes(
    store: ChunkStore, factory: ChunkFactory
) -> None:
    chunks = factory.run(10, payload_size=4000)
    for chunk in chunks:
        store.put(chunk)
    one = len(chunks[0].header_bytes) + 64 + 4000

    assert [
        c.header.seq for c in store.chunks_after_seq("cam-1", "lq", -1, limit=3, max_bytes=MIB)
    ] == [0, 1, 2]
    assert [
        c.header.seq
        for c in store.chunks_after_seq("cam-1", "lq", 2, limit=10, max_bytes=one * 2 + 10)
    ] == [3, 4]
    # A budget smaller than one chunk still moves the cursor forward.
    assert [
        c.header.seq for c in store.chunks_after_seq("cam-1", "lq", 4, limit=10, max_bytes=1)
    ] == [5]
    assert store.chunks_after_seq("cam-1", "lq", 9, limit=10, max_bytes=MIB) == []
    assert store.chunks_after_seq("nobody", "lq", -1, limit=10, max_bytes=MIB) == []


def test_read_chunks_returns_payloads_in_time_order(
    store: ChunkStore, factory: ChunkFactory
) -> None:
    chunks = factory.run(5)
    for chunk in chunks:
        store.put(chunk)

    read = store.read_chunks("cam-1", "lq", T0_NS + 2 * S, T0_NS + 6 * S)
    assert [c.payload for c in read] == [chunks[1].payload, chunks[2].payload]
    capped = store.read_chunks("cam-1", "lq", 0, T0_NS * 2, max_bytes=1)
    assert [c.header.seq for c in capped] == [0]


def test_reopen_keeps_chunks_counters_and_head(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    with ChunkStore.open(
        store_path, quota_bytes=64 * MIB, hold_budget_bytes=MIB, clock=clock, home_site_id=SITE_ID
    ) as store:
        chunks = factory.run(4) + factory.run(2, stream="hq", payload_size=20_000)
        for chunk in chunks:
            store.put(chunk)
        before = store.streams()

    with ChunkStore.open(
        store_path, quota_bytes=64 * MIB, hold_budget_bytes=MIB, clock=clock, home_site_id=SITE_ID
    ) as store:
        assert store.streams() == before
        head = store.stream_head("cam-1", "lq")
        assert head is not None
        assert (head.seq, head.chunk_hash, head.end_ns) == (
            3,
            chunks[3].chunk_hash,
            chunks[3].header.end_ns,
        )
        # The recorder continues its chain from the head after a restart.
        follow = factory.make(start_ns=head.end_ns, seq=head.seq + 1, prev_hash=head.chunk_hash)
        assert store.put(follow) is True
        assert store.stream_head("cam-1", "hq").seq == 1  # type: ignore[union-attr]
        assert store.stream_head("cam-1", "audio") is None
        summary = {(s.site_id, s.device_id, s.stream): s for s in store.streams()}
        lq = summary[(SITE_ID, "cam-1", "lq")]
        assert (lq.chunk_count, lq.first_start_ns, lq.last_end_ns) == (5, T0_NS, T0_NS + 10 * S)
        assert lq.stored_bytes == sum(
            len(c.header_bytes) + len(c.signature) + len(c.payload) for c in [*chunks[:4], follow]
        )
    assert check_store(store_path).ok


def test_readonly_store_reads_but_refuses_writes(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    with ChunkStore.open(store_path, quota_bytes=MIB, hold_budget_bytes=0, clock=clock) as store:
        store.put(factory.make(start_ns=T0_NS))

    with ChunkStore.open(
        store_path, quota_bytes=MIB, hold_budget_bytes=0, clock=clock, readonly=True
    ) as readonly:
        assert readonly.read_chunk("cam-1", "lq", 0, site_id=SITE_ID) is not None
        with pytest.raises(StoreReadOnlyError, match="read-only"):
            readonly.put(factory.make(start_ns=T0_NS + 10 * S))


def test_bad_paths_are_clear_errors(tmp_path: Path, clock: ManualClock) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a store")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("hello")

    def open_store(path: Path, *, readonly: bool = False) -> ChunkStore:
        return ChunkStore.open(
            path, quota_bytes=MIB, hold_budget_bytes=0, clock=clock, readonly=readonly
        )

    with pytest.raises(StoreOpenError, match=f"{a_file}: not a directory"):
        open_store(a_file)
    with pytest.raises(StoreOpenError, match=r"not empty and holds no data\.mdb"):
        open_store(busy)
    with pytest.raises(StoreOpenError, match="no chunk store here"):
        open_store(tmp_path / "missing", readonly=True)
    with pytest.raises(StoreOpenError, match="no chunk store here"):
        check_store(tmp_path / "missing")

    foreign = tmp_path / "foreign"
    with lmdb.open(str(foreign), max_dbs=2) as env:
        env.open_db(b"something-else")
    with pytest.raises(StoreOpenError, match="not a chunk store"):
        open_store(foreign)


def test_unknown_format_version_is_refused(store_path: Path, clock: ManualClock) -> None:
    ChunkStore.open(store_path, quota_bytes=MIB, hold_budget_bytes=0, clock=clock).close()
    with lmdb.open(str(store_path), max_dbs=12) as env:
        meta = env.open_db(b"meta")
        with env.begin(write=True) as txn:
            txn.put(META_FORMAT_VERSION, encode_u64(99), db=meta)

    with pytest.raises(
        StoreFormatError, match=r"format version 99; this program reads version 2.*newer Siteline"
    ):
        ChunkStore.open(store_path, quota_bytes=MIB, hold_budget_bytes=0, clock=clock)


def test_store_of_format_version_1_is_refused_with_what_to_do(
    store_path: Path, clock: ManualClock, factory: ChunkFactory
) -> None:
    # Version 1 named streams without their site. The version row is all that is read
    # before refusing, so a fresh store with that row rewritten stands for an old one.
    with ChunkStore.open(store_path, quota_bytes=MIB, hold_budget_bytes=0, clock=clock) as store:
        store.put(factory.make(start_ns=T0_NS))
    with lmdb.open(str(store_path), max_dbs=12) as env:
        meta = env.open_db(b"meta")
        with env.begin(write=True) as txn:
            txn.put(META_FORMAT_VERSION, encode_u64(1), db=meta)

    expected = (
        r"format version 1; this program reads version 2\. The store was made by an older "
        r"Siteline version.*move the directory aside"
    )
    with pytest.raises(StoreFormatError, match=expected):
        ChunkStore.open(store_path, quota_bytes=MIB, hold_budget_bytes=0, clock=clock)
    with pytest.raises(StoreFormatError, match=expected):
        check_store(store_path)


def test_reads_in_other_threads_while_writing(store: ChunkStore, factory: ChunkFactory) -> None:
    chunks = factory.run(150, payload_size=8000)
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        seen = 0
        try:
            while not done.is_set():
                count = sum(s.chunk_count for s in store.streams())
                assert count >= seen  # a reader never sees the store go backwards
                seen = count
                for span in store.timeline("cam-1", "lq", 0, T0_NS * 2):
                    assert span.chunk_count >= 1
                if count:
                    read = store.read_chunk("cam-1", "lq", count - 1)
                    assert read is not None
                    assert read.payload == chunks[count - 1].payload
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in readers:
        thread.start()
    writer = threading.Thread(target=lambda: [store.put(c) for c in chunks])
    writer.start()
    writer.join()
    done.set()
    for thread in readers:
        thread.join()

    assert errors == []
    assert store.usage().chunk_count == 150


def test_usage_reports_the_map_rule_and_live_bytes(
    store: ChunkStore, factory: ChunkFactory
) -> None:
    chunks = factory.run(3, payload_size=5000)
    for chunk in chunks:
        store.put(chunk)

    usage = store.usage()

    assert usage.map_size_bytes == map_size_for_quota(64 * MIB) == 144 * MIB
    assert usage.quota_bytes == 64 * MIB
    assert usage.live_bytes == sum(len(c.header_bytes) + 64 + 5000 for c in chunks)
    assert (usage.chunk_count, usage.stream_count, usage.held_bytes) == (3, 1, 0)
    assert usage.file_bytes > usage.live_bytes


@settings(max_examples=25, deadline=None)
@given(
    order=st.permutations(range(8)),
    repeats=st.lists(st.integers(min_value=0, max_value=7), max_size=6),
)
def test_any_arrival_order_with_resends_stores_the_same_chunks(
    order: list[int], repeats: list[int]
) -> None:
    # The central receives chunks out of order and twice after a reconnect; the result must
    # not depend on either.
    factory = ChunkFactory(SiteSigner.generate())
    chunks = factory.run(8, payload_size=300)
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "store"
        with ChunkStore.open(
            path, quota_bytes=MIB, hold_budget_bytes=0, clock=ManualClock(), home_site_id=SITE_ID
        ) as store:
            stored = [store.put(chunks[i]) for i in order]
            resent = [store.put(chunks[i]) for i in repeats]
            assert all(stored)
            assert not any(resent)
            read = store.chunks_after_seq("cam-1", "lq", -1, limit=100, max_bytes=MIB)
            assert [c.header_bytes for c in read] == [c.header_bytes for c in chunks]
            head = store.stream_head("cam-1", "lq")
            assert head is not None
            assert head.seq == 7
        assert check_store(path).ok
