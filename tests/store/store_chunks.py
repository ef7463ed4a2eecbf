"""Signed chunks for chunk store tests: real headers and signatures, random payload bytes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from shared.chunk import GENESIS_HASH, ChunkDraft, SignedChunk, seal_chunk
from shared.clock import NS_PER_S
from shared.media import CodecConfig, MediaKind, MediaPacket
from shared.signing import SiteSigner

H264 = CodecConfig(MediaKind.VIDEO, "h264", 1, 90_000, width=640, height=360)
T0_NS = 1_700_000_000 * NS_PER_S  # ManualClock's default start
SITE_ID = "site-1"  # the factory's site unless told otherwise, and the test stores' home site


@dataclass
class _Chain:
    seq: int = 0
    prev_hash: bytes = GENESIS_HASH


@dataclass
class ChunkFactory:
    """Makes chained chunks per (device, stream), like a recorder would."""

    signer: SiteSigner
    rng: random.Random = field(default_factory=lambda: random.Random(1234))
    site_id: str = SITE_ID
    _chains: dict[tuple[str, str], _Chain] = field(default_factory=dict)

    def make(
        self,
        *,
        start_ns: int,
        device_id: str = "cam-1",
        stream: str = "lq",
        duration_ns: int = 2 * NS_PER_S,
        payload_size: int = 4096,
        seq: int | None = None,
        prev_hash: bytes | None = None,
        packets: int = 2,
    ) -> SignedChunk:
        """One chunk; seq and prev_hash continue the stream's chain unless given."""
        chain = self._chains.setdefault((device_id, stream), _Chain())
        use_seq = chain.seq if seq is None else seq
        use_prev = chain.prev_hash if prev_hash is None else prev_hash
        payload = self.rng.randbytes(payload_size)
        step = max(1, payload_size // packets)
        pieces = [payload[i : i + step] for i in range(0, payload_size, step)] or [b""]
        media = tuple(
            MediaPacket(
                stream=stream,
                pts=index * 3000,
                dts=index * 3000,
                duration=3000,
                keyframe=index == 0,
                data=piece,
                wall_ns=start_ns + index * (duration_ns // len(pieces)),
            )
            for index, piece in enumerate(pieces)
        )
        draft = ChunkDraft(device_id, stream, start_ns, start_ns + duration_ns, H264, media)
        chunk = seal_chunk(
            draft,
            site_id=self.site_id,
            seq=use_seq,
            prev_chunk_hash=use_prev,
            discontinuity=False,
            signer=self.signer,
        )
        if seq is None:
            chain.seq = use_seq + 1
            chain.prev_hash = chunk.chunk_hash
        return chunk

    def run(
        self,
        count: int,
        *,
        start_ns: int = T0_NS,
        device_id: str = "cam-1",
        stream: str = "lq",
        duration_ns: int = 2 * NS_PER_S,
        payload_size: int = 4096,
    ) -> list[SignedChunk]:
        """`count` back-to-back chunks of one stream."""
        return [
            self.make(
                start_ns=start_ns + i * duration_ns,
                device_id=device_id,
                stream=stream,
                duration_ns=duration_ns,
                payload_size=payload_size,
            )
            for i in range(count)
        ]
