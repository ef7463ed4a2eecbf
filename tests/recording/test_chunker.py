"""The chunker on real H.264 from libx264, and on synthetic audio and records streams."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.chunker import Chunker, CutChunk, CutReason
from shared.clock import NS_PER_S
from shared.media import RECORDS_CODEC, CodecConfig, MediaKind, MediaPacket
from tests.recording.h264_samples import BASE_NS, decode_frame_count, encode, moving_box, static

MS = 1_000_000


def run(chunker: Chunker, packets: list[MediaPacket]) -> list[CutChunk]:
    cuts: list[CutChunk] = []
    for packet in packets:
        cuts.extend(chunker.push(packet))
    last = chunker.flush()
    if last is not None:
        cuts.append(last)
    return cuts


def test_one_second_gops_give_one_gop_per_chunk_and_each_chunk_decodes_alone() -> None:
    clip = encode(moving_box(50), fps=10, gop=10)
    cuts = run(Chunker("cam1", "lq", clip.codec), clip.packets)

    assert len(cuts) == 5
    for index, cut in enumerate(cuts):
        packets = cut.draft.packets
        assert packets[0].keyframe
        assert [p.keyframe for p in packets].count(True) == 1
        assert len(packets) == 10
        assert cut.draft.start_ns == BASE_NS + index * NS_PER_S
        assert cut.draft.codec == clip.codec
        # A fresh decoder with only the codec extradata decodes every picture of the chunk.
        assert decode_frame_count(clip.codec, packets) == 10
    # Continuous: each chunk ends where the next begins; the last ends after its last frame.
    for before, after in itertools.pairwise(cuts):
        assert before.draft.end_ns == after.draft.start_ns
        assert not after.after_discontinuity
        assert before.reason is CutReason.BOUNDARY
    assert cuts[-1].draft.end_ns == BASE_NS + 5 * NS_PER_S
    assert cuts[-1].reason is CutReason.FLUSH
    # The first chunk of a chunker never claims to continue what the store already holds.
    assert cuts[0].after_discontinuity
    assert [p for c in cuts for p in c.draft.packets] == clip.packets


def test_short_gops_are_merged_up_to_the_minimum_chunk_length() -> None:
    clip = encode(moving_box(40), fps=10, gop=5)  # 0.5 s GOPs
    cuts = run(Chunker("cam1", "lq", clip.codec), clip.packets)

    assert [len(c.draft.packets) for c in cuts] == [10, 10, 10, 10]
    for cut in cuts:
        assert [i for i, p in enumerate(cut.draft.packets) if p.keyframe] == [0, 5]
        assert cut.draft.end_ns - cut.draft.start_ns == NS_PER_S


def test_longer_minimum_groups_gops() -> None:
    clip = encode(static(60), fps=10, gop=10)
    cuts = run(Chunker("cam1", "lq", clip.codec, min_chunk_ns=3 * NS_PER_S), clip.packets)
    assert [len(c.draft.packets) for c in cuts] == [30, 30]


def test_packets_before_the_first_keyframe_are_dropped_and_counted() -> None:
    clip = encode(static(30), fps=10, gop=10)
    chunker = Chunker("cam1", "lq", clip.codec)
    cuts = run(chunker, clip.packets[3:])

    assert chunker.stats.packets_dropped == 7
    assert cuts[0].draft.packets[0] == clip.packets[10]
    assert chunker.stats.chunks_cut == 2


def test_a_forward_jump_closes_the_chunk_and_marks_the_next() -> None:
    clip = encode(static(40), fps=10, gop=10)
    gap_ns = 30 * NS_PER_S
    # The source lost 30 s (camera froze) before the third GOP.
    packets = clip.packets[:20] + [
        dataclasses.replace(p, wall_ns=p.wall_ns + gap_ns) for p in clip.packets[20:]
    ]
    chunker = Chunker("cam1", "lq", clip.codec)
    cuts = run(chunker, packets)

    assert [len(c.draft.packets) for c in cuts] == [10, 10, 10, 10]
    assert [c.after_discontinuity for c in cuts] == [True, False, True, False]
    assert cuts[1].reason is CutReason.DISCONTINUITY
    # Not continuous: the chunk ends after its last frame, not at the next chunk's start.
    assert cuts[1].draft.end_ns == packets[19].wall_ns + 100 * MS
    assert chunker.stats.discontinuities == 1


def test_a_jump_at_a_non_keyframe_waits_for_the_next_keyframe() -> None:
    clip = encode(static(40), fps=10, gop=10)
    packets = clip.packets[:15] + [
        dataclasses.replace(p, wall_ns=p.wall_ns - 20 * NS_PER_S) for p in clip.packets[15:]
    ]
    chunker = Chunker("cam1", "lq", clip.codec)
    cuts = run(chunker, packets)

    assert [len(c.draft.packets) for c in cuts] == [10, 5, 10, 10]
    assert [c.after_discontinuity for c in cuts] == [True, False, True, False]
    assert chunker.stats.packets_dropped == 5  # packets 15..19, until the keyframe at 20
    assert cuts[2].draft.packets[0].keyframe


def test_small_steps_back_within_the_reorder_tolerance_are_not_jumps() -> None:
    clip = encode(static(20), fps=10, gop=10)
    # B-frame-like reordering: swap the presentation times of two neighbours.
    packets = list(clip.packets)
    packets[3], packets[4] = (
        dataclasses.replace(packets[3], wall_ns=packets[4].wall_ns),
        dataclasses.replace(packets[4], wall_ns=packets[3].wall_ns),
    )
    chunker = Chunker("cam1", "lq", clip.codec)
    cuts = run(chunker, packets)
    assert chunker.stats.discontinuities == 0
    assert [len(c.draft.packets) for c in cuts] == [10, 10]


def test_a_stream_without_keyframes_is_cut_at_the_limit_and_waits_for_one() -> None:
    clip = encode(moving_box(80), fps=10, gop=40)  # 4 s GOPs: "broken" for a 2.5 s limit
    chunker = Chunker("cam1", "lq", clip.codec, max_chunk_ns=2_500 * MS)
    cuts = run(chunker, clip.packets)

    assert [len(c.draft.packets) for c in cuts] == [26, 26]
    assert [c.reason for c in cuts] == [CutReason.LIMIT, CutReason.LIMIT]
    assert [c.after_discontinuity for c in cuts] == [True, True]
    assert cuts[1].draft.packets[0] == clip.packets[40]
    assert chunker.stats.limit_cuts == 2
    assert chunker.stats.packets_dropped == 28  # 26..39 and 66..79
    assert chunker.flush() is None
    for cut in cuts:
        assert decode_frame_count(clip.codec, cut.draft.packets) == 26
        assert cut.draft.end_ns - cut.draft.start_ns == 2_600 * MS


def test_byte_limit_cuts_a_keyframe_starved_chunk() -> None:
    clip = encode(moving_box(30), fps=10, gop=30)
    limit = sum(len(p.data) for p in clip.packets[:8])
    chunker = Chunker("cam1", "lq", clip.codec, max_chunk_bytes=limit)
    cuts = run(chunker, clip.packets)
    assert len(cuts) == 1
    assert len(cuts[0].draft.packets) == 8
    assert cuts[0].draft.payload_size <= limit
    assert chunker.stats.packets_dropped == 22


def test_short_gops_stop_merging_before_a_limit_would_cut_into_a_gop() -> None:
    clip = encode(moving_box(40), fps=10, gop=5)
    gops = [clip.packets[i : i + 5] for i in range(0, 40, 5)]
    largest = max(sum(len(p.data) for p in gop) for gop in gops)
    limit = largest + largest // 2  # one GOP always fits, two not always
    chunker = Chunker("cam1", "lq", clip.codec, max_chunk_bytes=limit)
    cuts = run(chunker, clip.packets)
    # The first GOP (with the encoder's banner) is large: it goes alone; the rest pair up.
    assert [len(c.draft.packets) for c in cuts] == [5, 10, 10, 10, 5]
    assert all(c.draft.payload_size <= limit for c in cuts)
    assert all(c.draft.packets[0].keyframe for c in cuts)
    assert chunker.stats.packets_dropped == 0
    assert chunker.stats.limit_cuts == 0


def test_a_packet_of_another_stream_is_refused() -> None:
    clip = encode(static(2))
    chunker = Chunker("cam1", "hq", clip.codec)
    with pytest.raises(ValueError, match="'lq'"):
        chunker.push(clip.packets[0])


def test_limits_must_be_consistent() -> None:
    clip = encode(static(2))
    with pytest.raises(ValueError, match="max_chunk_ns"):
        Chunker("cam1", "lq", clip.codec, min_chunk_ns=5 * NS_PER_S, max_chunk_ns=NS_PER_S)


# -- audio and records -----------------------------------------------------------------------

AUDIO = CodecConfig(MediaKind.AUDIO, "aac", 1, 48_000, sample_rate=48_000, channels=1)
SAMPLES_PER_PACKET = 1024


def audio_packets(count: int, *, start: int = 0) -> list[MediaPacket]:
    return [
        MediaPacket(
            stream="audio",
            pts=i * SAMPLES_PER_PACKET,
            dts=i * SAMPLES_PER_PACKET,
            duration=SAMPLES_PER_PACKET,
            keyframe=False,  # any audio packet may start a chunk, flagged or not
            data=bytes([i % 256]) * 200,
            wall_ns=BASE_NS + i * SAMPLES_PER_PACKET * NS_PER_S // 48_000,
        )
        for i in range(start, start + count)
    ]


def test_audio_is_cut_on_time_at_any_packet() -> None:
    packets = audio_packets(240)  # about 5.1 s
    chunker = Chunker("mic1", "audio", AUDIO)
    cuts = run(chunker, packets)

    assert chunker.stats.packets_dropped == 0
    assert [p for c in cuts for p in c.draft.packets] == packets
    for cut in cuts[:-1]:
        length = cut.draft.end_ns - cut.draft.start_ns
        assert NS_PER_S - 50 * MS <= length < NS_PER_S + 25 * MS
    for before, after in itertools.pairwise(cuts):
        assert before.draft.end_ns == after.draft.start_ns
        assert not after.after_discontinuity
    # The last chunk ends after its last packet's duration.
    last = packets[-1]
    assert cuts[-1].draft.end_ns == last.wall_ns + SAMPLES_PER_PACKET * NS_PER_S // 48_000


def test_audio_gap_is_a_discontinuity() -> None:
    packets = audio_packets(30) + audio_packets(30, start=400)  # about 7 s missing
    cuts = run(Chunker("mic1", "audio", AUDIO), packets)
    assert [c.after_discontinuity for c in cuts] == [True, True]
    assert cuts[0].reason is CutReason.DISCONTINUITY


RECORDS = CodecConfig(MediaKind.METADATA, RECORDS_CODEC, 1, NS_PER_S)


def record(at_s: float) -> MediaPacket:
    at_ns = BASE_NS + round(at_s * NS_PER_S)
    return MediaPacket("motion", at_ns, at_ns, 0, True, b"\x90", at_ns)


def test_sparse_records_are_closed_by_poll_and_stay_continuous() -> None:
    chunker = Chunker("cam1", "motion", RECORDS)  # 10 s chunks by default
    assert chunker.push(record(0.0)) == []
    assert chunker.push(record(1.0)) == []
    assert chunker.poll(BASE_NS + 10 * NS_PER_S) is None  # within the grace period
    cut = chunker.poll(BASE_NS + 11 * NS_PER_S)
    assert cut is not None
    assert cut.reason is CutReason.POLL
    assert (cut.draft.start_ns, cut.draft.end_ns) == (BASE_NS, BASE_NS + 10 * NS_PER_S)
    assert len(cut.draft.packets) == 2
    # An hour of silence in a records stream is not a gap in the recording.
    assert chunker.push(record(3600.0)) == []
    later = chunker.push(record(3615.0))
    assert len(later) == 1
    assert not later[0].after_discontinuity
    assert later[0].reason is CutReason.BOUNDARY


def test_poll_never_closes_video() -> None:
    clip = encode(static(5))
    chunker = Chunker("cam1", "lq", clip.codec)
    for packet in clip.packets:
        chunker.push(packet)
    assert chunker.poll(BASE_NS + 3600 * NS_PER_S) is None
    assert chunker.has_open_chunk


# -- properties ------------------------------------------------------------------------------

VIDEO = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000)


@st.composite
def video_streams(draw: st.DrawFn) -> list[MediaPacket]:
    steps = draw(
        st.lists(
            st.tuples(
                st.booleans(),  # keyframe
                st.sampled_from([33 * MS, 40 * MS, 100 * MS, -2 * NS_PER_S, 7 * NS_PER_S]),
                st.integers(min_value=1, max_value=5000),  # bytes
            ),
            max_size=200,
        )
    )
    packets = []
    wall_ns = BASE_NS
    for index, (keyframe, step_ns, size) in enumerate(steps):
        wall_ns += step_ns
        packets.append(MediaPacket("hq", index, index, 0, keyframe, bytes(size), wall_ns))
    return packets


@settings(max_examples=200, deadline=None)
@given(
    packets=video_streams(),
    max_chunk_bytes=st.sampled_from([8_000, 50_000, 1 << 30]),
)
def test_video_chunks_always_start_on_keyframes_and_keep_packet_order(
    packets: list[MediaPacket], max_chunk_bytes: int
) -> None:
    chunker = Chunker(
        "cam1", "hq", VIDEO, max_chunk_bytes=max_chunk_bytes, max_chunk_ns=3 * NS_PER_S
    )
    cuts = run(chunker, packets)
    kept = [p for c in cuts for p in c.draft.packets]
    stats = chunker.stats

    assert len(kept) + stats.packets_dropped == len(packets) == stats.packets_in
    assert all(p in packets for p in kept)
    assert [packets.index(p) for p in kept] == sorted(packets.index(p) for p in kept)
    for cut in cuts:
        draft = cut.draft
        assert draft.packets
        assert draft.packets[0].keyframe
        assert draft.start_ns == draft.packets[0].wall_ns <= draft.end_ns
        # A chunk over the byte limit can only be a single oversized keyframe's GOP start.
        assert draft.payload_size <= max_chunk_bytes or len(draft.packets) == 1
    if cuts:
        assert cuts[0].after_discontinuity
    assert stats.chunks_cut == len(cuts)
