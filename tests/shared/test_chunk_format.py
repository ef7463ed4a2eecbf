"""Chunk headers: exact round trips, and hostile bytes only ever raise ChunkFormatError."""

from __future__ import annotations

import contextlib

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.chunk import GENESIS_HASH, ChunkDraft, ChunkFormatError, ChunkHeader, seal_chunk
from shared.media import CodecConfig, MediaKind, MediaPacket
from shared.signing import SiteSigner

CODEC = CodecConfig(MediaKind.VIDEO, "h264", 1, 90000, 640, 360, extradata=b"\x01\x64")
SIGNER = SiteSigner.generate()


def _header(seq: int) -> ChunkHeader:
    packets = (
        MediaPacket("lq", 0, 0, 11250, True, b"\x00\x00\x01\x65" * 10, 10),
        MediaPacket("lq", 11250, 11250, 11250, False, b"\x00\x00\x01\x41" * 5, 20),
    )
    draft = ChunkDraft("cam-1", "lq", 10, 30, CODEC, packets)
    return seal_chunk(
        draft,
        site_id="site-0001",
        seq=seq,
        prev_chunk_hash=GENESIS_HASH,
        discontinuity=False,
        signer=SIGNER,
    ).header


@given(st.integers(min_value=0, max_value=2**63))
def test_header_round_trip_is_exact(seq: int) -> None:
    header = _header(seq)
    encoded = header.encode()
    assert ChunkHeader.decode(encoded) == header
    assert ChunkHeader.decode(encoded).encode() == encoded


_msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=12),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(_msgpack_values)
def test_hostile_structures_raise_only_format_errors(value: object) -> None:
    with contextlib.suppress(ChunkFormatError):
        ChunkHeader.decode(msgpack.packb(value, use_bin_type=True))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_hostile_bytes_raise_only_format_errors(data: bytes) -> None:
    with contextlib.suppress(ChunkFormatError):
        ChunkHeader.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=11), _msgpack_values)
def test_one_wrong_field_raises_only_format_errors(index: int, value: object) -> None:
    fields = msgpack.unpackb(_header(3).encode(), raw=False)
    fields[index] = value
    with contextlib.suppress(ChunkFormatError):
        ChunkHeader.decode(msgpack.packb(fields, use_bin_type=True))
