"""How a chunk's header and signature sit in the headers table, and the metadata read API.

The value starts with a fixed 24-byte prefix (end_ns, seq, payload size) so that timeline
scans, retention and range queries never decode msgpack; the signature and the header bytes,
exactly as signed, follow.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from shared.chunk import SIGNATURE_BYTES, ChunkHeader, SignedChunk, chunk_hash_of
from shared.store.errors import StoreFormatError

_PREFIX = struct.Struct(">QQQ")  # end_ns, seq, payload_size
_FIXED_BYTES = _PREFIX.size + SIGNATURE_BYTES


@dataclass(frozen=True, slots=True)
class StoredHeader:
    """One row of the headers table, with only the fixed prefix interpreted."""

    stream_id: int
    start_ns: int
    end_ns: int
    seq: int
    payload_size: int
    signature: bytes
    header_bytes: bytes

    @property
    def stored_bytes(self) -> int:
        """What this chunk counts against the quota: header, signature and payload bytes."""
        return len(self.header_bytes) + len(self.signature) + self.payload_size

    @property
    def chunk_hash(self) -> bytes:
        return chunk_hash_of(self.header_bytes)


def stored_bytes_of(chunk: SignedChunk) -> int:
    """Quota bytes of a chunk before it is stored (same rule as `StoredHeader.stored_bytes`)."""
    return len(chunk.header_bytes) + len(chunk.signature) + len(chunk.payload)


def encode_header_value(chunk: SignedChunk) -> bytes:
    """The headers-table value of `chunk`."""
    header = chunk.header
    prefix = _PREFIX.pack(header.end_ns, header.seq, len(chunk.payload))
    return prefix + chunk.signature + chunk.header_bytes


def decode_header_value(stream_id: int, start_ns: int, value: bytes) -> StoredHeader:
    """Split a headers-table value; `StoreFormatError` if it is too short to hold the prefix."""
    end_ns, seq, payload_size = decode_header_prefix(stream_id, start_ns, value)
    return StoredHeader(
        stream_id=stream_id,
        start_ns=start_ns,
        end_ns=end_ns,
        seq=seq,
        payload_size=payload_size,
        signature=value[_PREFIX.size : _FIXED_BYTES],
        header_bytes=value[_FIXED_BYTES:],
    )


def decode_header_prefix(
    stream_id: int, start_ns: int, value: bytes | memoryview
) -> tuple[int, int, int]:
    """(end_ns, seq, payload_size) of a headers-table value, reading only its fixed prefix.

    `value` may be a view into the map (a read transaction with buffers), so a scan copies
    nothing; `StoreFormatError` if the value is too short to be a header record.
    """
    if len(value) <= _FIXED_BYTES:
        raise StoreFormatError(
            f"header record of stream {stream_id} at {start_ns} is truncated ({len(value)} bytes)"
        )
    end_ns, seq, payload_size = _PREFIX.unpack_from(value)
    return end_ns, seq, payload_size


@dataclass(frozen=True, slots=True)
class ChunkMeta:
    """A stored chunk without its payload: header bytes as signed, signature, decoded header."""

    header_bytes: bytes
    signature: bytes
    header: ChunkHeader

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def start_ns(self) -> int:
        return self.header.start_ns

    @property
    def end_ns(self) -> int:
        return self.header.end_ns

    @property
    def payload_size(self) -> int:
        return self.header.payload_size

    @property
    def chunk_hash(self) -> bytes:
        return chunk_hash_of(self.header_bytes)
