"""Motion detection on real H.264: a moving box is found, a still scene is not."""

from __future__ import annotations

import dataclasses

import pytest

from agent.motion import (
    MOTION_RECORDS_CODEC,
    MotionBox,
    MotionDetector,
    MotionEvent,
    MotionOutput,
    MotionRecord,
    MotionRecordError,
)
from shared.clock import NS_PER_S
from shared.media import RECORDS_CODEC, CodecConfig, MediaKind
from tests.recording.h264_samples import (
    BASE_NS,
    HEIGHT,
    Box,
    Clip,
    Picture,
    encode,
    moving_box,
    static,
)

MS = 1_000_000


def detect(clip: Clip, *, hold_s: float = 3.0) -> tuple[list[MotionOutput], MotionDetector]:
    detector = MotionDetector(clip.codec, device_id="cam1", hold_s=hold_s)
    outputs: list[MotionOutput] = []
    for packet in clip.packets:
        outputs.extend(detector.push(packet))
    outputs.extend(detector.finish())
    return outputs, detector


def events(outputs: list[MotionOutput]) -> list[MotionEvent]:
    return [o for o in outputs if isinstance(o, MotionEvent)]


def records(outputs: list[MotionOutput]) -> list[MotionRecord]:
    return [o for o in outputs if isinstance(o, MotionRecord)]


def test_a_static_scene_gives_no_motion() -> None:
    scene = Picture(box=Box(40, 20, 30, 30, luma=200))
    outputs, detector = detect(encode([scene] * 60, fps=10, gop=10))
    assert outputs == []
    stats = detector.stats
    assert stats.frames_decoded == 60
    assert 23 <= stats.frames_analysed <= 25  # about 4 a second over 6 s
    assert stats.bad_packets == 0


def test_a_moving_box_starts_motion_and_stillness_ends_it_after_the_hold() -> None:
    clip = encode(static(20) + moving_box(20) + static(50), fps=10, gop=10)
    outputs, _ = detect(clip, hold_s=1.0)

    started, ended = events(outputs)
    assert started.started
    assert started.device_id == "cam1"
    assert BASE_NS + 2 * NS_PER_S <= started.at_ns <= BASE_NS + 2_500 * MS
    assert not ended.started
    # Ended is dated at the last analysis that saw change (the box leaving at 4 s).
    assert ended.at_ns == BASE_NS + 4 * NS_PER_S
    # ... and is reported once the hold time passed: nothing after it.
    assert outputs[-1] == ended
    assert outputs.index(started) < outputs.index(ended)

    moving = [r for r in records(outputs) if r.boxes]
    assert len(moving) >= 6
    for record in moving:
        assert started.at_ns <= record.at_ns <= ended.at_ns
        assert 0.0 < record.score < 0.2
        for box in record.boxes:
            # The box spans rows 30..54 of 90: the changed cells sit there.
            assert box.top == pytest.approx(30 / HEIGHT, abs=0.04)
            assert box.bottom == pytest.approx(54 / HEIGHT, abs=0.04)
            assert 0.0 <= box.left < box.right <= 1.0


def test_motion_still_on_at_the_end_is_ended_by_finish() -> None:
    clip = encode(static(10) + moving_box(30), fps=10, gop=10)
    detector = MotionDetector(clip.codec, device_id="cam1")
    outputs: list[MotionOutput] = []
    for packet in clip.packets:
        outputs.extend(detector.push(packet))
    assert [e.started for e in events(outputs)] == [True]
    assert detector.motion_active
    finished = detector.finish()
    assert [(e.started, e.at_ns) for e in events(finished)] == [(False, BASE_NS + 3_800 * MS)]
    assert detector.finish() == []
    assert detector.push(clip.packets[0]) == []


def test_one_change_that_stays_is_not_motion() -> None:
    # A box appears once and stays (a parked car): one changed analysis, not two in a row.
    parked = Picture(box=Box(60, 20, 30, 30))
    outputs, _ = detect(encode(static(20) + [parked] * 30, fps=10, gop=10))
    assert outputs == []


def test_a_brightness_change_of_the_whole_picture_is_not_motion() -> None:
    dim = Picture(background=90, box=Box(40, 20, 30, 30, luma=170))
    bright = Picture(background=120, box=Box(40, 20, 30, 30, luma=200))
    outputs, _ = detect(encode([dim] * 20 + [bright] * 20 + [dim] * 20, fps=10, gop=10))
    assert outputs == []


def test_a_jump_in_time_is_not_compared_across() -> None:
    clip = encode(static(20) + [Picture(background=160, box=Box(0, 0, 80, 45))] * 20)
    packets = clip.packets[:20] + [
        dataclasses.replace(p, wall_ns=p.wall_ns + 60 * NS_PER_S) for p in clip.packets[20:]
    ]
    outputs, _ = detect(Clip(clip.codec, packets, clip.fps))
    assert outputs == []


def test_a_jump_in_time_ends_motion_that_was_on() -> None:
    clip = encode(static(10) + moving_box(40), fps=10, gop=10)
    packets = clip.packets[:30] + [
        dataclasses.replace(p, wall_ns=p.wall_ns + 60 * NS_PER_S) for p in clip.packets[30:]
    ]
    outputs, _ = detect(Clip(clip.codec, packets, clip.fps))
    assert [(e.started, e.at_ns <= BASE_NS + 3 * NS_PER_S) for e in events(outputs)] == [
        (True, True),
        (False, True),  # ended at the last motion before the gap
        (True, False),  # the box keeps moving after it: a new start
        (False, False),
    ]


def test_a_bad_packet_is_counted_and_detection_resumes_at_the_next_keyframe() -> None:
    clip = encode(static(20) + moving_box(20) + static(40), fps=10, gop=10)
    packets = list(clip.packets)
    packets[14] = dataclasses.replace(packets[14], data=b"\x00\x00\x00\x01\x65" + bytes(300))
    outputs, detector = detect(Clip(clip.codec, packets, clip.fps), hold_s=1.0)

    stats = detector.stats
    assert stats.bad_packets == 1
    assert stats.packets_skipped == 5  # 15..19, up to the keyframe at 20
    assert [e.started for e in events(outputs)] == [True, False]


def test_packets_before_the_first_keyframe_are_skipped() -> None:
    clip = encode(static(30))
    outputs, detector = detect(Clip(clip.codec, clip.packets[5:], clip.fps))
    assert outputs == []
    assert detector.stats.packets_skipped == 5
    assert detector.stats.frames_decoded == 20


def test_only_video_is_accepted() -> None:
    with pytest.raises(ValueError, match="video"):
        MotionDetector(CodecConfig(MediaKind.AUDIO, "aac", 1, 48_000), device_id="mic")


def test_motion_record_round_trip_and_packet() -> None:
    record = MotionRecord(
        BASE_NS, 0.0423, (MotionBox(0.1, 0.2, 0.3, 0.4), MotionBox(0.5, 0.5, 1.0, 1.0))
    )
    assert MotionRecord.from_bytes(record.to_bytes()) == record
    assert MotionRecord.from_bytes(MotionRecord(5, 0.0, ()).to_bytes()) == MotionRecord(5, 0.0, ())

    packet = record.to_packet("motion")
    assert (packet.stream, packet.pts, packet.wall_ns) == ("motion", BASE_NS, BASE_NS)
    assert MotionRecord.from_bytes(packet.data) == record
    assert MOTION_RECORDS_CODEC.codec == RECORDS_CODEC
    assert MOTION_RECORDS_CODEC.kind is MediaKind.METADATA


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xc1", "not valid msgpack"),
        (b"\x93\x01\x02\x03", "list of 5 fields"),
        (b"\x95\xa4boxs\x01\x00\x00\x90", "tag 'boxs'"),
        (b"\x95\xa6motion\x02\x00\x00\x90", "unsupported version 2"),
        (b"\x95\xa6motion\x01\xff\x00\x90", "at_ns"),
        (b"\x95\xa6motion\x01\x00\x02\x90", "score"),
        (b"\x95\xa6motion\x01\x00\x00\x91\x94\x01\x00\x00\x00", "box 0 is malformed"),
        (bytes(5000), "over 4096"),
    ],
)
def test_motion_record_from_bytes_names_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(MotionRecordError, match=message):
        MotionRecord.from_bytes(data)
