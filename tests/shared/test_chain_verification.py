"""Chain verification against real H.264 chunks, with a catalogue of tampering cases.

The clip is encoded once per module with libx264 (160x90, 8 fps, one keyframe every 8
frames), cut at keyframes into one-GOP drafts, then sealed into chains by the tests. Every
tamper case asserts the exact (kind, seq) of each problem the verifier reports, so a case
that cascades into extra findings fails as surely as one that is missed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Sequence
from fractions import Fraction

import av
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.chain_verification import (
    ChainLink,
    FindingKind,
    RawChunk,
    StreamVerification,
    verify_stream,
)
from shared.chunk import GENESIS_HASH, ChunkDraft, ChunkHeader, SignedChunk, seal_chunk
from shared.media import CodecConfig, MediaKind, MediaPacket
from shared.signing import SiteSigner

SITE = "site-a"
DEVICE = "cam-1"
STREAM = "hq"
WIDTH, HEIGHT, FPS, GOP_FRAMES = 160, 90, 8, 8
CLIP_GOPS = 6
BASE_NS = 1_700_000_000 * 1_000_000_000
FRAME_NS = 1_000_000_000 // FPS
GOP_NS = GOP_FRAMES * FRAME_NS
CODEC = CodecConfig(MediaKind.VIDEO, "h264", 1, FPS, width=WIDTH, height=HEIGHT)

Problems = list[tuple[FindingKind, int | None]]


# --- the clip and chains ----------------------------------------------------------------------


@functools.cache
def encoded_gops() -> tuple[tuple[tuple[bool, bytes], ...], ...]:
    """The clip's packets (keyframe flag, bytes) grouped by GOP; encoded once per run."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height = WIDTH, HEIGHT
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, FPS)
    encoder.framerate = Fraction(FPS, 1)
    encoder.gop_size = GOP_FRAMES
    encoder.max_b_frames = 0
    encoder.options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "x264-params": f"keyint={GOP_FRAMES}:min-keyint={GOP_FRAMES}:scenecut=0",
    }
    packets = []
    for index in range(CLIP_GOPS * GOP_FRAMES):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for plane_index, plane in enumerate(frame.planes):
            # A moving diagonal ramp, so P-frames carry real motion.
            row = bytes((x + 3 * index + 40 * plane_index) & 0xFF for x in range(plane.line_size))
            plane.update(b"".join(row[y:] + row[:y] for y in range(plane.height)))
        frame.pts = index
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    gops: list[list[tuple[bool, bytes]]] = []
    for packet in packets:
        if packet.is_keyframe:
            gops.append([])
        gops[-1].append((bool(packet.is_keyframe), bytes(packet)))
    assert len(gops) == CLIP_GOPS
    assert all(len(g) == GOP_FRAMES for g in gops)
    return tuple(tuple(g) for g in gops)


@functools.cache
def site_signer() -> SiteSigner:
    return SiteSigner.generate()


@functools.cache
def attacker_signer() -> SiteSigner:
    return SiteSigner.generate()


def draft(index: int, *, start_ns: int, device: str = DEVICE) -> ChunkDraft:
    """The `index`-th GOP of an endless clip (the encoded GOPs repeat) starting at `start_ns`."""
    gop = encoded_gops()[index % CLIP_GOPS]
    first_pts = index * GOP_FRAMES
    packets = tuple(
        MediaPacket(STREAM, first_pts + i, first_pts + i, 1, key, data, start_ns + i * FRAME_NS)
        for i, (key, data) in enumerate(gop)
    )
    return ChunkDraft(device, STREAM, start_ns, start_ns + GOP_NS, CODEC, packets)


def build_chain(
    length: int,
    *,
    signer: SiteSigner | None = None,
    device: str = DEVICE,
    gaps_s: dict[int, int] | None = None,
    clock_steps_s: dict[int, int] | None = None,
) -> list[SignedChunk]:
    """A chain of `length` chunks from seq 0. `gaps_s` maps seq -> declared gap before it;
    `clock_steps_s` maps seq -> seconds the site clock jumped back before it (undeclared)."""
    signer = signer or site_signer()
    gaps_s = gaps_s or {}
    clock_steps_s = clock_steps_s or {}
    chain: list[SignedChunk] = []
    start_ns = BASE_NS
    prev = GENESIS_HASH
    for seq in range(length):
        start_ns += gaps_s.get(seq, 0) * 1_000_000_000 - clock_steps_s.get(seq, 0) * 1_000_000_000
        chunk = seal_chunk(
            draft(seq, start_ns=start_ns, device=device),
            site_id=SITE,
            seq=seq,
            prev_chunk_hash=prev,
            discontinuity=seq in gaps_s,
            signer=signer,
        )
        chain.append(chunk)
        prev = chunk.chunk_hash
        start_ns += GOP_NS
    return chain


@functools.cache
def reference_chain() -> tuple[SignedChunk, ...]:
    return tuple(build_chain(10))


def chain() -> list[SignedChunk]:
    return list(reference_chain())


def verify(chunks: Sequence[object], **options: object) -> StreamVerification:
    result = verify_stream(
        chunks,  # type: ignore[arg-type]  # tests also feed deliberately ill-typed records
        public_key=site_signer().public_key,
        site_id=SITE,
        device_id=DEVICE,
        stream=STREAM,
        **options,  # type: ignore[arg-type]
    )
    assert len(result.verdicts) == len(chunks)
    return result


def problems(result: StreamVerification) -> Problems:
    return [(f.kind, f.seq) for f in result.problems]


def link(chunk: SignedChunk) -> ChainLink:
    return ChainLink(chunk.header.seq, chunk.chunk_hash)


def with_header(
    chunk: SignedChunk, *, signer: SiteSigner | None = None, **fields: object
) -> SignedChunk:
    """The chunk with header fields changed; re-signed by `signer`, else the old signature."""
    header = dataclasses.replace(chunk.header, **fields)  # type: ignore[arg-type]
    header_bytes = header.encode()
    signature = signer.sign(header_bytes) if signer else chunk.signature
    return SignedChunk(header_bytes, signature, chunk.payload, header)


def flip(data: bytes, index: int, xor: int = 0x01) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ xor]) + data[index + 1 :]


# --- intact streams -------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 5, 12])
def test_intact_stream_has_no_finding_at_all(length: int) -> None:
    chunks = build_chain(length)
    result = verify(chunks, expected_head=link(chunks[-1]))
    assert result.ok
    assert result.findings == ()
    assert result.chunks_authentic == length
    assert result.verified_bytes == sum(len(c.payload) for c in chunks)
    assert result.head == link(chunks[-1])


def test_empty_listing_is_ok_and_a_missing_whole_range_is_truncated() -> None:
    assert verify([]).ok
    chunks = chain()
    result = verify([], anchor=link(chunks[3]), expected_head=link(chunks[5]))
    assert problems(result) == [(FindingKind.TRUNCATED, 4)]
    assert result.problems[0].last_seq == 5


def test_consecutive_ranges_verify_with_the_previous_head_as_anchor() -> None:
    chunks = chain()
    first = verify(chunks[:4])
    second = verify(chunks[4:], anchor=first.head, expected_head=link(chunks[-1]))
    assert first.ok
    assert second.ok
    assert second.findings == ()


def test_the_decoded_header_object_is_never_trusted() -> None:
    chunks = chain()
    lying = SignedChunk(
        chunks[2].header_bytes, chunks[2].signature, chunks[2].payload, chunks[7].header
    )
    result = verify([*chunks[:2], lying, *chunks[3:]])
    assert result.ok
    assert result.verdicts[2].seq == 2


# --- the tamper catalogue -------------------------------------------------------------------


def test_one_payload_byte_changed_is_modified() -> None:
    chunks = chain()
    chunks[3] = dataclasses.replace(chunks[3], payload=flip(chunks[3].payload, 500))
    result = verify(chunks)
    assert problems(result) == [(FindingKind.MODIFIED, 3)]
    assert "same length" in result.problems[0].message
    assert result.verdicts[3].kind is FindingKind.MODIFIED
    assert result.chunks_authentic == 9


def test_p_frame_bytes_removed_inside_a_chunk_is_modified() -> None:
    chunks = chain()
    victim = chunks[2]
    sizes = [p.size for p in victim.header.packets]
    assert not victim.header.packets[3].keyframe
    start = sum(sizes[:3])
    payload = victim.payload[:start] + victim.payload[start + sizes[3] :]
    chunks[2] = dataclasses.replace(victim, payload=payload)
    result = verify(chunks)
    assert problems(result) == [(FindingKind.MODIFIED, 2)]
    assert f"{len(payload)} bytes" in result.problems[0].message


def test_header_field_changed_with_the_old_signature_is_modified() -> None:
    chunks = chain()
    shift_ns = 5_000_000_000  # re-time the GOP, as someone faking an alibi would
    header = chunks[3].header
    chunks[3] = with_header(
        chunks[3], start_ns=header.start_ns + shift_ns, end_ns=header.end_ns + shift_ns
    )
    result = verify(chunks)
    assert problems(result) == [(FindingKind.MODIFIED, 3)]
    assert "signature does not verify" in result.problems[0].message


def test_header_of_the_first_chunk_changed_is_one_finding() -> None:
    chunks = chain()
    chunks[0] = with_header(chunks[0], discontinuity=True)
    assert problems(verify(chunks)) == [(FindingKind.MODIFIED, 0)]


def test_header_of_the_last_chunk_changed_is_one_finding_with_or_without_head() -> None:
    chunks = chain()
    head = link(chunks[-1])
    chunks[-1] = with_header(chunks[-1], end_ns=chunks[-1].header.end_ns + 1)
    assert problems(verify(chunks)) == [(FindingKind.MODIFIED, 9)]
    assert problems(verify(chunks, expected_head=head)) == [(FindingKind.MODIFIED, 9)]


def test_modified_header_resigned_with_an_unknown_key_is_modified() -> None:
    chunks = chain()
    chunks[5] = with_header(chunks[5], discontinuity=True, signer=attacker_signer())
    assert problems(verify(chunks)) == [(FindingKind.MODIFIED, 5)]


def test_chunk_signed_by_another_known_key_is_foreign_and_the_original_missing() -> None:
    chunks = chain()
    chunks[5] = with_header(chunks[5], discontinuity=True, signer=attacker_signer())
    result = verify(chunks, other_keys={attacker_signer().public_key: "site-b"})
    assert problems(result) == [(FindingKind.MISSING, 5), (FindingKind.FOREIGN, 5)]
    assert "'site-b'" in result.of_kind(FindingKind.FOREIGN)[0].message


def test_signature_changed_is_modified() -> None:
    chunks = chain()
    chunks[6] = dataclasses.replace(chunks[6], signature=flip(chunks[6].signature, 40))
    assert problems(verify(chunks)) == [(FindingKind.MODIFIED, 6)]


def test_undecodable_header_is_malformed_and_fills_its_slot() -> None:
    chunks: list[object] = list(chain())
    original = reference_chain()[4]
    chunks[4] = RawChunk(original.header_bytes[:-7], original.signature, original.payload)
    result = verify(chunks)
    assert problems(result) == [(FindingKind.MALFORMED, 4)]
    assert result.verdicts[4].seq is None


def test_middle_chunk_dropped_is_missing_with_its_time_range() -> None:
    chunks = chain()
    del chunks[4]
    result = verify(chunks)
    assert problems(result) == [(FindingKind.MISSING, 4)]
    finding = result.problems[0]
    assert finding.last_seq == 4
    assert finding.start_ns == reference_chain()[3].header.end_ns
    assert finding.end_ns == reference_chain()[5].header.start_ns


def test_several_chunks_dropped_are_one_missing_range() -> None:
    chunks = chain()
    del chunks[3:7]
    result = verify(chunks)
    assert problems(result) == [(FindingKind.MISSING, 3)]
    assert result.problems[0].last_seq == 6


def test_first_chunk_dropped_without_anchor_is_a_missing_start() -> None:
    result = verify(chain()[1:])
    assert problems(result) == [(FindingKind.MISSING, 0)]
    assert "start of the stream" in result.problems[0].message


def test_first_chunks_deleted_by_retention_with_anchor_is_no_alarm() -> None:
    chunks = chain()
    tombstones = {c.header.seq: c.chunk_hash for c in chunks[:3]}
    result = verify(chunks[3:], anchor=link(chunks[2]), expired=tombstones)
    assert result.ok
    assert result.findings == ()


def test_first_chunks_deleted_by_retention_without_anchor_are_expired() -> None:
    chunks = chain()
    tombstones = {c.header.seq: c.chunk_hash for c in chunks[:3]}
    result = verify(chunks[3:], expired=tombstones)
    assert result.ok
    assert [(f.kind, f.seq, f.last_seq) for f in result.findings] == [(FindingKind.EXPIRED, 0, 2)]


def test_tombstone_that_does_not_match_the_next_chunk_is_unanchored() -> None:
    chunks = chain()
    tombstones = {0: chunks[0].chunk_hash, 1: chunks[0].chunk_hash}
    result = verify(chunks[2:], expired=tombstones)
    assert problems(result) == [(FindingKind.UNANCHORED, 2)]


def test_range_that_does_not_continue_the_anchor_is_unanchored() -> None:
    chunks = chain()
    result = verify(chunks[4:], anchor=ChainLink(3, chunks[2].chunk_hash))
    assert problems(result) == [(FindingKind.UNANCHORED, 4)]


def test_chunks_between_the_anchor_and_the_first_stored_one_are_missing() -> None:
    chunks = chain()
    result = verify(chunks[5:], anchor=link(chunks[2]))
    assert problems(result) == [(FindingKind.MISSING, 3)]
    assert result.problems[0].last_seq == 4


def test_two_adjacent_chunks_swapped_are_reordered_once() -> None:
    chunks = chain()
    chunks[4], chunks[5] = chunks[5], chunks[4]
    result = verify(chunks)
    assert problems(result) == [(FindingKind.REORDERED, 5)]
    assert result.verdicts[4].kind is FindingKind.REORDERED


def test_two_distant_chunks_swapped_are_both_reordered() -> None:
    chunks = chain()
    chunks[2], chunks[7] = chunks[7], chunks[2]
    assert problems(verify(chunks)) == [(FindingKind.REORDERED, 2), (FindingKind.REORDERED, 7)]


def test_chunk_moved_to_the_end_is_reordered() -> None:
    chunks = chain()
    chunks.append(chunks.pop(3))
    assert problems(verify(chunks)) == [(FindingKind.REORDERED, 3)]


def test_forged_chunk_inserted_between_two_chunks_is_inserted() -> None:
    chunks = chain()
    forged = seal_chunk(
        draft(4, start_ns=chunks[4].header.start_ns),
        site_id=SITE,
        seq=5,
        prev_chunk_hash=chunks[4].chunk_hash,
        discontinuity=False,
        signer=attacker_signer(),
    )
    chunks.insert(5, forged)
    result = verify(chunks)
    assert problems(result) == [(FindingKind.INSERTED, 5)]
    assert result.problems[0].position == 5


def test_validly_signed_chunk_claiming_a_taken_seq_is_inserted() -> None:
    chunks = chain()
    stray = seal_chunk(
        draft(1, start_ns=chunks[5].header.start_ns),
        site_id=SITE,
        seq=5,
        prev_chunk_hash=hashlib.sha256(b"another chain").digest(),
        discontinuity=False,
        signer=site_signer(),
    )
    chunks.insert(6, stray)
    result = verify(chunks)
    assert problems(result) == [(FindingKind.INSERTED, 5)]
    assert result.problems[0].position == 6
    assert result.verdicts[5].kind is FindingKind.AUTHENTIC


def test_validly_signed_chunk_appended_without_linking_is_inserted() -> None:
    chunks = chain()
    stray = seal_chunk(
        draft(10, start_ns=chunks[-1].header.end_ns),
        site_id=SITE,
        seq=10,
        prev_chunk_hash=hashlib.sha256(b"another chain").digest(),
        discontinuity=False,
        signer=site_signer(),
    )
    result = verify([*chunks, stray])
    assert problems(result) == [(FindingKind.INSERTED, 10)]
    assert result.head == link(chunks[-1])


def test_chunk_substituted_by_a_signed_chunk_of_another_chain_is_inserted_and_missing() -> None:
    chunks = chain()
    chunks[5] = seal_chunk(
        draft(1, start_ns=chunks[5].header.start_ns),
        site_id=SITE,
        seq=5,
        prev_chunk_hash=hashlib.sha256(b"another chain").digest(),
        discontinuity=False,
        signer=site_signer(),
    )
    assert problems(verify(chunks)) == [(FindingKind.MISSING, 5), (FindingKind.INSERTED, 5)]


def test_chunk_replayed_from_another_device_of_the_same_site_is_foreign() -> None:
    chunks = chain()
    other_device = build_chain(6, device="cam-2")
    chunks.insert(4, other_device[4])
    result = verify(chunks)
    assert problems(result) == [(FindingKind.FOREIGN, 4)]
    assert "'cam-2'" in result.problems[0].message
    assert result.problems[0].position == 4


def test_chunk_replaced_by_another_devices_chunk_is_foreign_and_missing() -> None:
    chunks = chain()
    chunks[4] = build_chain(6, device="cam-2")[4]
    assert problems(verify(chunks)) == [(FindingKind.MISSING, 4), (FindingKind.FOREIGN, 4)]


def test_duplicated_chunk_is_inserted() -> None:
    chunks = chain()
    chunks.insert(4, chunks[3])
    result = verify(chunks)
    assert problems(result) == [(FindingKind.INSERTED, 3)]
    assert result.problems[0].position == 4
    assert "identical copy" in result.problems[0].message


def test_truncated_tail_is_detected_against_the_expected_head() -> None:
    chunks = chain()
    result = verify(chunks[:8], expected_head=link(chunks[-1]))
    assert problems(result) == [(FindingKind.TRUNCATED, 8)]
    assert result.problems[0].last_seq == 9
    assert result.problems[0].start_ns == chunks[7].header.end_ns


def test_truncated_tail_without_an_expected_head_cannot_be_seen() -> None:
    assert verify(chain()[:8]).ok


def test_chunks_past_the_expected_head_are_inserted() -> None:
    chunks = chain()
    result = verify(chunks, expected_head=link(chunks[7]))
    assert problems(result) == [(FindingKind.INSERTED, 8)]
    assert result.problems[0].last_seq == 9


def test_tail_replaced_after_the_expected_head_was_taken() -> None:
    chunks = chain()
    head = link(chunks[-1])
    forked = chunks[:9]
    forked.append(
        seal_chunk(
            draft(2, start_ns=chunks[9].header.start_ns),
            site_id=SITE,
            seq=9,
            prev_chunk_hash=chunks[8].chunk_hash,
            discontinuity=False,
            signer=site_signer(),
        )
    )
    assert problems(verify(forked, expected_head=head)) == [(FindingKind.INSERTED, 9)]


def test_declared_recording_gap_is_information_not_an_alarm() -> None:
    chunks = build_chain(8, gaps_s={3: 120, 6: 5})
    result = verify(chunks, expected_head=link(chunks[-1]))
    assert result.ok
    gaps = result.of_kind(FindingKind.RECORDING_GAP)
    assert [(f.seq, f.start_ns, f.end_ns) for f in gaps] == [
        (seq, chunks[seq - 1].header.end_ns, chunks[seq].header.start_ns) for seq in (3, 6)
    ]
    assert chunks[3].header.start_ns - chunks[2].header.end_ns == 120 * 1_000_000_000
    assert "120.000 s" in gaps[0].message


def test_declared_gap_never_excuses_a_removed_chunk() -> None:
    chunks = build_chain(8, gaps_s={4: 60})
    del chunks[3]
    assert problems(verify(chunks)) == [(FindingKind.MISSING, 3)]


@pytest.mark.parametrize("order", ["seq", "signed time"])
def test_site_clock_stepping_back_is_no_alarm_in_either_listing_order(order: str) -> None:
    chunks = build_chain(8, clock_steps_s={5: 3})
    if order == "signed time":
        chunks.sort(key=lambda c: (c.header.start_ns, c.header.seq))
        assert [c.header.seq for c in chunks] != list(range(8))
    result = verify(chunks)
    assert result.ok
    assert [(f.kind, f.seq) for f in result.findings] == [(FindingKind.CLOCK_STEP, 5)]


def test_garbage_records_never_raise() -> None:
    genuine = chain()
    records: list[object] = [
        RawChunk(b"", b"", b""),
        RawChunk(b"\xc1" * 40, b"x" * 64, b""),
        RawChunk(
            msgpack.packb([1, "a", "b", "c", 0, 0, 0, False, [[1]] * 9, [], b"", b""]), b"", b""
        ),
        object(),
        dataclasses.replace(genuine[0], signature=None),  # type: ignore[arg-type]
        dataclasses.replace(genuine[1], payload="text"),  # type: ignore[arg-type]
        RawChunk(bytearray(genuine[2].header_bytes), genuine[2].signature, genuine[2].payload),  # type: ignore[arg-type]
    ]
    result = verify(records, expired={"x": b"1", 3: b"short"})
    assert not result.ok
    assert [v.kind for v in result.verdicts[:4]] == [FindingKind.MALFORMED] * 4


# --- properties -----------------------------------------------------------------------------

BOUNDED = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@BOUNDED
@given(
    part=st.sampled_from(["header_bytes", "signature", "payload"]),
    victim=st.integers(0, 9),
    offset=st.integers(0, 1 << 20),
    xor=st.integers(1, 255),
    with_head=st.booleans(),
)
def test_any_byte_flip_is_detected_as_one_problem_at_that_chunk(
    part: str, victim: int, offset: int, xor: int, with_head: bool
) -> None:
    chunks: list[object] = list(chain())
    original = reference_chain()[victim]
    data: bytes = getattr(original, part)
    tampered = RawChunk(
        **{
            "header_bytes": original.header_bytes,
            "signature": original.signature,
            "payload": original.payload,
            part: flip(data, offset, xor),
        }
    )
    chunks[victim] = tampered
    head = link(reference_chain()[-1]) if with_head else None
    result = verify(chunks, expected_head=head)
    assert not result.ok
    assert result.verdicts[victim].kind is not FindingKind.AUTHENTIC
    assert [f.position for f in result.problems] == [victim]


@BOUNDED
@given(
    length=st.integers(1, 16),
    gaps=st.sets(st.integers(0, 15)),
    retained=st.integers(0, 16),
    data=st.data(),
)
def test_intact_chains_with_declared_gaps_always_verify(
    length: int, gaps: set[int], retained: int, data: st.DataObject
) -> None:
    chunks = build_chain(length, gaps_s={seq: 7 for seq in gaps if seq < length})
    # Retention may have deleted a prefix; the verifier gets the horizon and the tombstones.
    deleted = min(retained, length - 1)
    anchor = link(chunks[deleted - 1]) if deleted and data.draw(st.booleans()) else None
    tombstones = {c.header.seq: c.chunk_hash for c in chunks[:deleted]}
    result = verify(
        chunks[deleted:], anchor=anchor, expired=tombstones, expected_head=link(chunks[-1])
    )
    assert result.ok, result.problems
    assert result.chunks_authentic == length - deleted


@BOUNDED
@given(victim=st.integers(0, 9))
def test_any_dropped_chunk_is_one_missing_or_truncated_range(victim: int) -> None:
    chunks = chain()
    del chunks[victim]
    result = verify(chunks, expected_head=link(reference_chain()[-1]))
    expected = FindingKind.TRUNCATED if victim == 9 else FindingKind.MISSING
    assert problems(result) == [(expected, victim)]


@BOUNDED
@given(first=st.integers(0, 9), second=st.integers(0, 9))
def test_any_swap_is_reported_as_reordering_only(first: int, second: int) -> None:
    chunks = chain()
    chunks[first], chunks[second] = chunks[second], chunks[first]
    result = verify(chunks)
    if first == second:
        assert result.findings == ()
    else:
        assert problems(result)
        assert {kind for kind, _ in problems(result)} == {FindingKind.REORDERED}


def _header_like() -> st.SearchStrategy[bytes]:
    scalar = st.one_of(
        st.integers(-(2**63), 2**64 - 1),
        st.booleans(),
        st.none(),
        st.text(max_size=8),
        st.binary(max_size=40),
    )
    nested = st.recursive(scalar, lambda inner: st.lists(inner, max_size=12), max_leaves=40)
    return st.lists(nested, min_size=12, max_size=12).map(
        lambda fields: msgpack.packb([1, *fields[1:]], use_bin_type=True)
    )


@BOUNDED
@given(
    inserts=st.lists(
        st.tuples(
            st.integers(0, 10),
            st.one_of(st.binary(max_size=300), _header_like()),
            st.binary(max_size=70),
            st.binary(max_size=50),
        ),
        max_size=4,
    ),
    anchor_seq=st.one_of(st.none(), st.integers(-5, 20)),
    head_seq=st.one_of(st.none(), st.integers(-5, 20)),
    tombstone_seqs=st.lists(st.integers(-3, 20), max_size=5),
)
def test_garbage_anywhere_never_raises(
    inserts: list[tuple[int, bytes, bytes, bytes]],
    anchor_seq: int | None,
    head_seq: int | None,
    tombstone_seqs: list[int],
) -> None:
    chunks: list[object] = list(chain())
    for where, header_bytes, signature, payload in inserts:
        chunks.insert(where, RawChunk(header_bytes, signature, payload))
    junk = hashlib.sha256(b"junk").digest()
    result = verify(
        chunks,
        anchor=None if anchor_seq is None else ChainLink(anchor_seq, junk),
        expected_head=None if head_seq is None else ChainLink(head_seq, junk),
        expired={seq: junk for seq in tombstone_seqs},
    )
    if inserts:
        assert not result.ok
    for finding in result.findings:
        assert finding.message


def test_header_decoder_rejects_what_the_verifier_calls_malformed() -> None:
    # The verifier decodes header bytes itself; this pins that it agrees with the contract.
    original = reference_chain()[0]
    with pytest.raises(ValueError, match="chunk header"):
        ChunkHeader.decode(original.header_bytes[:-3])
