"""Deciding whether a chunk that arrived over the link may be committed.

The receiver of a transfer checks every chunk before it commits it and before it advances
its cursor: the header decodes; it is for the site, device and stream that were asked for;
the site's key signed it; the payload is the one the header names; it comes after the
cursor; and, when it directly follows the cursor, it names the cursor's chunk as its
predecessor. A chunk whose sequence number jumps past the cursor is accepted with
`missing_before` set: the chunks between were not sent (deleted at the site by retention),
which the receiver records as a gap rather than hiding.

Pure logic: no I/O, usable by the central, the tests and the link client alike.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from shared.chunk import ChunkFormatError, ChunkHeader, SignedChunk
from shared.signing import verify_signature


class ChunkRejected(Exception):
    """A received chunk that must not be committed; the message says why."""


@dataclass(frozen=True, slots=True)
class TransferCursor:
    """The last chunk the receiver durably committed on a stream (None: nothing yet)."""

    seq: int | None = None
    chunk_hash: bytes | None = None

    def after(self, chunk: SignedChunk) -> TransferCursor:
        return TransferCursor(chunk.header.seq, chunk.chunk_hash)


@dataclass(frozen=True, slots=True)
class AcceptedChunk:
    chunk: SignedChunk
    missing_before: int  # chunks between the cursor and this one that did not come


@dataclass(frozen=True, slots=True)
class TransferExpectation:
    """What the receiver asked for and whose key it trusts."""

    site_id: str
    device_id: str
    stream: str
    public_key: bytes


def accept_chunk(
    expectation: TransferExpectation,
    cursor: TransferCursor,
    header: bytes,
    signature: bytes,
    payload: bytes,
    *,
    decoded: ChunkHeader | None = None,
    payload_checked: bool = False,
) -> AcceptedChunk:
    """The chunk, checked as the module docstring says; ChunkRejected otherwise.

    A caller that has already decoded `header` passes it as `decoded`, and one that has
    already compared the payload's SHA-256 with the hash the header names says so with
    `payload_checked`; neither is done twice. The rest (the names, the signature, the
    chain) is always checked here."""
    try:
        chunk = SignedChunk.from_parts(header, signature, payload, decoded=decoded)
    except ChunkFormatError as exc:
        raise ChunkRejected(f"malformed chunk header: {exc}") from None
    h = chunk.header
    where = f"chunk {h.device_id}/{h.stream} #{h.seq}"
    asked = (expectation.site_id, expectation.device_id, expectation.stream)
    if (h.site_id, h.device_id, h.stream) != asked:
        raise ChunkRejected(
            f"{where} of site {h.site_id!r} is not of the stream asked for ({'/'.join(asked)})"
        )
    if not verify_signature(expectation.public_key, header, signature):
        raise ChunkRejected(f"{where}: the signature does not verify with the site's key")
    if not payload_checked and (
        len(payload) != h.payload_size or hashlib.sha256(payload).digest() != h.payload_sha256
    ):
        raise ChunkRejected(f"{where}: the payload is not the one the header names")
    if cursor.seq is None:
        return AcceptedChunk(chunk, 0)
    if h.seq <= cursor.seq:
        raise ChunkRejected(f"{where} is not after the cursor (#{cursor.seq})")
    if h.seq == cursor.seq + 1 and h.prev_chunk_hash != cursor.chunk_hash:
        raise ChunkRejected(f"{where} does not name chunk #{cursor.seq} as its predecessor")
    return AcceptedChunk(chunk, h.seq - cursor.seq - 1)
