"""check_store passes on an intact store and names each injected corruption precisely."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from shared.clock import NS_PER_S, ManualClock
from shared.store import ChunkStore, RetentionPolicy, StoreCheckReport, check_store
from shared.store.chunk_meta import encode_header_value
from shared.store.keys import META_LIVE_BYTES, encode_u64, stream_key
from shared.store.streams import StreamRecord
from shared.store.tombstones import DeletionReason, Tombstone
from tests.store.store_chunks import SITE_ID, T0_NS, ChunkFactory

MIB = 1 << 20
S = NS_PER_S
STREAM_ID = 1  # the first stream a store registers
LQ = f"{SITE_ID}/cam-1/lq"  # how check messages name that stream


@pytest.fixture
def filled_store(store_path: Path, clock: ManualClock, factory: ChunkFactory) -> Path:
    """A closed store: two streams, a gap, expired chunks with a horizon, and a hold."""
    policy = RetentionPolicy(max_bytes=64 * MIB, default_max_age_ns=3600 * S)
    with ChunkStore.open(
        store_path,
        quota_bytes=64 * MIB,
        hold_budget_bytes=MIB,
        clock=clock,
        retention=policy,
        home_site_id=SITE_ID,
    ) as store:
        for chunk in factory.run(10):  # cam-1/lq [T0, T0 + 20 s)
            store.put(chunk)
        store.put(factory.make(start_ns=T0_NS + 60 * S))  # after a gap
        for chunk in factory.run(5, stream="hq", payload_size=20_000):
            store.put(chunk)
        store.place_hold("cam-1", "lq", T0_NS, T0_NS + S, expires_ns=T0_NS + 10**13, owner="j")
        clock.set_wall_ns(T0_NS + 3600 * S + 9 * S)
        store.enforce_retention()  # ages out lq seqs 1..3 (seq 0 is held) and hq seqs 0..3
    return store_path


def corrupt(
    path: Path, change: Callable[[lmdb.Environment, lmdb.Transaction[bytes]], None]
) -> None:
    with lmdb.open(str(path), max_dbs=12) as env, env.begin(write=True) as txn:
        change(env, txn)


def messages(report: StoreCheckReport) -> list[str]:
    return [str(v) for v in report.violations]


def test_intact_store_passes_with_a_summary(filled_store: Path) -> None:
    report = check_store(filled_store)

    assert report.violations == ()
    assert report.ok
    assert (report.stream_count, report.chunk_count, report.gap_count) == (2, 9, 2)
    by_name = {(s.site_id, s.device_id, s.stream): s for s in report.streams}
    lq = by_name[(SITE_ID, "cam-1", "lq")]
    assert (lq.first_seq, lq.last_seq, lq.chunk_count) == (0, 10, 8)
    hq = by_name[(SITE_ID, "cam-1", "hq")]
    assert hq.horizon is not None
    assert hq.horizon.seq == 3


def test_missing_payload_is_reported(filled_store: Path) -> None:
    def delete_payload(env: lmdb.Environment, txn: lmdb.Transaction[bytes]) -> None:
        txn.delete(stream_key(STREAM_ID, T0_NS + 8 * S), db=env.open_db(b"payloads", txn=txn))

    corrupt(filled_store, delete_payload)
    report = check_store(filled_store)

    assert messages(report) == [
        f"invariant 2: {LQ} chunk at {T0_NS + 8 * S} (seq 4): payload is missing"
    ]


def test_flipped_payload_byte_is_reported(filled_store: Path) -> None:
    def flip(env: lmdb.Environment, txn: lmdb.Transaction[bytes]) -> None:
        db = env.open_db(b"payloads", txn=txn)
        key = stream_key(STREAM_ID, T0_NS + 10 * S)
        payload = bytearray(txn.get(key, db=db) or b"")
        payload[100] ^= 0x01
        txn.put(key, bytes(payload), db=db)

    corrupt(filled_store, flip)

    assert messages(check_store(filled_store)) == [
        f"invariant 2: {LQ} chunk at {T0_NS + 10 * S} (seq 5): payload SHA-256 does not match"
    ]


def test_altered_counters_are_reported(filled_store: Path) -> None:
    def alter(env: lmdb.Environment, txn: lmdb.Transaction[bytes]) -> None:
        streams = env.open_db(b"streams", txn=txn)
        key = STREAM_ID.to_bytes(4, "big")
        record = StreamRecord.decode(STREAM_ID, txn.get(key, db=streams) or b"")
        bumped = StreamRecord(
            record.stream_id,
            record.site_id,
            record.device_id,
            record.stream,
            record.chunk_count + 1,
            record.stored_bytes,
            record.head,
        )
        txn.put(key, bumped.encode(), db=streams)
        txn.put(META_LIVE_BYTES, encode_u64(12345), db=env.open_db(b"meta", txn=txn))

    corrupt(filled_store, alter)
    found = messages(check_store(filled_store))

    assert found[0] == f"invariant 7: {LQ}: counter says 9 chunks, found 8"
    assert found[1].startswith("invariant 8: global live bytes is recorded as 12345, found ")
    assert len(found) == 2


def test_seq_index_and_tombstone_disagreements_are_reported(filled_store: Path) -> None:
    def break_index(env: lmdb.Environment, txn: lmdb.Transaction[bytes]) -> None:
        seqs = env.open_db(b"seqs", txn=txn)
        txn.delete(stream_key(STREAM_ID, 6), db=seqs)
        tombstones = env.open_db(b"tombstones", txn=txn)
        fake = Tombstone(7, bytes(32), T0_NS, T0_NS + 1, DeletionReason.AGE, T0_NS)
        txn.put(stream_key(STREAM_ID, 7), fake.encode(), db=tombstones)

    corrupt(filled_store, break_index)

    assert messages(check_store(filled_store)) == [
        f"invariant 4: {LQ} chunk at {T0_NS + 12 * S}: seq 6 is indexed at None, not at its start",
        f"invariant 9: {LQ} seq 7 is both stored and tombstoned",
    ]


def test_overlapping_chunks_and_bad_holds_are_reported(
    filled_store: Path, factory: ChunkFactory
) -> None:
    # A chunk slipped in behind the store's back, overlapping seq 5 [T0 + 10 s, T0 + 12 s).
    intruder = factory.make(start_ns=T0_NS + 11 * S, seq=50, duration_ns=S // 2)

    def slip_in(env: lmdb.Environment, txn: lmdb.Transaction[bytes]) -> None:
        key = stream_key(STREAM_ID, T0_NS + 11 * S)
        txn.put(key, encode_header_value(intruder), db=env.open_db(b"headers", txn=txn))
        txn.put(key, intruder.payload, db=env.open_db(b"payloads", txn=txn))
        txn.put(
            stream_key(STREAM_ID, 50), encode_u64(T0_NS + 11 * S), db=env.open_db(b"seqs", txn=txn)
        )
        txn.put(encode_u64(99), b"\x93\x01\x02\x03", db=env.open_db(b"holds", txn=txn))

    corrupt(filled_store, slip_in)
    found = messages(check_store(filled_store))

    at_11, at_12 = T0_NS + 11 * S, T0_NS + 12 * S
    assert f"invariant 5: {LQ} chunk at {at_11}: seq 50 overlaps seq 5 (ends {at_12})" in found
    assert (
        f"invariant 5: {LQ} chunk at {at_12}: seq 6 follows seq 50 in time but is not higher"
    ) in found
    assert f"invariant 7: {LQ}: seq 50 is stored above head 10" in found
    assert "invariant 10: hold 99: record must be a list of 8 fields" in found
