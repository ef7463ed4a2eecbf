"""`check_store`: verify every storage invariant of a store on disk, in one read snapshot.

The invariant numbers match `docs/design/storage.md`. Signatures and hash chains are not
checked here (that is `shared.chain_verification`); the report carries each stream's
retention horizon and seq range so the two results can be combined.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lmdb

from shared.chunk import ChunkFormatError, ChunkHeader
from shared.store.chunk_meta import StoredHeader, decode_header_value
from shared.store.environment import Tables, open_environment
from shared.store.errors import StoreFormatError
from shared.store.holds import Hold
from shared.store.keys import (
    META_CHUNK_COUNT,
    META_LIVE_BYTES,
    STREAM_ID_BYTES,
    STREAM_KEY_BYTES,
    decode_stream_id,
    decode_u64,
    name_key,
    split_stream_key,
    stream_key,
)
from shared.store.streams import StreamRecord, stream_label
from shared.store.tables import TableTxn
from shared.store.timeline import DEFAULT_JOIN_TOLERANCE_NS
from shared.store.tombstones import Tombstone

MAX_VIOLATIONS_LISTED = 1000


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant: its number in the storage design and what exactly is wrong."""

    invariant: int
    message: str

    def __str__(self) -> str:
        return f"invariant {self.invariant}: {self.message}"


@dataclass(frozen=True, slots=True)
class CheckedStream:
    """What the check found for one stream, for combining with chain verification."""

    site_id: str
    device_id: str
    stream: str
    chunk_count: int
    stored_bytes: int
    first_seq: int | None
    last_seq: int | None
    gap_count: int
    horizon: Tombstone | None


@dataclass(frozen=True, slots=True)
class StoreCheckReport:
    """Summary of a check; `ok` when no invariant is broken."""

    path: Path
    stream_count: int
    chunk_count: int
    live_bytes: int
    gap_count: int
    streams: tuple[CheckedStream, ...]
    violations: tuple[Violation, ...]
    violation_count: int  # may exceed len(violations) when the listing was cut short

    @property
    def ok(self) -> bool:
        return self.violation_count == 0


def check_store(path: Path) -> StoreCheckReport:
    """Open the store at `path` read-only and verify every storage invariant.

    Raises `StoreOpenError`/`StoreFormatError` when `path` is not a readable store. The
    store may be open for writing in another process (the check sees one snapshot), but not
    in this one: LMDB allows one environment handle per process (use `ChunkStore.check`).
    """
    env, tables = open_environment(path, map_size_bytes=0, readonly=True, now_ns=0)
    try:
        return check_tables(env, tables, path)
    finally:
        env.close()


def check_tables(env: lmdb.Environment, tables: Tables, path: Path) -> StoreCheckReport:
    """Verify the invariants of an open environment (one read transaction)."""
    with env.begin(write=False) as raw:
        return _Checker(TableTxn(raw, tables), raw, tables, path).run()


@dataclass(slots=True)
class _StreamTally:
    record: StreamRecord
    chunk_count: int = 0
    stored_bytes: int = 0
    first_seq: int | None = None
    last: StoredHeader | None = None
    gap_count: int = 0
    seqs: set[int] = field(default_factory=set)


class _Checker:
    def __init__(
        self, txn: TableTxn, raw: lmdb.Transaction[bytes], tables: Tables, path: Path
    ) -> None:
        self._txn = txn
        self._raw = raw
        self._t = tables
        self._path = path
        self._violations: list[Violation] = []
        self._violation_count = 0
        self._tallies: dict[int, _StreamTally] = {}

    def run(self) -> StoreCheckReport:
        self._check_streams()
        self._check_headers()
        self._check_orphan_payloads()
        self._check_seq_index()
        self._check_tombstones()
        self._check_counters()
        self._check_holds()
        streams = tuple(
            CheckedStream(
                site_id=t.record.site_id,
                device_id=t.record.device_id,
                stream=t.record.stream,
                chunk_count=t.chunk_count,
                stored_bytes=t.stored_bytes,
                first_seq=t.first_seq,
                last_seq=None if t.last is None else t.last.seq,
                gap_count=t.gap_count,
                horizon=self._horizon(t.record.stream_id),
            )
            for t in self._tallies.values()
        )
        return StoreCheckReport(
            path=self._path,
            stream_count=len(streams),
            chunk_count=sum(s.chunk_count for s in streams),
            live_bytes=sum(s.stored_bytes for s in streams),
            gap_count=sum(s.gap_count for s in streams),
            streams=streams,
            violations=tuple(self._violations),
            violation_count=self._violation_count,
        )

    def _violate(self, invariant: int, message: str) -> None:
        self._violation_count += 1
        if len(self._violations) < MAX_VIOLATIONS_LISTED:
            self._violations.append(Violation(invariant, message))

    def _rows(self, db: lmdb._Database) -> Iterator[tuple[bytes, bytes]]:
        with self._raw.cursor(db=db) as cursor:
            yield from cursor

    # -- invariant 6: streams registry ---------------------------------------------------

    def _check_streams(self) -> None:
        for key, value in self._rows(self._t.streams):
            if len(key) != STREAM_ID_BYTES:
                self._violate(6, f"streams table has a key of {len(key)} bytes")
                continue
            stream_id = decode_stream_id(key)
            try:
                record = StreamRecord.decode(stream_id, value)
            except StoreFormatError as exc:
                self._violate(6, str(exc))
                continue
            self._tallies[stream_id] = _StreamTally(record)
            named = self._raw.get(
                name_key(record.site_id, record.device_id, record.stream), db=self._t.stream_names
            )
            if (
                named is None
                or len(named) != STREAM_ID_BYTES
                or decode_stream_id(named) != stream_id
            ):
                self._violate(
                    6, f"stream {self._name(stream_id)} is not found under its name in stream_names"
                )
        for key, value in self._rows(self._t.stream_names):
            if len(value) != STREAM_ID_BYTES:
                self._violate(6, f"stream_names row {key.hex()[:16]} has a malformed id")
                continue
            tally = self._tallies.get(decode_stream_id(value))
            owner = None if tally is None else tally.record
            if owner is None or name_key(owner.site_id, owner.device_id, owner.stream) != key:
                self._violate(
                    6,
                    f"stream_names row {key.hex()[:16]} names id {decode_stream_id(value)}, "
                    "which has no matching stream record",
                )

    # -- invariants 1, 2, 4, 5: headers with their payloads and seq rows -----------------

    def _check_headers(self) -> None:
        for key, value in self._rows(self._t.headers):
            if len(key) != STREAM_KEY_BYTES:
                self._violate(1, f"headers table has a key of {len(key)} bytes")
                continue
            stream_id, start_ns = split_stream_key(key)
            tally = self._tallies.get(stream_id)
            if tally is None:
                self._violate(6, f"chunk at {start_ns} belongs to unknown stream id {stream_id}")
                continue
            where = f"{self._name(stream_id)} chunk at {start_ns}"
            try:
                stored = decode_header_value(stream_id, start_ns, value)
                header = ChunkHeader.decode(stored.header_bytes)
            except (StoreFormatError, ChunkFormatError) as exc:
                self._violate(1, f"{where}: header does not decode ({exc})")
                continue
            self._check_header_fields(where, tally.record, stored, header)
            self._check_payload(where, stored, header)
            indexed = self._txn_start_of_seq(stream_id, stored.seq)
            if indexed != start_ns:
                self._violate(
                    4, f"{where}: seq {stored.seq} is indexed at {indexed}, not at its start"
                )
            self._tally_chunk(tally, where, stored)

    def _check_header_fields(
        self, where: str, record: StreamRecord, stored: StoredHeader, header: ChunkHeader
    ) -> None:
        named = (header.site_id, header.device_id, header.stream)
        if named != (record.site_id, record.device_id, record.stream):
            self._violate(1, f"{where}: header is for {stream_label(*named)}, not its stream")
        if header.start_ns != stored.start_ns:
            self._violate(1, f"{where}: header says start {header.start_ns}, key says otherwise")
        if (header.end_ns, header.seq, header.payload_size) != (
            stored.end_ns,
            stored.seq,
            stored.payload_size,
        ):
            self._violate(1, f"{where}: record prefix disagrees with the signed header bytes")

    def _check_payload(self, where: str, stored: StoredHeader, header: ChunkHeader) -> None:
        payload = self._raw.get(stream_key(stored.stream_id, stored.start_ns), db=self._t.payloads)
        if payload is None:
            self._violate(2, f"{where} (seq {stored.seq}): payload is missing")
            return
        if len(payload) != header.payload_size:
            self._violate(
                2,
                f"{where} (seq {stored.seq}): payload is {len(payload)} bytes, header says "
                f"{header.payload_size}",
            )
        elif hashlib.sha256(payload).digest() != header.payload_sha256:
            self._violate(2, f"{where} (seq {stored.seq}): payload SHA-256 does not match")

    def _tally_chunk(self, tally: _StreamTally, where: str, stored: StoredHeader) -> None:
        last = tally.last
        if last is not None:
            if stored.seq <= last.seq:
                self._violate(
                    5, f"{where}: seq {stored.seq} follows seq {last.seq} in time but is not higher"
                )
            if stored.start_ns < last.end_ns:
                self._violate(
                    5, f"{where}: seq {stored.seq} overlaps seq {last.seq} (ends {last.end_ns})"
                )
            if stored.start_ns - last.end_ns > DEFAULT_JOIN_TOLERANCE_NS:
                tally.gap_count += 1
        if tally.first_seq is None:
            tally.first_seq = stored.seq
        tally.last = stored
        tally.chunk_count += 1
        tally.stored_bytes += stored.stored_bytes
        tally.seqs.add(stored.seq)

    # -- invariant 3: no orphan payloads --------------------------------------------------

    def _check_orphan_payloads(self) -> None:
        with self._raw.cursor(db=self._t.payloads) as cursor:
            for key in cursor.iternext(keys=True, values=False):
                if self._raw.get(key, db=self._t.headers) is None:
                    self._violate(3, f"payload row {self._describe_key(key)} has no header")

    # -- invariant 4: seq index points at matching headers -------------------------------

    def _check_seq_index(self) -> None:
        for key, value in self._rows(self._t.seqs):
            if len(key) != STREAM_KEY_BYTES or len(value) != 8:
                self._violate(4, f"seq index row {key.hex()} is malformed")
                continue
            stream_id, seq = split_stream_key(key)
            start_ns = decode_u64(value)
            raw = self._raw.get(stream_key(stream_id, start_ns), db=self._t.headers)
            if raw is None:
                self._violate(
                    4,
                    f"{self._name(stream_id)} seq {seq} is indexed at {start_ns}, "
                    "where no chunk is stored",
                )
                continue
            try:
                stored = decode_header_value(stream_id, start_ns, raw)
            except StoreFormatError:
                continue  # reported with the headers
            if stored.seq != seq:
                self._violate(
                    4,
                    f"{self._name(stream_id)} seq {seq} is indexed at {start_ns}, which "
                    f"holds seq {stored.seq}",
                )

    # -- invariant 9: tombstones ---------------------------------------------------------

    def _check_tombstones(self) -> None:
        for key, value in self._rows(self._t.tombstones):
            if len(key) != STREAM_KEY_BYTES:
                self._violate(9, f"tombstone key {key.hex()} is malformed")
                continue
            stream_id, seq = split_stream_key(key)
            try:
                Tombstone.decode(seq, value)
            except StoreFormatError as exc:
                self._violate(9, f"{self._name(stream_id)}: {exc}")
            tally = self._tallies.get(stream_id)
            if tally is None:
                self._violate(6, f"tombstone seq {seq} belongs to unknown stream id {stream_id}")
            elif seq in tally.seqs:
                self._violate(9, f"{self._name(stream_id)} seq {seq} is both stored and tombstoned")

    # -- invariants 7, 8: counters and heads ---------------------------------------------

    def _check_counters(self) -> None:
        for stream_id, tally in self._tallies.items():
            record = tally.record
            name = self._name(stream_id)
            if record.chunk_count != tally.chunk_count:
                self._violate(
                    7,
                    f"{name}: counter says {record.chunk_count} chunks, found {tally.chunk_count}",
                )
            if record.stored_bytes != tally.stored_bytes:
                self._violate(
                    7,
                    f"{name}: counter says {record.stored_bytes} bytes, found {tally.stored_bytes}",
                )
            self._check_head(name, tally)
        total_bytes = sum(t.stored_bytes for t in self._tallies.values())
        total_chunks = sum(t.chunk_count for t in self._tallies.values())
        for meta_key, found, what in (
            (META_LIVE_BYTES, total_bytes, "live bytes"),
            (META_CHUNK_COUNT, total_chunks, "chunk count"),
        ):
            raw = self._raw.get(meta_key, db=self._t.meta)
            try:
                recorded = None if raw is None else decode_u64(raw)
            except struct.error:
                recorded = None
            if recorded != found:
                self._violate(8, f"global {what} is recorded as {recorded}, found {found}")

    def _check_head(self, name: str, tally: _StreamTally) -> None:
        head = tally.record.head
        if head is None:
            if tally.chunk_count:
                self._violate(7, f"{name}: chunks are stored but the stream has no head")
            return
        if tally.seqs and max(tally.seqs) > head.seq:
            self._violate(7, f"{name}: seq {max(tally.seqs)} is stored above head {head.seq}")
        start_ns = self._txn_start_of_seq(tally.record.stream_id, head.seq)
        if start_ns is not None:
            raw = self._raw.get(stream_key(tally.record.stream_id, start_ns), db=self._t.headers)
            if raw is None:
                return  # reported with the seq index
            try:
                stored = decode_header_value(tally.record.stream_id, start_ns, raw)
            except StoreFormatError:
                return  # reported with the headers
            if stored.chunk_hash != head.chunk_hash or stored.end_ns != head.end_ns:
                self._violate(7, f"{name}: head seq {head.seq} disagrees with the stored chunk")
            return
        raw_tombstone = self._raw.get(
            stream_key(tally.record.stream_id, head.seq), db=self._t.tombstones
        )
        try:
            tombstone = None if raw_tombstone is None else Tombstone.decode(head.seq, raw_tombstone)
        except StoreFormatError:
            return  # reported with the tombstones
        if tombstone is None or tombstone.chunk_hash != head.chunk_hash:
            self._violate(
                7, f"{name}: head seq {head.seq} is neither stored nor tombstoned with its hash"
            )

    # -- invariant 10: holds -------------------------------------------------------------

    def _check_holds(self) -> None:
        for key, value in self._rows(self._t.holds):
            if len(key) != 8:
                self._violate(10, f"hold key {key.hex()} is malformed")
                continue
            try:
                Hold.decode(decode_u64(key), value)
            except StoreFormatError as exc:
                self._violate(10, str(exc))

    # -- helpers of this check -----------------------------------------------------------

    def _txn_start_of_seq(self, stream_id: int, seq: int) -> int | None:
        try:
            return self._txn.start_of_seq(stream_id, seq)
        except StoreFormatError:
            return None

    def _horizon(self, stream_id: int) -> Tombstone | None:
        try:
            return self._txn.horizon(stream_id)
        except (StoreFormatError, struct.error):
            return None

    def _describe_key(self, key: bytes) -> str:
        if len(key) != STREAM_KEY_BYTES:
            return key.hex()
        stream_id, value = split_stream_key(key)
        return f"{self._name(stream_id)} at {value}"

    def _name(self, stream_id: int) -> str:
        tally = self._tallies.get(stream_id)
        return f"stream id {stream_id}" if tally is None else tally.record.label
