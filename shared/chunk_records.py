"""The chunk download format, `application/vnd.siteline.chunks`: stored signed chunks one
after another, as the site's REST API sends a range of a stream.

Each record is a 4-byte big-endian length, then that many bytes of a msgpack array
`[header_bytes, signature, payload]`: the header exactly as signed, the 64-byte Ed25519
signature, the payload. There is no envelope and no trailer: a response ends after its
last record, so a download cut anywhere loses at most the record in flight, and the last
whole record's seq is the `after_seq` to resume from.

The reader is sans-I/O (feed it bytes in pieces of any size). It refuses an oversized
record as soon as the length arrives, before buffering it, and names the record (its
position and byte offset) in every error. It checks structure only; whether a chunk is
authentic is `shared/transfer_acceptance.py` and `shared/chain_verification.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import msgpack

from shared.chunk import MAX_HEADER_BYTES, SIGNATURE_BYTES, ChunkFormatError, SignedChunk
from shared.link.wire import MAX_CHUNK_PAYLOAD_BYTES

MEDIA_TYPE = "application/vnd.siteline.chunks"
LENGTH_PREFIX_BYTES = 4
_ENVELOPE_BYTES = 16  # msgpack array and bin headers around the three fields
MAX_RECORD_BYTES = MAX_HEADER_BYTES + SIGNATURE_BYTES + MAX_CHUNK_PAYLOAD_BYTES + _ENVELOPE_BYTES
READ_SIZE = 256 * 1024


class ChunkRecordError(ValueError):
    """Bytes that are not a sequence of chunk records; the message names the record."""


def encode_chunk_record(chunk: SignedChunk) -> bytes:
    """The record that carries `chunk`."""
    body: bytes = msgpack.packb(
        [chunk.header_bytes, chunk.signature, chunk.payload], use_bin_type=True
    )
    return len(body).to_bytes(LENGTH_PREFIX_BYTES, "big") + body


class ChunkRecordReader:
    """Cuts a byte stream into `SignedChunk`s; see the module docstring."""

    def __init__(self, *, max_record_bytes: int = MAX_RECORD_BYTES) -> None:
        if max_record_bytes < 1:
            raise ValueError(f"max_record_bytes must be positive, not {max_record_bytes}")
        self.max_record_bytes = max_record_bytes
        self.records_read = 0
        self.bytes_read = 0  # offset of the first byte not yet part of a whole record
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        """Bytes of a record that is not complete yet."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[SignedChunk]:
        """The chunks of the records that `data` completes, in order."""
        self._buffer += data
        chunks: list[SignedChunk] = []
        buffer = self._buffer
        start = 0
        while len(buffer) - start >= LENGTH_PREFIX_BYTES:
            length = int.from_bytes(buffer[start : start + LENGTH_PREFIX_BYTES], "big")
            if length == 0:
                raise self._error("has length 0")
            if length > self.max_record_bytes:
                raise self._error(f"announces {length} bytes; the limit is {self.max_record_bytes}")
            end = start + LENGTH_PREFIX_BYTES + length
            if len(buffer) < end:
                break
            chunks.append(self._decode(bytes(buffer[start + LENGTH_PREFIX_BYTES : end])))
            self.records_read += 1
            self.bytes_read += end - start
            start = end
        del buffer[:start]
        return chunks

    def finish(self) -> None:
        """Call at the end of the stream: a record cut off in the middle is an error."""
        if self._buffer:
            raise self._error(f"is cut off after {len(self._buffer)} bytes")

    def _decode(self, body: bytes) -> SignedChunk:
        try:
            fields = msgpack.unpackb(
                body,
                raw=False,
                max_bin_len=max(MAX_HEADER_BYTES, MAX_CHUNK_PAYLOAD_BYTES),
                max_str_len=0,
                max_array_len=3,
                max_map_len=0,
                max_ext_len=0,
            )
        except (ValueError, msgpack.UnpackException) as exc:
            raise self._error(f"is not valid msgpack ({exc})") from None
        if not isinstance(fields, list) or len(fields) != 3:
            raise self._error("must be an array of 3 fields: header, signature, payload")
        header, signature, payload = fields
        for name, value in (("header", header), ("signature", signature), ("payload", payload)):
            if not isinstance(value, bytes):
                raise self._error(f"field {name} must be binary, not {type(value).__name__}")
        if len(header) > MAX_HEADER_BYTES:
            raise self._error(f"header is {len(header)} bytes, over {MAX_HEADER_BYTES}")
        if len(signature) != SIGNATURE_BYTES:
            raise self._error(f"signature is {len(signature)} bytes, not {SIGNATURE_BYTES}")
        try:
            chunk = SignedChunk.from_parts(header, signature, payload)
        except ChunkFormatError as exc:
            raise self._error(f"has a malformed header: {exc}") from None
        if len(payload) != chunk.header.payload_size:
            raise self._error(
                f"payload is {len(payload)} bytes; its header names {chunk.header.payload_size}"
            )
        return chunk

    def _error(self, problem: str) -> ChunkRecordError:
        return ChunkRecordError(
            f"chunk record {self.records_read + 1} (at byte {self.bytes_read}) {problem}"
        )


def read_chunk_records(
    source: BinaryIO, *, max_record_bytes: int = MAX_RECORD_BYTES
) -> Iterator[SignedChunk]:
    """The chunks of a whole file or pipe in this format, read a piece at a time."""
    reader = ChunkRecordReader(max_record_bytes=max_record_bytes)
    while piece := source.read(READ_SIZE):
        yield from reader.feed(piece)
    reader.finish()
