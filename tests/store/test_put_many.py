"""Group commit: `put_many` stores a batch of many streams' chunks in one transaction, with
the outcome `put` would give for each, and falls back to one by one when the map fills."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shared.clock import NS_PER_S, ManualClock
from shared.store import ChunkConflict, ChunkInvalid, ChunkStore, StoreFull, check_store
from tests.store.store_chunks import SITE_ID, T0_NS, ChunkFactory

MIB = 1 << 20
KIB = 1 << 10
S = NS_PER_S


def test_a_batch_of_several_streams_is_stored_as_put_would_store_it(
    store: ChunkStore, factory: ChunkFactory, store_path: Path
) -> None:
    chunks = [
        factory.make(start_ns=T0_NS + i * 2 * S, device_id=device, stream=stream)
        for i in range(4)
        for device in ("cam-1", "cam-2")
        for stream in ("lq", "hq")
    ]
    assert store.put(chunks[0]) is True  # already there: a duplicate in the batch

    outcomes = store.put_many(chunks)

    assert outcomes == [False] + [True] * (len(chunks) - 1)
    for chunk in chunks:
        header = chunk.header
        read = store.read_chunk(header.device_id, header.stream, header.seq)
        assert read is not None
        assert read.chunk_hash == chunk.chunk_hash
    assert store.usage().chunk_count == len(chunks)
    assert store.put_many([]) == []
    store.close()
    assert check_store(store_path).ok


def test_refused_chunks_in_a_batch_do_not_hold_back_the_others(
    store: ChunkStore, factory: ChunkFactory
) -> None:
    first = factory.make(start_ns=T0_NS, seq=0)
    assert store.put(first) is True
    conflicting = factory.make(start_ns=T0_NS + 10 * S, seq=0)  # another chunk at seq 0
    damaged = dataclasses.replace(
        factory.make(start_ns=T0_NS, device_id="cam-2"), payload=b"not the payload"
    )
    good = [factory.make(start_ns=T0_NS + (2 + i) * 2 * S, seq=1 + i) for i in range(3)]

    outcomes = store.put_many([good[0], conflicting, good[1], damaged, good[2]])

    assert [outcomes[i] for i in (0, 2, 4)] == [True, True, True]
    assert isinstance(outcomes[1], ChunkConflict)
    assert "seq 0 is already stored as a different chunk" in str(outcomes[1])
    assert isinstance(outcomes[3], ChunkInvalid)
    assert "payload is 15 bytes" in str(outcomes[3])
    metas = store.chunk_metas("cam-1", "lq", 0, T0_NS + 100 * S)
    assert [m.seq for m in metas] == [0, 1, 2, 3]
    assert store.read_chunk("cam-2", "lq", 0) is None


def test_a_batch_that_fills_the_map_is_stored_one_by_one_with_emergency_retention(
    store_path: Path, clock: ManualClock, factory: ChunkFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with ChunkStore.open(
        store_path,
        quota_bytes=64 * MIB,
        hold_budget_bytes=0,
        clock=clock,
        map_size_bytes=2 * MIB,
        home_site_id=SITE_ID,
    ) as store:
        chunks = factory.run(120, payload_size=32 * KIB)  # about twice the map
        outcomes = []
        for start in range(0, len(chunks), 40):
            outcomes.extend(store.put_many(chunks[start : start + 40]))
        assert outcomes == [True] * len(chunks)
        assert store.read_chunk("cam-1", "lq", 119) is not None
        assert 0 < store.usage().chunk_count < 64
    assert "in a batch of 40; one by one" in caplog.text
    assert check_store(store_path).ok


def test_a_full_map_with_everything_held_refuses_each_chunk_it_cannot_store(
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
        store.place_hold("cam-1", "lq", 0, T0_NS * 2, expires_ns=T0_NS + 10**12, owner="case")
        outcomes = store.put_many(factory.run(120, payload_size=32 * KIB))
        stored = outcomes.index(next(o for o in outcomes if o is not True))
        assert 10 < stored < 120
        assert all(isinstance(o, StoreFull) for o in outcomes[stored:])
        assert store.usage().chunk_count == stored
    assert check_store(store_path).ok
