"""Tombstones: what retention deleted, kept so verification can tell expiry from removal."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.chunk import HASH_BYTES
from shared.store.codec import as_bytes, as_int, as_str, pack_record, unpack_record
from shared.store.errors import StoreFormatError


class DeletionReason(StrEnum):
    """Why a chunk was deleted."""

    AGE = "age"  # older than its stream's maximum age
    BYTES = "bytes"  # live bytes over the high-water mark
    EMERGENCY = "emergency"  # the map or disk was full while writing


@dataclass(frozen=True, slots=True)
class Tombstone:
    """The record left in place of a deleted chunk: its hash, span, reason and time."""

    seq: int
    chunk_hash: bytes
    start_ns: int
    end_ns: int
    reason: DeletionReason
    deleted_at_ns: int

    def encode(self) -> bytes:
        return pack_record(
            [self.chunk_hash, self.start_ns, self.end_ns, str(self.reason), self.deleted_at_ns]
        )

    @classmethod
    def decode(cls, seq: int, data: bytes) -> Tombstone:
        what = f"tombstone seq {seq}"
        chunk_hash, start_ns, end_ns, reason, deleted_at = unpack_record(data, 5, what)
        reason_text = as_str(reason, f"{what} reason")
        if reason_text not in {r.value for r in DeletionReason}:
            raise StoreFormatError(f"{what} has unknown reason {reason_text!r}")
        return cls(
            seq,
            as_bytes(chunk_hash, f"{what} chunk hash", HASH_BYTES),
            as_int(start_ns, f"{what} start_ns"),
            as_int(end_ns, f"{what} end_ns"),
            DeletionReason(reason_text),
            as_int(deleted_at, f"{what} deleted_at_ns"),
        )
