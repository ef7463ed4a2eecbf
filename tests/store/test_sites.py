"""Streams are named by site too: many sites in one store, a home site, and no site at all."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from shared.clock import NS_PER_S, ManualClock
from shared.signing import SiteSigner
from shared.store import (
    ChunkConflict,
    ChunkInvalid,
    ChunkStore,
    HoldRefused,
    RetentionPolicy,
    check_store,
)
from shared.store.chunk_meta import encode_header_value
from shared.store.keys import stream_key
from tests.store.store_chunks import SITE_ID, T0_NS, ChunkFactory

MIB = 1 << 20
S = NS_PER_S
NORTH, SOUTH = "site-north", "site-south"
FAR = T0_NS * 2


def open_central(
    path: Path,
    clock: ManualClock,
    *,
    quota_bytes: int = 64 * MIB,
    retention: RetentionPolicy | None = None,
) -> ChunkStore:
    """A store of many sites, as the central keeps: no home site."""
    return ChunkStore.open(
        path,
        quota_bytes=quota_bytes,
        hold_budget_bytes=min(16 * MIB, quota_bytes),
        clock=clock,
        retention=retention,
    )


@pytest.fixture
def north(signer: SiteSigner) -> ChunkFactory:
    return ChunkFactory(signer, site_id=NORTH)


@pytest.fixture
def south() -> ChunkFactory:
    return ChunkFactory(SiteSigner.generate(), site_id=SOUTH)


def test_two_sites_with_the_same_device_stay_separate(
    store_path: Path, clock: ManualClock, north: ChunkFactory, south: ChunkFactory
) -> None:
    # Both sites record cam-1/lq over the same seconds with the same seqs.
    north_chunks = north.run(5)
    south_chunks = south.run(3, payload_size=6000)
    with open_central(store_path, clock) as store:
        for chunk in [*north_chunks, *south_chunks]:
            assert store.put(chunk) is True

        for site, chunks in ((NORTH, north_chunks), (SOUTH, south_chunks)):
            read = store.read_chunk("cam-1", "lq", 0, site_id=site)
            assert read is not None
            assert read.payload == chunks[0].payload
            after = store.chunks_after_seq("cam-1", "lq", -1, limit=10, max_bytes=MIB, site_id=site)
            assert [c.header_bytes for c in after] == [c.header_bytes for c in chunks]
            ranged = store.read_chunks("cam-1", "lq", 0, FAR, site_id=site)
            assert [c.header.site_id for c in ranged] == [site] * len(chunks)
            metas = store.chunk_metas("cam-1", "lq", 0, FAR, site_id=site)
            assert [m.header_bytes for m in metas] == [c.header_bytes for c in chunks]
            [span] = store.timeline("cam-1", "lq", 0, FAR, site_id=site)
            assert (span.chunk_count, span.end_ns) == (len(chunks), chunks[-1].header.end_ns)
            assert span.payload_bytes == sum(len(c.payload) for c in chunks)
            head = store.stream_head("cam-1", "lq", site_id=site)
            assert head is not None
            assert head.chunk_hash == chunks[-1].chunk_hash
        assert store.read_chunk("cam-1", "lq", 0, site_id="site-elsewhere") is None
        # In a store of many sites, messages name the site too.
        with pytest.raises(ChunkConflict, match=f"^{SOUTH}/cam-1/lq: seq 0 is already stored"):
            store.put(south.make(start_ns=T0_NS + 100 * S, seq=0))
        counts = {(s.site_id, s.device_id, s.stream): s.chunk_count for s in store.streams()}
        assert counts == {(NORTH, "cam-1", "lq"): 5, (SOUTH, "cam-1", "lq"): 3}
        assert store.usage().stream_count == 2

    report = check_store(store_path)
    assert report.violations == ()
    checked = {(s.site_id, s.device_id, s.stream): s.last_seq for s in report.streams}
    assert checked == {(NORTH, "cam-1", "lq"): 4, (SOUTH, "cam-1", "lq"): 2}


def test_byte_retention_deletes_oldest_first_across_sites(
    store_path: Path, clock: ManualClock, north: ChunkFactory, south: ChunkFactory
) -> None:
    # Interleaved in time: north records [0, 2) [4, 6) ..., south [2, 4) [6, 8) ... seconds.
    chunks = []
    for index in range(10):
        chunks.append(north.make(start_ns=T0_NS + 4 * index * S))
        chunks.append(south.make(start_ns=T0_NS + (4 * index + 2) * S))
    total = sum(len(c.header_bytes) + len(c.signature) + len(c.payload) for c in chunks)
    half = RetentionPolicy(max_bytes=total, high_water=0.5, low_water=0.5)
    with open_central(store_path, clock, quota_bytes=total, retention=half) as store:
        for chunk in chunks:
            store.put(chunk)

        report = store.enforce_retention(max_chunks=100)

        kept = [
            (m.header.site_id, m.seq)
            for site in (NORTH, SOUTH)
            for m in store.chunk_metas("cam-1", "lq", 0, FAR, site_id=site)
        ]
        by_age = sorted(chunks, key=lambda c: c.header.end_ns)
        newest = by_age[len(by_age) - len(kept) :]
        assert sorted(kept) == sorted((c.header.site_id, c.header.seq) for c in newest)
        assert report.deleted_by_bytes == len(chunks) - len(kept)
        assert len(kept) < len(chunks) - 4
        assert {site for site, _seq in kept} == {NORTH, SOUTH}
        # Each site's horizon is its own newest deleted chunk.
        for site in (NORTH, SOUTH):
            deleted = [c for c in by_age[: len(by_age) - len(kept)] if c.header.site_id == site]
            horizon = store.retention_horizon("cam-1", "lq", site_id=site)
            assert horizon is not None
            assert horizon.chunk_hash == deleted[-1].chunk_hash
            assert [t.seq for t in store.tombstones("cam-1", "lq", site_id=site)] == [
                deleted[-1].header.seq
            ]
    assert check_store(store_path).ok


def test_age_limits_and_holds_name_the_site(
    store_path: Path, clock: ManualClock, north: ChunkFactory, south: ChunkFactory
) -> None:
    policy = RetentionPolicy(
        max_bytes=64 * MIB,
        default_max_age_ns=60 * S,
        max_age_ns={(SOUTH, "cam-1", "hq"): 3600 * S},
    )
    north_lq, south_lq = north.run(10), south.run(10)
    south_hq = south.run(10, stream="hq")
    north_hq = north.run(10, stream="hq")
    with open_central(store_path, clock, retention=policy) as store:
        for chunk in [*north_lq, *south_lq, *north_hq, *south_hq]:
            store.put(chunk)
        # Hold north's cam-1/lq [T0, T0 + 6 s): seqs 0..2 of north only.
        hold = store.place_hold(
            "cam-1", "lq", T0_NS, T0_NS + 6 * S, expires_ns=FAR, owner="job", site_id=NORTH
        )
        assert hold.site_id == NORTH
        assert store.list_holds() == [hold]
        assert store.usage().held_bytes == sum(
            len(c.header_bytes) + len(c.signature) + len(c.payload) for c in north_lq[:3]
        )
        clock.set_wall_ns(T0_NS + 600 * S)

        report = store.enforce_retention(max_chunks=100)

        counts = {(s.site_id, s.stream): s.chunk_count for s in store.streams()}
        assert counts == {(NORTH, "lq"): 3, (SOUTH, "lq"): 0, (NORTH, "hq"): 0, (SOUTH, "hq"): 10}
        assert report.blocked_by_holds is True
    assert check_store(store_path).ok


def test_home_site_store_refuses_other_sites_chunks(
    store: ChunkStore, factory: ChunkFactory, south: ChunkFactory
) -> None:
    stranger = south.make(start_ns=T0_NS)

    with pytest.raises(ChunkInvalid, match=f"of site '{SOUTH}', .* records only site '{SITE_ID}'"):
        store.put(stranger)

    assert store.usage().chunk_count == 0
    assert store.home_site_id == SITE_ID
    own = factory.make(start_ns=T0_NS)
    assert store.put(own) is True
    # Calls that name no site read the home site's streams.
    assert store.read_chunk("cam-1", "lq", 0) == store.read_chunk("cam-1", "lq", 0, site_id=SITE_ID)
    assert store.read_chunk("cam-1", "lq", 0, site_id=SOUTH) is None
    hold = store.place_hold("cam-1", "lq", T0_NS, T0_NS + S, expires_ns=FAR, owner="job")
    assert hold.site_id == SITE_ID
    # The home site's streams are named as its users know them, without the site.
    with pytest.raises(HoldRefused, match=r"^hold on cam-1/lq refused: owner"):
        store.place_hold("cam-1", "lq", T0_NS, T0_NS + S, expires_ns=FAR, owner="")


CALLS_NAMING_A_STREAM: dict[str, Callable[[ChunkStore], object]] = {
    "stream_head": lambda s: s.stream_head("cam-1", "lq"),
    "chunk_metas": lambda s: s.chunk_metas("cam-1", "lq", 0, FAR),
    "read_chunk": lambda s: s.read_chunk("cam-1", "lq", 0),
    "read_chunks": lambda s: s.read_chunks("cam-1", "lq", 0, FAR),
    "chunks_after_seq": lambda s: s.chunks_after_seq("cam-1", "lq", -1, limit=1, max_bytes=1),
    "timeline": lambda s: s.timeline("cam-1", "lq", 0, FAR),
    "tombstones": lambda s: s.tombstones("cam-1", "lq"),
    "retention_horizon": lambda s: s.retention_horizon("cam-1", "lq"),
    "place_hold": lambda s: s.place_hold("cam-1", "lq", 0, 1, expires_ns=FAR, owner="job"),
}


@pytest.mark.parametrize("call", CALLS_NAMING_A_STREAM.values(), ids=CALLS_NAMING_A_STREAM.keys())
def test_a_store_without_home_site_needs_a_site_id(
    store_path: Path, clock: ManualClock, north: ChunkFactory, call: Callable[[ChunkStore], object]
) -> None:
    with open_central(store_path, clock) as store:
        store.put(north.make(start_ns=T0_NS))

        with pytest.raises(ValueError, match="a site id is needed"):
            call(store)

        # What spans every site needs none.
        assert [s.site_id for s in store.streams()] == [NORTH]
        assert store.list_holds() == []
        assert store.usage().chunk_count == 1


def test_open_refuses_an_empty_home_site(store_path: Path, clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="home site id must be 1 to 128 characters"):
        ChunkStore.open(
            store_path, quota_bytes=MIB, hold_budget_bytes=0, clock=clock, home_site_id=""
        )


def test_check_reports_a_chunk_filed_under_another_sites_stream(
    store_path: Path, clock: ManualClock, north: ChunkFactory, south: ChunkFactory
) -> None:
    with open_central(store_path, clock) as store:
        store.put(north.make(start_ns=T0_NS))  # north's stream is the first: id 1
        store.put(south.make(start_ns=T0_NS))
    # South's next chunk, written behind the store's back under north's stream.
    misfiled = south.make(start_ns=T0_NS + 10 * S)
    with lmdb.open(str(store_path), max_dbs=12) as env, env.begin(write=True) as txn:
        key = stream_key(1, T0_NS + 10 * S)
        txn.put(key, encode_header_value(misfiled), db=env.open_db(b"headers", txn=txn))
        txn.put(key, misfiled.payload, db=env.open_db(b"payloads", txn=txn))

    found = [str(v) for v in check_store(store_path).violations]

    assert (
        f"invariant 1: {NORTH}/cam-1/lq chunk at {T0_NS + 10 * S}: header is for "
        f"{SOUTH}/cam-1/lq, not its stream"
    ) in found
