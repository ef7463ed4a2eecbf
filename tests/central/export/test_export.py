"""Exports of real recordings: the plan, files that ffprobe and PyAV read and decode across
both switches with no timestamp gap, showing the right picture at the right time, and the
evidence beside them."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from central.export import (
    EvidenceReader,
    ExportError,
    ExportSummary,
    export_range,
)
from central.export.quality_plan import packet_instants_ns
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, ManualClock
from shared.store.chunk_meta import ChunkMeta
from tests.central.export.conftest import EXPORT_END_MS
from tests.central.export.recorded_site import (
    BASE_NS,
    HQ_FPS,
    HQ_OFFSET_NS,
    HQ_SIZE,
    LQ_FPS,
    LQ_SIZE,
    MS,
    SITE,
    RecordedSite,
    at,
    relative_ms,
)

LQ_FRAME_S = 1 / LQ_FPS
HQ_START_S = 1.5  # the first HQ keyframe the central holds
LQ_RESUME_S = 4.0  # HQ ends at 4.5 s; LQ resumes at its last keyframe before that


@dataclass(frozen=True)
class Picture:
    time_s: float
    width: int
    height: int
    shade: float


def ffprobe(path: Path) -> dict[str, object]:
    result = subprocess.run(
        [
            "ffprobe", "-v", "error", "-of", "json",
            "-show_entries", "format=duration:stream=codec_name,codec_type",
            str(path),
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    probed: dict[str, object] = json.loads(result.stdout)
    return probed


def decode_all(path: Path) -> tuple[int, list[Picture]]:
    """(packets, pictures in presentation order); any decoding error raises."""
    pictures = []
    packets = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size:
                packets += 1
            for frame in packet.decode():
                assert frame.pts is not None
                assert frame.time_base is not None
                luma = bytes(frame.planes[0])
                pictures.append(
                    Picture(
                        float(frame.pts * frame.time_base),
                        frame.width,
                        frame.height,
                        sum(luma[:256]) / 256,
                    )
                )
    return packets, pictures


def shade_at(index: int) -> int:
    """The shade `recorded_site.encode_clip` gave picture `index`."""
    return 30 + (index * 7) % 190


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_the_plan_is_hq_where_the_central_holds_it(
    exports: dict[str, ExportSummary], container: str
) -> None:
    summary = exports[container]
    segments = summary.plan.segments
    assert [(s.stream, s.seq) for s in segments] == [
        ("lq", 0), ("lq", 1), ("hq", 1), ("hq", 2), ("hq", 3), ("lq", 4), ("lq", 5),
    ]  # fmt: skip
    assert relative_ms([s.start_ns for s in segments]) == [0, 1000, 1500, 2500, 3500, 4000, 5000]
    assert relative_ms([s.end_ns for s in segments]) == [1000, 1500, 2500, 3500, 4000, 5000, 5700]
    assert not summary.gaps
    assert summary.hq_ns == 2500 * MS
    assert summary.lq_ns == 3200 * MS
    assert summary.duration_ns == 5700 * MS


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_ffprobe_reads_one_h264_track_and_the_duration(
    exports: dict[str, ExportSummary], container: str
) -> None:
    probed = ffprobe(exports[container].media_path)
    streams = probed["streams"]
    assert isinstance(streams, list)
    assert [(s["codec_type"], s["codec_name"]) for s in streams] == [("video", "h264")]
    format_info = probed["format"]
    assert isinstance(format_info, dict)
    assert float(format_info["duration"]) == pytest.approx(EXPORT_END_MS / 1000, abs=0.002)


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_every_picture_decodes_across_both_switches_without_a_time_gap(
    exports: dict[str, ExportSummary], container: str
) -> None:
    summary = exports[container]
    packets, pictures = decode_all(summary.media_path)
    assert packets == summary.packets
    assert len(pictures) == packets
    times = [p.time_s for p in pictures]
    assert times[0] == 0.0
    steps = [after - before for before, after in itertools.pairwise(times)]
    assert min(steps) > 0
    # No gap: never longer between pictures than the slowest stream's frame interval (an HQ
    # picture dropped before the cut only makes its predecessor last one HQ frame longer).
    assert max(steps) <= LQ_FRAME_S + 0.002
    sizes = [((p.width, p.height), p.time_s) for p in pictures]
    assert all(size == LQ_SIZE for size, t in sizes if t < HQ_START_S - 0.001)
    assert all(size == HQ_SIZE for size, t in sizes if HQ_START_S - 0.001 < t < LQ_RESUME_S)
    assert all(size == LQ_SIZE for size, t in sizes if t > LQ_RESUME_S - 0.001)
    assert any(abs(t - HQ_START_S) < 0.001 for _, t in sizes)
    assert any(abs(t - LQ_RESUME_S) < 0.001 for _, t in sizes)


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_each_moment_shows_the_picture_recorded_then(
    exports: dict[str, ExportSummary], container: str
) -> None:
    _, pictures = decode_all(exports[container].media_path)
    for picture in pictures:
        if (picture.width, picture.height) == HQ_SIZE:
            index = round((picture.time_s - HQ_OFFSET_NS / NS_PER_S) * HQ_FPS)
        else:
            index = round(picture.time_s * LQ_FPS)
        assert abs(picture.shade - shade_at(index)) < 4, picture


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_the_evidence_holds_every_chunk_used_whole(
    exports: dict[str, ExportSummary], recorded: RecordedSite, container: str
) -> None:
    summary = exports[container]
    originals = {(c.header.stream, c.header.seq): c for c in recorded.hq_chunks}
    originals |= {(c.header.stream, c.header.seq): c for c in recorded.lq_chunks}
    with EvidenceReader(summary.evidence_path) as evidence:
        manifest = evidence.manifest
        assert (manifest.site_id, manifest.device_id, manifest.device_name) == (
            SITE, "cam-1", "Loading bay",
        )  # fmt: skip
        assert manifest.public_keys == recorded.keys
        assert manifest.media.sha256 == summary.media_sha256
        assert manifest.media.packets == summary.packets
        assert manifest.origin_ns == BASE_NS
        for item in manifest.segments:
            original = originals[(item.segment.stream, item.segment.seq)]
            stored = evidence.read_chunk(item.chunk_member)
            assert (stored.header_bytes, stored.signature, stored.payload) == (
                original.header_bytes, original.signature, original.payload,
            )  # fmt: skip
        # LQ repeats its parameter sets at every keyframe; HQ keeps them in its codec
        # configuration, so they were put in band at each HQ keyframe that starts a segment.
        assert [s.parameter_sets_added for s in manifest.segments] == [
            False, False, True, True, True, False, False,
        ]  # fmt: skip


def test_the_cut_hq_chunk_keeps_its_decode_order_prefix(exports: dict[str, ExportSummary]) -> None:
    cut = exports["mp4"].plan.segments[4]
    assert (cut.stream, cut.seq) == ("hq", 3)
    with EvidenceReader(exports["mp4"].evidence_path) as evidence:
        item = evidence.manifest.segments[4]
        raw = evidence.read_chunk(item.chunk_member)
    header = SignedChunk.from_parts(raw.header_bytes, raw.signature, raw.payload).header
    instants = relative_ms(packet_instants_ns(header))
    # B-frames: decode order 3500 3800 3600 3700 4100 3900 4000 ...; cut at 4000 keeps the
    # first four, since 4100 comes before 3900 in decode order.
    assert instants[:6] == [3500, 3800, 3600, 3700, 4100, 3900]
    assert cut.last_packet == 3


class _CorruptingSource:
    """The store, but one chunk's payload comes back with a flipped byte (a disk fault)."""

    def __init__(self, recorded: RecordedSite, stream: str, seq: int) -> None:
        self._store = recorded.store
        self._target = (stream, seq)

    def chunk_metas(
        self, device_id: str, stream: str, start_ns: int, end_ns: int, *, site_id: str
    ) -> Sequence[ChunkMeta]:
        return self._store.chunk_metas(device_id, stream, start_ns, end_ns, site_id=site_id)

    def read_chunk(
        self, device_id: str, stream: str, seq: int, *, site_id: str
    ) -> SignedChunk | None:
        chunk = self._store.read_chunk(device_id, stream, seq, site_id=site_id)
        if chunk is None or (stream, seq) != self._target:
            return chunk
        payload = bytearray(chunk.payload)
        payload[len(payload) // 2] ^= 0x01
        return SignedChunk(chunk.header_bytes, chunk.signature, bytes(payload), chunk.header)


def test_a_chunk_that_is_not_authentic_is_never_exported(
    recorded: RecordedSite, tmp_path: Path
) -> None:
    out = tmp_path / "cam-1.mp4"
    with pytest.raises(ExportError, match=r"hq seq 2 has a payload that differs"):
        export_range(
            _CorruptingSource(recorded, "hq", 2),
            recorded.keys,
            SITE,
            "cam-1",
            at(0),
            at(5000),
            out,
            "mp4",
            clock=ManualClock(),
        )
    assert list(tmp_path.iterdir()) == []  # no partial files are left behind


def test_nothing_recorded_and_unknown_keys_are_refused(
    recorded: RecordedSite, tmp_path: Path
) -> None:
    clock = ManualClock()
    with pytest.raises(ExportError, match="no video recorded"):
        export_range(
            recorded.store, recorded.keys, SITE, "cam-1", at(10_000), at(12_000),
            tmp_path / "x.mp4", "mp4", clock=clock,
        )  # fmt: skip
    with pytest.raises(ExportError, match="no public key is known for site 'site-1'"):
        export_range(
            recorded.store, {}, SITE, "cam-1", at(0), at(2000), tmp_path / "x.mp4", "mkv",
            clock=clock,
        )  # fmt: skip
    with pytest.raises(ExportError, match="container 'avi' is not one of: mp4, mkv"):
        export_range(
            recorded.store, recorded.keys, SITE, "cam-1", at(0), at(2000),
            tmp_path / "x.avi", "avi", clock=clock,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_a_player_seeking_into_the_hq_part_decodes_it_cleanly(
    exports: dict[str, ExportSummary], container: str
) -> None:
    """Every keyframe carries its parameter sets, so a seek to an HQ keyframe in the middle
    of the HQ part decodes at once, though the track's first configuration is LQ's."""
    with av.open(str(exports[container].media_path)) as opened:
        stream = opened.streams.video[0]
        assert stream.time_base is not None
        opened.seek(round(2.5 / stream.time_base), stream=stream)
        frame = next(opened.decode(stream))
        assert frame.pts is not None
        assert frame.time_base is not None
        time_s = float(frame.pts * frame.time_base)
        assert time_s == pytest.approx(2.5, abs=0.001)
        assert (frame.width, frame.height) == HQ_SIZE
        index = round((time_s - HQ_OFFSET_NS / NS_PER_S) * HQ_FPS)
        assert abs(sum(bytes(frame.planes[0])[:256]) / 256 - shade_at(index)) < 4
