"""A site's recordings in a real chunk store, as the central holds them: real H.264 encoded
with PyAV, cut into chunks by the agent's chunker, chained and signed by its sealer.

Time is relative to BASE_NS. Devices:

- "cam-1": LQ 320x180 at 5 fps for 6 s (parameter sets repeated in band at every keyframe,
  like the synthetic camera); HQ 640x360 at 10 fps with B-frames, starting 0.5 s later so
  its keyframes fall half-way through LQ GOPs, parameter sets only in its codec configuration
  (like most RTSP cameras). The central holds HQ only from 1.5 s to 4.5 s (seqs 1 to 3).
- "cam-gap": LQ only; the camera was off from 2 s to 4 s (a declared recording gap).
- "cam-hole": LQ only; the central lacks seq 2 (an undeclared hole, 2 s to 3 s).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from agent.chain_sealer import ChainSealer
from agent.chunker import Chunker
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, ManualClock
from shared.media import CodecConfig, MediaKind, MediaPacket
from shared.signing import SiteSigner
from shared.store import ChunkStore

BASE_NS = 1_700_000_000 * NS_PER_S
MS = 1_000_000
SITE = "site-1"
TIME_BASE = Fraction(1, 90_000)
HQ_SIZE = (640, 360)
LQ_SIZE = (320, 180)
HQ_FPS = 10
LQ_FPS = 5
CLIP_S = 6
HQ_OFFSET_NS = 500 * MS
HQ_STORED_SEQS = (1, 2, 3)
GAP_NS = (2000 * MS, 4000 * MS)  # cam-gap: the camera is off
MISSING_SEQ = 2  # cam-hole: the chunk the central lacks


def at(offset_ms: int) -> int:
    """BASE_NS plus `offset_ms` milliseconds."""
    return BASE_NS + offset_ms * MS


@dataclass(frozen=True)
class Clip:
    codec: CodecConfig
    packets: list[MediaPacket]


def encode_clip(
    *,
    stream: str,
    size: tuple[int, int],
    fps: int,
    base_ns: int,
    b_frames: int,
    repeat_headers: bool,
) -> Clip:
    """`CLIP_S` seconds of H.264 with a keyframe every second; each picture a flat shade
    that changes from frame to frame, so every picture is coded."""
    width, height = size
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = TIME_BASE
    encoder.framerate = Fraction(fps, 1)
    encoder.gop_size = fps
    encoder.max_b_frames = b_frames
    encoder.thread_count = 1
    params = f"keyint={fps}:min-keyint={fps}:scenecut=0:bframes={b_frames}:open-gop=0"
    if repeat_headers:
        params += ":repeat-headers=1"
    encoder.options = {"preset": "veryfast" if b_frames else "ultrafast", "x264-params": params}
    encoder.flags |= av.codec.context.Flags.global_header
    ticks = TIME_BASE.denominator // fps
    encoded = []
    for index in range(fps * CLIP_S):
        frame = av.VideoFrame(width, height, "yuv420p")
        shade = 30 + (index * 7) % 190
        for plane, value in zip(frame.planes, (shade, 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts = index * ticks
        encoded.extend(encoder.encode(frame))
    encoded.extend(encoder.encode(None))
    codec = CodecConfig(
        MediaKind.VIDEO,
        "h264",
        TIME_BASE.numerator,
        TIME_BASE.denominator,
        width=width,
        height=height,
        extradata=bytes(encoder.extradata or b""),
    )
    packets = []
    for packet in encoded:
        assert packet.pts is not None
        assert packet.dts is not None
        packets.append(
            MediaPacket(
                stream=stream,
                pts=packet.pts,
                dts=packet.dts,
                duration=ticks,
                keyframe=packet.is_keyframe,
                data=bytes(packet),
                wall_ns=base_ns + round(packet.pts * TIME_BASE * NS_PER_S),
            )
        )
    return Clip(codec, packets)


def seal(
    clip: Clip,
    *,
    device_id: str,
    signer: SiteSigner,
    off_ns: tuple[int, int] | None = None,
) -> list[SignedChunk]:
    """Cut and seal `clip` as the agent's recorder does; packets in `off_ns` (relative to
    BASE_NS) are never recorded: the source stops there and restarts after."""
    stream = clip.packets[0].stream
    chunker = Chunker(device_id, stream, clip.codec)
    sealer = ChainSealer(site_id=SITE, device_id=device_id, stream=stream, signer=signer, head=None)
    cuts = []
    stopped = False
    for packet in clip.packets:
        if off_ns is not None and off_ns[0] <= packet.wall_ns - BASE_NS < off_ns[1]:
            if not stopped:
                stopped = True
                flushed = chunker.flush()
                if flushed is not None:
                    cuts.append(flushed)
            continue
        cuts += chunker.push(packet)
    flushed = chunker.flush()
    if flushed is not None:
        cuts.append(flushed)
    chunks = []
    for cut in cuts:
        chunk = sealer.seal(cut.draft, discontinuity=cut.after_discontinuity)
        sealer.committed(chunk)
        chunks.append(chunk)
    return chunks


@dataclass
class RecordedSite:
    store: ChunkStore
    signer: SiteSigner
    lq_chunks: list[SignedChunk]
    hq_chunks: list[SignedChunk]

    @property
    def keys(self) -> dict[str, bytes]:
        return {SITE: self.signer.public_key}


def lq_clip(base_ns: int = BASE_NS) -> Clip:
    """The site's LQ clip from `base_ns`: no B-frames, parameter sets on every keyframe."""
    return encode_clip(
        stream="lq", size=LQ_SIZE, fps=LQ_FPS, base_ns=base_ns, b_frames=0, repeat_headers=True
    )


def hq_clip(base_ns: int = BASE_NS + HQ_OFFSET_NS) -> Clip:
    """The site's HQ clip from `base_ns` (half a second after the LQ one by default): two
    B-frames, parameter sets only in the codec configuration."""
    return encode_clip(
        stream="hq", size=HQ_SIZE, fps=HQ_FPS, base_ns=base_ns, b_frames=2, repeat_headers=False
    )


def record_site(path: Path) -> RecordedSite:
    signer = SiteSigner.generate()
    lq = lq_clip()
    hq = hq_clip()
    store = ChunkStore.open(path, quota_bytes=256 << 20, hold_budget_bytes=0, clock=ManualClock())
    lq_chunks = seal(lq, device_id="cam-1", signer=signer)
    hq_chunks = seal(hq, device_id="cam-1", signer=signer)
    _put(store, lq_chunks)
    _put(store, [c for c in hq_chunks if c.header.seq in HQ_STORED_SEQS])
    _put(store, seal(lq, device_id="cam-gap", signer=signer, off_ns=GAP_NS))
    _put(
        store,
        [c for c in seal(lq, device_id="cam-hole", signer=signer) if c.header.seq != MISSING_SEQ],
    )
    return RecordedSite(store, signer, lq_chunks, hq_chunks)


def _put(store: ChunkStore, chunks: Iterable[SignedChunk]) -> None:
    for chunk in chunks:
        assert store.put(chunk)


def relative_ms(instants_ns: Sequence[int]) -> list[int]:
    return [(t - BASE_NS) // MS for t in instants_ns]
