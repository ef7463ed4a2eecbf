"""Reading the boxes of an MP4 byte string back, for tests that check a muxer's layout.

Written from ISO/IEC 14496-12 independently of `shared/mp4_boxes.py`, so a wrong field there
is not mirrored here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"dinf"}
SAMPLE_IS_NON_SYNC = 0x00010000
TFHD_DEFAULT_BASE_IS_MOOF = 0x020000


@dataclass(frozen=True)
class Box:
    kind: bytes
    offset: int  # of the box header in the buffer it was read from
    data: bytes  # the payload, after the 8-byte header

    def children(self) -> list[Box]:
        return read_boxes(self.data)

    def child(self, path: str) -> Box:
        """The first descendant along `path`, e.g. "traf/trun"."""
        box = self
        for kind in path.split("/"):
            box = next(b for b in box.children() if b.kind == kind.encode())
        return box

    def has(self, kind: str) -> bool:
        """Whether any descendant (containers searched) has this type."""
        for child in self.children():
            if child.kind == kind.encode():
                return True
            if child.kind in CONTAINERS and child.has(kind):
                return True
        return False


@dataclass(frozen=True)
class TrackRun:
    data_offset: int
    durations: list[int]
    sizes: list[int]
    flags: list[int]
    composition_offsets: list[int]


def read_boxes(data: bytes) -> list[Box]:
    boxes = []
    offset = 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        assert size >= 8, f"box {kind!r} at {offset} has size {size}"
        assert offset + size <= len(data), f"box {kind!r} at {offset} runs past the end"
        boxes.append(Box(kind, offset, data[offset + 8 : offset + size]))
        offset += size
    return boxes


def full_box_header(box: Box) -> tuple[int, int]:
    """(version, flags)."""
    word = struct.unpack_from(">I", box.data)[0]
    return word >> 24, word & 0xFFFFFF


def track_run(trun: Box) -> TrackRun:
    version, flags = full_box_header(trun)
    count = struct.unpack_from(">I", trun.data, 4)[0]
    position = 8
    data_offset = 0
    if flags & 0x1:
        data_offset = struct.unpack_from(">i", trun.data, position)[0]
        position += 4
    if flags & 0x4:
        position += 4  # first_sample_flags
    run = TrackRun(data_offset, [], [], [], [])
    for _ in range(count):
        for bit, target, fmt in (
            (0x100, run.durations, ">I"),
            (0x200, run.sizes, ">I"),
            (0x400, run.flags, ">I"),
            (0x800, run.composition_offsets, ">i" if version else ">I"),
        ):
            if flags & bit:
                target.append(struct.unpack_from(fmt, trun.data, position)[0])
                position += 4
    assert position == len(trun.data), "trun has bytes after its samples"
    return run


def base_decode_time(traf: Box) -> int:
    tfdt = traf.child("tfdt")
    version, _ = full_box_header(tfdt)
    return int(struct.unpack_from(">Q" if version else ">I", tfdt.data, 4)[0])


def timescale(moov: Box) -> int:
    mdhd = moov.child("trak/mdia/mdhd")
    version, _ = full_box_header(mdhd)
    return int(struct.unpack_from(">I", mdhd.data, 20 if version else 12)[0])
