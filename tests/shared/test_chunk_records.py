"""The chunk download format: records round-trip in pieces of any size, and every broken or
oversized record is refused with a message naming it."""

from __future__ import annotations

import io
from pathlib import Path

import msgpack
import pytest

from shared.chunk_records import (
    ChunkRecordError,
    ChunkRecordReader,
    encode_chunk_record,
    read_chunk_records,
)
from shared.signing import SiteSigner
from tests.store.store_chunks import ChunkFactory


@pytest.fixture
def factory(tmp_path: Path) -> ChunkFactory:
    return ChunkFactory(SiteSigner.load_or_create(tmp_path / "site.key"))


def _record(fields: object) -> bytes:
    body: bytes = msgpack.packb(fields, use_bin_type=True)
    return len(body).to_bytes(4, "big") + body


def test_records_round_trip_fed_one_byte_at_a_time(factory: ChunkFactory) -> None:
    chunks = factory.run(3, payload_size=700)
    stream = b"".join(encode_chunk_record(chunk) for chunk in chunks)
    reader = ChunkRecordReader()
    out = []
    for index in range(len(stream)):
        out += reader.feed(stream[index : index + 1])
    reader.finish()
    assert out == chunks
    assert (reader.records_read, reader.bytes_read) == (3, len(stream))


def test_a_file_reads_back_whole(factory: ChunkFactory) -> None:
    chunks = factory.run(4, payload_size=300_000)  # records larger than one read
    stream = b"".join(encode_chunk_record(chunk) for chunk in chunks)
    assert list(read_chunk_records(io.BytesIO(stream))) == chunks
    assert list(read_chunk_records(io.BytesIO(b""))) == []


def test_a_record_cut_off_at_the_end_is_an_error(factory: ChunkFactory) -> None:
    first, second = (encode_chunk_record(c) for c in factory.run(2))
    with pytest.raises(
        ChunkRecordError, match=rf"chunk record 2 \(at byte {len(first)}\) is cut off after 10 "
    ):
        list(read_chunk_records(io.BytesIO(first + second[:10])))


def test_an_oversized_record_is_refused_before_it_is_buffered(factory: ChunkFactory) -> None:
    record = encode_chunk_record(factory.make(start_ns=0, payload_size=5000))
    reader = ChunkRecordReader(max_record_bytes=4096)
    with pytest.raises(
        ChunkRecordError,
        match=r"chunk record 1 \(at byte 0\) announces \d+ bytes; the limit is 4096",
    ):
        reader.feed(record[:4])


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (b"\x00\x00\x00\x00", "has length 0"),
        (b"\x00\x00\x00\x02\xc1\xc1", "is not valid msgpack"),
        (_record([b"a", b"b"]), "must be an array of 3 fields"),
        (_record({"header": b""}), "is not valid msgpack"),  # maps are not allowed at all
        (_record([b"h", "text", b"p"]), "is not valid msgpack"),  # nor strings
        (_record([b"h", 5, b"p"]), "field signature must be binary, not int"),
        (_record([b"h", bytes(63), b"p"]), "signature is 63 bytes, not 64"),
        (_record([b"\x93\x01\x02\x03", bytes(64), b"p"]), "has a malformed header: chunk header"),
    ],
)
def test_malformed_records_are_named(record: bytes, problem: str) -> None:
    reader = ChunkRecordReader()
    with pytest.raises(ChunkRecordError) as raised:
        reader.feed(record)
    assert str(raised.value).startswith(f"chunk record 1 (at byte 0) {problem}")


def test_a_payload_of_another_size_than_its_header_names_is_refused(
    factory: ChunkFactory,
) -> None:
    chunk = factory.make(start_ns=0, payload_size=100)
    record = _record([chunk.header_bytes, chunk.signature, chunk.payload[:99]])
    reader = ChunkRecordReader()
    reader.feed(encode_chunk_record(chunk))
    with pytest.raises(
        ChunkRecordError,
        match=r"chunk record 2 \(at byte \d+\) payload is 99 bytes; its header names 100",
    ):
        reader.feed(record)
