"""The chunk: the unit of storage, transfer and signing.

A chunk is one group of pictures of one stream of one device (it starts on a keyframe; audio,
metadata and event streams cut on time instead). Its header is encoded deterministically with
msgpack and signed with the site's Ed25519 key. Chunks of a stream form a hash chain: each
header names the SHA-256 of the previous chunk's header, and carries a sequence number that
grows by one per stored chunk, so a removed, reordered or inserted chunk is detectable, and a
declared `discontinuity` tells a real recording gap (camera off, motion mode idle) apart from
a deleted chunk.

The header bytes are kept exactly as signed; nothing is ever re-encoded for verification.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgpack

from shared.media import CodecConfig, MediaFormatError, MediaPacket

CHUNK_FORMAT_VERSION = 1
GENESIS_HASH = bytes(32)
"""`prev_chunk_hash` of the first chunk ever recorded for a stream."""
HASH_BYTES = 32
SIGNATURE_BYTES = 64
MAX_HEADER_BYTES = 1 << 20
MAX_PACKETS_PER_CHUNK = 20_000
MAX_ID_CHARS = 128


class ChunkFormatError(ValueError):
    """Bytes that do not decode to a well-formed chunk; the message names the field."""


class Signer(Protocol):
    """Something that signs bytes with the site's private key."""

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class PacketEntry:
    """Where one packet sits in a chunk's payload, and its timing."""

    pts: int
    dts: int
    duration: int
    keyframe: bool
    size: int


@dataclass(frozen=True, slots=True)
class ChunkHeader:
    """The signed description of a chunk; the payload is bound to it by `payload_sha256`."""

    site_id: str
    device_id: str
    stream: str
    seq: int
    start_ns: int
    end_ns: int
    discontinuity: bool
    codec: CodecConfig
    packets: tuple[PacketEntry, ...]
    payload_sha256: bytes
    prev_chunk_hash: bytes

    def encode(self) -> bytes:
        """Deterministic bytes of this header (the bytes that are signed and hashed)."""
        packets = [[p.pts, p.dts, p.duration, p.keyframe, p.size] for p in self.packets]
        fields = [
            CHUNK_FORMAT_VERSION,
            self.site_id,
            self.device_id,
            self.stream,
            self.seq,
            self.start_ns,
            self.end_ns,
            self.discontinuity,
            self.codec.to_wire(),
            packets,
            self.payload_sha256,
            self.prev_chunk_hash,
        ]
        encoded: bytes = msgpack.packb(fields, use_bin_type=True)
        return encoded

    @property
    def payload_size(self) -> int:
        return sum(p.size for p in self.packets)

    @classmethod
    def decode(cls, data: bytes) -> ChunkHeader:
        """Parse header bytes, naming the first field that is wrong."""
        if len(data) > MAX_HEADER_BYTES:
            raise ChunkFormatError(f"chunk header is {len(data)} bytes, over {MAX_HEADER_BYTES}")
        try:
            fields = msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                max_bin_len=MAX_HEADER_BYTES,
                max_str_len=MAX_ID_CHARS * 4,
                max_array_len=MAX_PACKETS_PER_CHUNK,
            )
        except (ValueError, msgpack.UnpackException) as exc:
            raise ChunkFormatError(f"chunk header is not valid msgpack: {exc}") from exc
        if not isinstance(fields, list) or len(fields) != 12:
            raise ChunkFormatError("chunk header must be a list of 12 fields")
        (
            version,
            site_id,
            device_id,
            stream,
            seq,
            start_ns,
            end_ns,
            discontinuity,
            codec,
            packets,
            payload_sha256,
            prev_hash,
        ) = fields
        if version != CHUNK_FORMAT_VERSION:
            raise ChunkFormatError(f"chunk header has unsupported version {version!r}")
        for name, value in (("site_id", site_id), ("device_id", device_id), ("stream", stream)):
            if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
                raise ChunkFormatError(f"chunk header field {name} must be a short string")
        for name, value in (("seq", seq), ("start_ns", start_ns), ("end_ns", end_ns)):
            if not _is_int(value) or value < 0:
                raise ChunkFormatError(f"chunk header field {name} must be a non-negative int")
        if end_ns < start_ns:
            raise ChunkFormatError("chunk header has end_ns before start_ns")
        if not isinstance(discontinuity, bool):
            raise ChunkFormatError("chunk header field discontinuity must be a bool")
        for name, value in (("payload_sha256", payload_sha256), ("prev_chunk_hash", prev_hash)):
            if not isinstance(value, bytes) or len(value) != HASH_BYTES:
                raise ChunkFormatError(f"chunk header field {name} must be {HASH_BYTES} bytes")
        try:
            codec_config = CodecConfig.from_wire(codec)
        except MediaFormatError as exc:
            raise ChunkFormatError(f"chunk header field codec: {exc}") from exc
        if not isinstance(packets, list):
            raise ChunkFormatError("chunk header field packets must be a list")
        entries = []
        for index, item in enumerate(packets):
            if (
                not isinstance(item, list)
                or len(item) != 5
                or not all(_is_int(v) for v in (item[0], item[1], item[2], item[4]))
                or not isinstance(item[3], bool)
                or item[4] < 0
            ):
                raise ChunkFormatError(f"chunk header packet entry {index} is malformed")
            entries.append(PacketEntry(item[0], item[1], item[2], item[3], item[4]))
        return cls(
            site_id,
            device_id,
            stream,
            seq,
            start_ns,
            end_ns,
            discontinuity,
            codec_config,
            tuple(entries),
            payload_sha256,
            prev_hash,
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class SignedChunk:
    """A sealed chunk: header bytes exactly as signed, the signature, and the payload."""

    header_bytes: bytes
    signature: bytes
    payload: bytes
    header: ChunkHeader

    @classmethod
    def from_parts(
        cls,
        header_bytes: bytes,
        signature: bytes,
        payload: bytes,
        *,
        decoded: ChunkHeader | None = None,
    ) -> SignedChunk:
        """Decode the header (`decoded`: the caller has, from these very bytes); structural
        checks only (no signature or hash check here)."""
        if len(signature) != SIGNATURE_BYTES:
            raise ChunkFormatError(f"chunk signature must be {SIGNATURE_BYTES} bytes")
        header = ChunkHeader.decode(header_bytes) if decoded is None else decoded
        return cls(header_bytes, signature, payload, header)

    @property
    def chunk_hash(self) -> bytes:
        """The link the next chunk of the stream names in `prev_chunk_hash`."""
        return chunk_hash_of(self.header_bytes)

    def iter_packets(self) -> Iterator[tuple[PacketEntry, bytes]]:
        """Each packet's entry with its bytes, cut out of the payload."""
        offset = 0
        for entry in self.header.packets:
            yield entry, self.payload[offset : offset + entry.size]
            offset += entry.size


def chunk_hash_of(header_bytes: bytes) -> bytes:
    return hashlib.sha256(header_bytes).digest()


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk cut by the recorder but not yet numbered, chained or signed."""

    device_id: str
    stream: str
    start_ns: int
    end_ns: int
    codec: CodecConfig
    packets: tuple[MediaPacket, ...]

    @property
    def payload_size(self) -> int:
        return sum(len(p.data) for p in self.packets)


def seal_chunk(
    draft: ChunkDraft,
    *,
    site_id: str,
    seq: int,
    prev_chunk_hash: bytes,
    discontinuity: bool,
    signer: Signer,
) -> SignedChunk:
    """Number, chain and sign a draft."""
    if not draft.packets:
        raise ChunkFormatError("a chunk needs at least one packet")
    payload = b"".join(p.data for p in draft.packets)
    header = ChunkHeader(
        site_id=site_id,
        device_id=draft.device_id,
        stream=draft.stream,
        seq=seq,
        start_ns=draft.start_ns,
        end_ns=draft.end_ns,
        discontinuity=discontinuity,
        codec=draft.codec,
        packets=tuple(
            PacketEntry(p.pts, p.dts, p.duration, p.keyframe, len(p.data)) for p in draft.packets
        ),
        payload_sha256=hashlib.sha256(payload).digest(),
        prev_chunk_hash=prev_chunk_hash,
    )
    header_bytes = header.encode()
    return SignedChunk(header_bytes, signer.sign(header_bytes), payload, header)


def packets_of(chunks: Sequence[SignedChunk]) -> Iterator[tuple[ChunkHeader, PacketEntry, bytes]]:
    """All packets of consecutive chunks, in order, with the header each came from."""
    for chunk in chunks:
        for entry, data in chunk.iter_packets():
            yield chunk.header, entry, data
