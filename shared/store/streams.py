"""The streams registry: one record per (site_id, device_id, stream) with counters and head.

The site is part of a stream's identity because one store may hold many sites (the
central's media store), and two sites may well both name a device `cam-1`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from shared.chunk import HASH_BYTES
from shared.store.codec import (
    as_bytes,
    as_int,
    as_optional_int,
    as_str,
    pack_record,
    unpack_record,
)
from shared.store.tombstones import Tombstone


def stream_label(site_id: str, device_id: str, stream: str) -> str:
    """How messages name a stream: `site/device/stream`."""
    return f"{site_id}/{device_id}/{stream}"


@dataclass(frozen=True, slots=True)
class StreamHead:
    """The highest seq ever stored for a stream, so a recorder can continue its hash chain.

    Retention never moves the head back: after the head chunk itself is deleted, the next
    chunk still names its hash, and the tombstone keeps the proof of what was there.
    """

    seq: int
    chunk_hash: bytes
    end_ns: int


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A row of the streams table: identity, live counters and head of one stream."""

    stream_id: int
    site_id: str
    device_id: str
    stream: str
    chunk_count: int
    stored_bytes: int
    head: StreamHead | None

    @property
    def label(self) -> str:
        return stream_label(self.site_id, self.device_id, self.stream)

    def encode(self) -> bytes:
        head = self.head
        return pack_record(
            [
                self.site_id,
                self.device_id,
                self.stream,
                self.chunk_count,
                self.stored_bytes,
                None if head is None else head.seq,
                None if head is None else head.chunk_hash,
                None if head is None else head.end_ns,
            ]
        )

    @classmethod
    def decode(cls, stream_id: int, data: bytes) -> StreamRecord:
        what = f"stream record {stream_id}"
        site_id, device_id, stream, count, stored, head_seq, head_hash, head_end = unpack_record(
            data, 8, what
        )
        seq = as_optional_int(head_seq, f"{what} head seq")
        head = None
        if seq is not None:
            head = StreamHead(
                seq,
                as_bytes(head_hash, f"{what} head hash", HASH_BYTES),
                as_int(head_end, f"{what} head end_ns"),
            )
        return cls(
            stream_id,
            as_str(site_id, f"{what} site_id"),
            as_str(device_id, f"{what} device_id"),
            as_str(stream, f"{what} stream"),
            as_int(count, f"{what} chunk count"),
            as_int(stored, f"{what} stored bytes"),
            head,
        )

    def with_chunk_added(self, stored_bytes: int, head: StreamHead) -> StreamRecord:
        """Counters after storing one chunk; the head moves only forward in seq."""
        new_head = head if self.head is None or head.seq > self.head.seq else self.head
        return replace(
            self,
            chunk_count=self.chunk_count + 1,
            stored_bytes=self.stored_bytes + stored_bytes,
            head=new_head,
        )

    def with_chunk_removed(self, stored_bytes: int) -> StreamRecord:
        """Counters after deleting one chunk (the head stays; see `StreamHead`)."""
        return replace(
            self,
            chunk_count=self.chunk_count - 1,
            stored_bytes=self.stored_bytes - stored_bytes,
        )


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """What `ChunkStore.streams()` reports for one stream.

    `horizon` is the retention horizon: the newest tombstone below the oldest stored chunk
    (or the newest tombstone at all when nothing is stored). Chain verification starts there:
    the oldest stored chunk's `prev_chunk_hash` names it when their seqs are adjacent.
    """

    site_id: str
    device_id: str
    stream: str
    chunk_count: int
    stored_bytes: int
    first_start_ns: int | None
    last_end_ns: int | None
    head: StreamHead | None
    horizon: Tombstone | None
