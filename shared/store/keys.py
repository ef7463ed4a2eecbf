"""Key encodings of the store's tables.

Every numeric key part is fixed-width big-endian, so LMDB's byte order is numeric order and a
cursor walks one stream's chunks in time (or seq) order without decoding anything.
"""

from __future__ import annotations

import hashlib
import struct

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_STREAM_AND_U64 = struct.Struct(">IQ")

STREAM_ID_BYTES = _U32.size
STREAM_KEY_BYTES = _STREAM_AND_U64.size
U64_MAX = (1 << 64) - 1

# Keys of the meta table.
META_FORMAT_VERSION = b"format_version"
META_LIVE_BYTES = b"live_bytes"
META_CHUNK_COUNT = b"chunk_count"
META_NEXT_STREAM_ID = b"next_stream_id"
META_NEXT_HOLD_ID = b"next_hold_id"
META_CREATED_NS = b"created_ns"
META_EMERGENCY_DELETES = b"emergency_deletes"


def encode_u64(value: int) -> bytes:
    """Eight big-endian bytes; `struct.error` for values outside 0..2**64-1."""
    return _U64.pack(value)


def decode_u64(data: bytes) -> int:
    """Inverse of `encode_u64`; `struct.error` when `data` is not exactly eight bytes."""
    (value,) = _U64.unpack(data)
    return int(value)


def stream_id_key(stream_id: int) -> bytes:
    """Key of a stream's record, and the prefix of all its chunk, seq and tombstone keys."""
    return _U32.pack(stream_id)


def decode_stream_id(key: bytes) -> int:
    """Stream id of a stream record key or of any key that starts with one."""
    (value,) = _U32.unpack_from(key)
    return int(value)


def stream_key(stream_id: int, value: int) -> bytes:
    """`stream_id | value`: value is start_ns in headers and payloads, seq in seqs/tombstones."""
    return _STREAM_AND_U64.pack(stream_id, value)


def split_stream_key(key: bytes | memoryview) -> tuple[int, int]:
    """Inverse of `stream_key`; `struct.error` when `key` has the wrong length."""
    stream_id, value = _STREAM_AND_U64.unpack(key)
    return int(stream_id), int(value)


def stream_end_key(stream_id: int) -> bytes:
    """The first key past every `stream_key(stream_id, ...)`."""
    return _U32.pack(stream_id + 1)


def name_key(site_id: str, device_id: str, stream: str) -> bytes:
    """Fixed-size key of the (site_id, device_id, stream) name triple.

    Names may be up to 128 characters each, which can exceed LMDB's 511-byte key limit once
    UTF-8 encoded; a SHA-256 of an unambiguous (length-prefixed) encoding always fits. The
    stream record holds the names themselves, so a lookup compares them after the hash.
    """
    site = site_id.encode()
    device = device_id.encode()
    digest = hashlib.sha256()
    digest.update(_U32.pack(len(site)))
    digest.update(site)
    digest.update(_U32.pack(len(device)))
    digest.update(device)
    digest.update(stream.encode())
    return digest.digest()


def hold_key(hold_id: int) -> bytes:
    """Key of a hold record."""
    return _U64.pack(hold_id)
