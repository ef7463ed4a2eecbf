"""Typed access to the store's tables inside one LMDB transaction.

`TableTxn` pairs the key encodings with the value codecs; `ChunkStore` composes its steps
into transactions (`check_store` also walks raw rows, to report what these typed reads would
reject). Cursors never
outlive a method call: a write transaction may delete rows between two steps, and a fresh
`set_range` per step is cheap (a B-tree descent) and always correct.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import lmdb

from shared.chunk import SignedChunk
from shared.store.chunk_meta import StoredHeader, decode_header_value, encode_header_value
from shared.store.environment import Tables
from shared.store.errors import StoreFormatError
from shared.store.holds import Hold
from shared.store.keys import (
    META_CHUNK_COUNT,
    META_LIVE_BYTES,
    META_NEXT_HOLD_ID,
    META_NEXT_STREAM_ID,
    STREAM_KEY_BYTES,
    U64_MAX,
    decode_stream_id,
    decode_u64,
    encode_u64,
    hold_key,
    name_key,
    split_stream_key,
    stream_end_key,
    stream_id_key,
    stream_key,
)
from shared.store.streams import StreamHead, StreamRecord, stream_label
from shared.store.timeline import overlaps
from shared.store.tombstones import DeletionReason, Tombstone

MAX_STREAM_ID = (1 << 32) - 2  # stream_end_key(id) must still fit in four bytes


class TableTxn:
    """One transaction over the store's tables (read-only or write)."""

    def __init__(self, txn: lmdb.Transaction[bytes], tables: Tables) -> None:
        self._txn = txn
        self._t = tables

    # -- meta ----------------------------------------------------------------------------

    def meta_u64(self, key: bytes) -> int:
        """A counter of the meta table; `StoreFormatError` when missing or malformed."""
        raw = self._txn.get(key, db=self._t.meta)
        if raw is None:
            raise StoreFormatError(f"meta record {key.decode()} is missing")
        try:
            return decode_u64(raw)
        except struct.error as exc:
            raise StoreFormatError(f"meta record {key.decode()} is malformed") from exc

    def set_meta_u64(self, key: bytes, value: int) -> None:
        self._txn.put(key, encode_u64(value), db=self._t.meta)

    def add_meta_u64(self, key: bytes, delta: int) -> int:
        """Add `delta` to a counter and return the new value (never below zero)."""
        value = max(0, self.meta_u64(key) + delta)
        self.set_meta_u64(key, value)
        return value

    # -- streams -------------------------------------------------------------------------

    def stream_id_for(self, site_id: str, device_id: str, stream: str) -> int | None:
        """The numeric id of a stream, or None when nothing was ever stored for it."""
        raw = self._txn.get(name_key(site_id, device_id, stream), db=self._t.stream_names)
        if raw is None:
            return None
        try:
            return decode_stream_id(raw)
        except struct.error as exc:
            raise StoreFormatError(
                f"stream name record of {stream_label(site_id, device_id, stream)} is malformed"
            ) from exc

    def stream_record(self, stream_id: int) -> StreamRecord | None:
        raw = self._txn.get(stream_id_key(stream_id), db=self._t.streams)
        return None if raw is None else StreamRecord.decode(stream_id, raw)

    def find_stream(self, site_id: str, device_id: str, stream: str) -> StreamRecord | None:
        """The record of (site_id, device_id, stream), checking the names behind the hash."""
        stream_id = self.stream_id_for(site_id, device_id, stream)
        if stream_id is None:
            return None
        label = stream_label(site_id, device_id, stream)
        record = self.stream_record(stream_id)
        if record is None:
            raise StoreFormatError(f"stream {label} names id {stream_id}, which has no record")
        if (record.site_id, record.device_id, record.stream) != (site_id, device_id, stream):
            raise StoreFormatError(f"stream id {stream_id} belongs to {record.label}, not {label}")
        return record

    def stream_records(self) -> list[StreamRecord]:
        records = []
        with self._txn.cursor(db=self._t.streams) as cursor:
            for key, value in cursor:
                records.append(StreamRecord.decode(decode_stream_id(key), value))
        return records

    def create_stream(self, site_id: str, device_id: str, stream: str) -> StreamRecord:
        stream_id = self.meta_u64(META_NEXT_STREAM_ID)
        if stream_id > MAX_STREAM_ID:
            raise StoreFormatError("the store has run out of stream ids")
        self.set_meta_u64(META_NEXT_STREAM_ID, stream_id + 1)
        self._txn.put(
            name_key(site_id, device_id, stream),
            stream_id_key(stream_id),
            db=self._t.stream_names,
        )
        record = StreamRecord(stream_id, site_id, device_id, stream, 0, 0, None)
        self.put_stream_record(record)
        return record

    def put_stream_record(self, record: StreamRecord) -> None:
        self._txn.put(stream_id_key(record.stream_id), record.encode(), db=self._t.streams)

    # -- headers and payloads ------------------------------------------------------------

    def header_at(self, stream_id: int, start_ns: int) -> StoredHeader | None:
        raw = self._txn.get(stream_key(stream_id, start_ns), db=self._t.headers)
        return None if raw is None else decode_header_value(stream_id, start_ns, raw)

    def payload(self, stream_id: int, start_ns: int) -> bytes | None:
        return self._txn.get(stream_key(stream_id, start_ns), db=self._t.payloads)

    def first_header_from(self, stream_id: int, start_ns: int) -> StoredHeader | None:
        """The stream's first chunk starting at or after `start_ns`."""
        if start_ns > U64_MAX:
            return None
        with self._txn.cursor(db=self._t.headers) as cursor:
            if not cursor.set_range(stream_key(stream_id, start_ns)):
                return None
            return self._header_in_stream(stream_id, cursor.key(), cursor.value())

    def header_after(self, stream_id: int, start_ns: int) -> StoredHeader | None:
        """The stream's first chunk starting strictly after `start_ns`."""
        return self.first_header_from(stream_id, start_ns + 1)

    def header_before(self, stream_id: int, start_ns: int) -> StoredHeader | None:
        """The stream's last chunk starting strictly before `start_ns`."""
        with self._txn.cursor(db=self._t.headers) as cursor:
            found = cursor.set_range(stream_key(stream_id, min(start_ns, U64_MAX)))
            moved = cursor.prev() if found else cursor.last()
            if not moved:
                return None
            return self._header_in_stream(stream_id, cursor.key(), cursor.value())

    def first_header(self, stream_id: int) -> StoredHeader | None:
        return self.first_header_from(stream_id, 0)

    def last_header(self, stream_id: int) -> StoredHeader | None:
        with self._txn.cursor(db=self._t.headers) as cursor:
            found = cursor.set_range(stream_end_key(stream_id))
            moved = cursor.prev() if found else cursor.last()
            if not moved:
                return None
            return self._header_in_stream(stream_id, cursor.key(), cursor.value())

    def headers_overlapping(self, stream_id: int, start_ns: int, end_ns: int) -> list[StoredHeader]:
        """The stream's chunks that overlap [start_ns, end_ns), in time order."""
        found: list[StoredHeader] = []
        # Chunks of a stream never overlap each other, so at most one chunk that starts
        # before the range can reach into it.
        before = self.header_before(stream_id, start_ns)
        if before is not None and overlaps(before.start_ns, before.end_ns, start_ns, end_ns):
            found.append(before)
        for header in self.headers_from(stream_id, start_ns):
            if not overlaps(header.start_ns, header.end_ns, start_ns, end_ns):
                break
            found.append(header)
        return found

    def headers_from(self, stream_id: int, start_ns: int) -> Iterator[StoredHeader]:
        """The stream's chunks starting at or after `start_ns`, in time order.

        For read transactions and read-only scans; writers step with `header_after`.
        """
        if start_ns > U64_MAX:
            return
        with self._txn.cursor(db=self._t.headers) as cursor:
            if not cursor.set_range(stream_key(stream_id, start_ns)):
                return
            for key, value in cursor:
                header = self._header_in_stream(stream_id, key, value)
                if header is None:
                    return
                yield header

    def _header_in_stream(self, stream_id: int, key: bytes, value: bytes) -> StoredHeader | None:
        if len(key) != STREAM_KEY_BYTES:
            raise StoreFormatError(f"headers table has a key of {len(key)} bytes")
        key_stream, start_ns = split_stream_key(key)
        if key_stream != stream_id:
            return None
        return decode_header_value(stream_id, start_ns, value)

    # -- seq index -----------------------------------------------------------------------

    def start_of_seq(self, stream_id: int, seq: int) -> int | None:
        raw = self._txn.get(stream_key(stream_id, seq), db=self._t.seqs)
        if raw is None:
            return None
        try:
            return decode_u64(raw)
        except struct.error as exc:
            raise StoreFormatError(
                f"seq index of stream {stream_id} seq {seq} is malformed"
            ) from exc

    def seqs_from(self, stream_id: int, seq: int) -> Iterator[tuple[int, int]]:
        """(seq, start_ns) of the stream's chunks with seq at or after `seq`, in seq order."""
        if seq > U64_MAX:
            return
        with self._txn.cursor(db=self._t.seqs) as cursor:
            if not cursor.set_range(stream_key(stream_id, seq)):
                return
            for key, value in cursor:
                key_stream, found_seq = split_stream_key(key)
                if key_stream != stream_id:
                    return
                yield found_seq, decode_u64(value)

    def insert_chunk(
        self, record: StreamRecord, chunk: SignedChunk, chunk_hash: bytes, stored_bytes: int
    ) -> StreamRecord:
        """Write the chunk's three rows and update the stream and global counters."""
        header = chunk.header
        key = stream_key(record.stream_id, header.start_ns)
        self._txn.put(key, encode_header_value(chunk), db=self._t.headers)
        self._txn.put(key, chunk.payload, db=self._t.payloads)
        self._txn.put(
            stream_key(record.stream_id, header.seq), encode_u64(header.start_ns), db=self._t.seqs
        )
        updated = record.with_chunk_added(
            stored_bytes, StreamHead(header.seq, chunk_hash, header.end_ns)
        )
        self.put_stream_record(updated)
        self.add_meta_u64(META_LIVE_BYTES, stored_bytes)
        self.add_meta_u64(META_CHUNK_COUNT, 1)
        return updated

    def delete_chunk(
        self, record: StreamRecord, header: StoredHeader, reason: DeletionReason, now_ns: int
    ) -> StreamRecord:
        """Remove a chunk's rows, leave its tombstone, and update the counters."""
        key = stream_key(record.stream_id, header.start_ns)
        self._txn.delete(key, db=self._t.headers)
        self._txn.delete(key, db=self._t.payloads)
        self._txn.delete(stream_key(record.stream_id, header.seq), db=self._t.seqs)
        tombstone = Tombstone(
            header.seq, header.chunk_hash, header.start_ns, header.end_ns, reason, now_ns
        )
        self._txn.put(
            stream_key(record.stream_id, header.seq), tombstone.encode(), db=self._t.tombstones
        )
        updated = record.with_chunk_removed(header.stored_bytes)
        self.put_stream_record(updated)
        self.add_meta_u64(META_LIVE_BYTES, -header.stored_bytes)
        self.add_meta_u64(META_CHUNK_COUNT, -1)
        return updated

    # -- tombstones ----------------------------------------------------------------------

    def tombstone(self, stream_id: int, seq: int) -> Tombstone | None:
        raw = self._txn.get(stream_key(stream_id, seq), db=self._t.tombstones)
        return None if raw is None else Tombstone.decode(seq, raw)

    def delete_tombstone(self, stream_id: int, seq: int) -> None:
        self._txn.delete(stream_key(stream_id, seq), db=self._t.tombstones)

    def tombstones(self, stream_id: int) -> list[Tombstone]:
        """The stream's tombstones in seq order."""
        found = []
        with self._txn.cursor(db=self._t.tombstones) as cursor:
            if not cursor.set_range(stream_id_key(stream_id)):
                return []
            for key, value in cursor:
                key_stream, seq = split_stream_key(key)
                if key_stream != stream_id:
                    break
                found.append(Tombstone.decode(seq, value))
        return found

    def horizon(self, stream_id: int) -> Tombstone | None:
        """Newest tombstone below the stream's oldest stored seq (any, when none is stored)."""
        first = self.first_seq(stream_id)
        upper = stream_end_key(stream_id) if first is None else stream_key(stream_id, first)
        with self._txn.cursor(db=self._t.tombstones) as cursor:
            moved = cursor.prev() if cursor.set_range(upper) else cursor.last()
            if not moved:
                return None
            key_stream, seq = split_stream_key(cursor.key())
            if key_stream != stream_id:
                return None
            return Tombstone.decode(seq, cursor.value())

    def first_seq(self, stream_id: int) -> int | None:
        for seq, _start_ns in self.seqs_from(stream_id, 0):
            return seq
        return None

    def compact_tombstones(self, stream_id: int) -> int:
        """Drop tombstones below the horizon; return how many were dropped.

        Below the oldest stored chunk only the newest tombstone (the horizon) still tells
        verification anything: everything older expired by retention too.
        """
        horizon = self.horizon(stream_id)
        if horizon is None:
            return 0
        doomed = []
        with self._txn.cursor(db=self._t.tombstones) as cursor:
            if cursor.set_range(stream_id_key(stream_id)):
                for key in cursor.iternext(keys=True, values=False):
                    key_stream, seq = split_stream_key(key)
                    if key_stream != stream_id or seq >= horizon.seq:
                        break
                    doomed.append(key)
        for key in doomed:
            self._txn.delete(key, db=self._t.tombstones)
        return len(doomed)

    # -- holds ---------------------------------------------------------------------------

    def holds(self) -> list[Hold]:
        found = []
        with self._txn.cursor(db=self._t.holds) as cursor:
            for key, value in cursor:
                found.append(Hold.decode(decode_u64(key), value))
        return found

    def next_hold_id(self) -> int:
        hold_id = self.meta_u64(META_NEXT_HOLD_ID)
        self.set_meta_u64(META_NEXT_HOLD_ID, hold_id + 1)
        return hold_id

    def put_hold(self, hold: Hold) -> None:
        self._txn.put(hold_key(hold.hold_id), hold.encode(), db=self._t.holds)

    def delete_hold(self, hold_id: int) -> bool:
        return self._txn.delete(hold_key(hold_id), db=self._t.holds)
