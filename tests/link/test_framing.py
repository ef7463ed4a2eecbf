"""Frames cut out of a byte stream, in pieces of any size."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.link.errors import ErrorCode, ProtocolError
from shared.link.framing import FrameReader, encode_frame


@given(
    bodies=st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=7000), max_size=30),
)
def test_any_split_of_the_stream_gives_the_same_frames(
    bodies: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(b) for b in bodies)
    points = sorted({c for c in cuts if c < len(stream)} | {0, len(stream)})
    reader = FrameReader(max_frame_bytes=1000)
    received: list[bytes] = []
    for start, end in itertools.pairwise(points):
        received += reader.feed(stream[start:end])
    assert received == bodies
    assert reader.buffered_bytes == 0


def test_byte_at_a_time() -> None:
    stream = encode_frame(b"hello") + encode_frame(b"x" * 70_000)
    reader = FrameReader(max_frame_bytes=100_000)
    received: list[bytes] = []
    for byte in stream:
        received += reader.feed(bytes([byte]))
    assert received == [b"hello", b"x" * 70_000]


def test_an_oversized_frame_is_refused_from_its_prefix_alone() -> None:
    reader = FrameReader(max_frame_bytes=16_384)
    with pytest.raises(ProtocolError) as caught:
        reader.feed((16_385).to_bytes(4, "big"))
    assert caught.value.code is ErrorCode.OVERSIZED
    assert "16385" in caught.value.message
    assert "16384" in caught.value.message


def test_an_empty_frame_is_malformed() -> None:
    with pytest.raises(ProtocolError) as caught:
        FrameReader().feed(bytes(4))
    assert caught.value.code is ErrorCode.MALFORMED
