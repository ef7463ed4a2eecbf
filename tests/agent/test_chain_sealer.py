"""The sealer continues a stored chain and never leaves a hole for an unstored chunk."""

from __future__ import annotations

from agent.chain_sealer import ChainHead, ChainSealer
from shared.chunk import GENESIS_HASH, ChunkDraft
from shared.media import CodecConfig, MediaKind, MediaPacket
from shared.signing import SiteSigner, verify_signature

CODEC = CodecConfig(MediaKind.AUDIO, "aac", 1, 16000, sample_rate=16000, channels=1)


def _draft(start_s: int) -> ChunkDraft:
    packet = MediaPacket("audio", start_s * 16000, start_s * 16000, 1024, True, b"x" * 10, 0)
    return ChunkDraft(
        "cam-1.mic", "audio", start_s * 10**9, (start_s + 1) * 10**9, CODEC, (packet,)
    )


def test_new_chain_starts_at_genesis_and_links() -> None:
    signer = SiteSigner.generate()
    sealer = ChainSealer(
        site_id="site-0001", device_id="cam-1.mic", stream="audio", signer=signer, head=None
    )
    first = sealer.seal(_draft(0), discontinuity=True)  # the gate flags its first chunk
    assert (first.header.seq, first.header.prev_chunk_hash) == (0, GENESIS_HASH)
    assert not first.header.discontinuity
    assert verify_signature(signer.public_key, first.header_bytes, first.signature)
    sealer.committed(first)
    second = sealer.seal(_draft(1), discontinuity=False)
    assert (second.header.seq, second.header.prev_chunk_hash) == (1, first.chunk_hash)


def test_dropped_chunk_reuses_seq_and_declares_a_gap() -> None:
    sealer = ChainSealer(
        site_id="site-0001",
        device_id="cam-1.mic",
        stream="audio",
        signer=SiteSigner.generate(),
        head=None,
    )
    sealer.committed(sealer.seal(_draft(0), discontinuity=False))
    lost = sealer.seal(_draft(1), discontinuity=False)
    sealer.dropped()
    kept = sealer.seal(_draft(2), discontinuity=False)
    assert kept.header.seq == lost.header.seq == 1
    assert kept.header.discontinuity


def test_restart_continues_the_stored_chain_with_a_gap() -> None:
    head = ChainHead(41, b"\x07" * 32)
    sealer = ChainSealer(
        site_id="site-0001",
        device_id="cam-1.mic",
        stream="audio",
        signer=SiteSigner.generate(),
        head=head,
    )
    chunk = sealer.seal(_draft(5), discontinuity=False)
    assert (chunk.header.seq, chunk.header.prev_chunk_hash) == (42, head.chunk_hash)
    assert chunk.header.discontinuity
