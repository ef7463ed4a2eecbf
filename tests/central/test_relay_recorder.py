"""Rebuilding a site's chunks from relayed packets and seals: exact when everything arrived,
a named miss when something did not, a refusal for anything not signed by the site.

The site here is its real recording path on real H.264: the chunker cuts a PyAV-encoded clip
into one chunk per GOP, the chain sealer numbers and signs each, and the relay order is the
site's: every packet as it comes, and a chunk's seal once the packet that cut it arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest

from agent.chain_sealer import ChainSealer
from agent.chunker import Chunker
from central.relay_recorder import (
    ChunkMissed,
    ChunkRebuilt,
    ChunkRefused,
    RelayRecorder,
    SealOutcome,
)
from shared.chunk import GENESIS_HASH, ChunkDraft, SignedChunk, seal_chunk
from shared.clock import NS_PER_S
from shared.link.messages import LivePacket
from shared.live_relay import codec_wire
from shared.media import MediaPacket
from shared.signing import SiteSigner
from shared.transfer_acceptance import TransferCursor, TransferExpectation
from tests.recording.h264_samples import encode, moving_box

SITE_ID = "site-1"
SIGNER = SiteSigner.generate()
EXPECT = TransferExpectation(SITE_ID, "cam-1", "lq", SIGNER.public_key)
CLIP = encode(moving_box(60), fps=10, gop=10)  # six GOPs of one second


@dataclass(frozen=True)
class Seal:
    chunk: SignedChunk


RelayItem = LivePacket | Seal


def live(packet: MediaPacket) -> LivePacket:
    return LivePacket(
        packet.pts, packet.dts, packet.duration, packet.keyframe, packet.wall_ns, packet.data
    )


def site_relay(packets: list[MediaPacket], *, stored: set[int] | None = None) -> list[RelayItem]:
    """What the site's relay sends for `packets`: each packet, and after the packet that
    closes a chunk, that chunk's seal, for the cut chunks `stored` (all when None)."""
    chunker = Chunker("cam-1", "lq", CLIP.codec)
    sealer = ChainSealer(site_id=SITE_ID, device_id="cam-1", stream="lq", signer=SIGNER, head=None)
    items: list[RelayItem] = []
    cut_index = 0

    def sealed(draft: ChunkDraft) -> None:
        nonlocal cut_index
        if stored is None or cut_index in stored:
            chunk = sealer.seal(draft, discontinuity=False)
            sealer.committed(chunk)
            items.append(Seal(chunk))
        cut_index += 1

    for packet in packets:
        items.append(live(packet))
        for cut in chunker.push(packet):
            sealed(cut.draft)
    final = chunker.flush()
    if final is not None:
        sealed(final.draft)
    return items


def seals(items: list[RelayItem]) -> list[SignedChunk]:
    return [item.chunk for item in items if isinstance(item, Seal)]


def feed(recorder: RelayRecorder, items: Sequence[RelayItem]) -> list[SealOutcome]:
    outcomes: list[SealOutcome] = []
    for item in items:
        if isinstance(item, Seal):
            outcomes.append(recorder.on_seal(item.chunk.header_bytes, item.chunk.signature))
        else:
            recorder.on_packets([item])
    return outcomes


def rebuilt(outcomes: list[SealOutcome]) -> list[SignedChunk]:
    return [o.chunk for o in outcomes if isinstance(o, ChunkRebuilt)]


def test_every_chunk_is_rebuilt_byte_for_byte_as_the_site_signed_it() -> None:
    items = site_relay(CLIP.packets)
    recorder = RelayRecorder(EXPECT)
    outcomes = feed(recorder, items)
    site_chunks = seals(items)
    assert len(site_chunks) == 6
    assert all(isinstance(o, ChunkRebuilt) and o.missing_before == 0 for o in outcomes)
    assert [(c.header_bytes, c.signature, c.payload) for c in rebuilt(outcomes)] == [
        (c.header_bytes, c.signature, c.payload) for c in site_chunks
    ]
    assert recorder.cursor == TransferCursor(5, site_chunks[-1].chunk_hash)
    assert recorder.kept_packets == 0
    counters = recorder.counters
    assert (counters.chunks_rebuilt, counters.chunks_missed, counters.chunks_refused) == (6, 0, 0)
    assert counters.unsealed_packets_dropped == 0
    assert recorder.unsealed_notice is None


def test_packets_may_arrive_in_batches_of_any_size() -> None:
    items = site_relay(CLIP.packets)
    recorder = RelayRecorder(EXPECT)
    outcomes: list[SealOutcome] = []
    batch: list[LivePacket] = []
    for item in items:
        if isinstance(item, Seal):
            recorder.on_packets(batch, codec_wire(CLIP.codec))
            batch = []
            outcomes.append(recorder.on_seal(item.chunk.header_bytes, item.chunk.signature))
        else:
            batch.append(item)
    assert len(rebuilt(outcomes)) == 6
    assert recorder.codec == codec_wire(CLIP.codec)


def test_a_packet_dropped_on_the_way_misses_that_chunk_and_the_next_is_rebuilt() -> None:
    items = site_relay(CLIP.packets)
    dropped = CLIP.packets[14]  # the fifth packet of the second chunk
    items = [i for i in items if not (isinstance(i, LivePacket) and i.pts == dropped.pts)]
    recorder = RelayRecorder(EXPECT)
    outcomes = feed(recorder, items)
    missed = outcomes[1]
    assert isinstance(missed, ChunkMissed)
    assert str(missed).startswith(f"missed chunk seq 1: packet 5 of 10 (pts {dropped.pts})")
    assert "did not arrive" in missed.reason
    after = outcomes[2]
    assert isinstance(after, ChunkRebuilt)
    assert after.missing_before == 1  # seq 1 never made it
    assert after.chunk.header_bytes == seals(items)[2].header_bytes
    assert [o.chunk.header.seq for o in outcomes if isinstance(o, ChunkRebuilt)] == [0, 2, 3, 4, 5]
    assert recorder.counters.chunks_missed == 1
    assert list(recorder.counters.recent_problems) == [str(missed)]


def test_a_lost_keyframe_misses_the_chunk_it_starts() -> None:
    items = site_relay(CLIP.packets)
    keyframe = CLIP.packets[20]
    items = [i for i in items if not (isinstance(i, LivePacket) and i.pts == keyframe.pts)]
    outcomes = feed(RelayRecorder(EXPECT), items)
    missed = outcomes[2]
    assert isinstance(missed, ChunkMissed)
    assert f"its first packet (pts {keyframe.pts}) did not arrive" in missed.reason
    assert [o.chunk.header.seq for o in outcomes if isinstance(o, ChunkRebuilt)] == [0, 1, 3, 4, 5]


def test_a_packet_altered_on_the_way_fails_the_payload_hash() -> None:
    items = site_relay(CLIP.packets)
    target = next(i for i, item in enumerate(items) if isinstance(item, LivePacket) and i > 3)
    packet = items[target]
    assert isinstance(packet, LivePacket)
    flipped = bytes([packet.data[-1] ^ 0xFF])
    items[target] = replace(packet, data=packet.data[:-1] + flipped)
    outcomes = feed(RelayRecorder(EXPECT), items)
    assert isinstance(outcomes[0], ChunkMissed)
    assert "payload hash" in outcomes[0].reason
    assert len(rebuilt(outcomes)) == 5


def test_joining_in_the_middle_of_a_chunk_misses_only_that_chunk() -> None:
    items = site_relay(CLIP.packets)
    joined = items.index(live(CLIP.packets[15]))  # mid-way through the second chunk
    outcomes = feed(RelayRecorder(EXPECT), items[joined:])
    first = outcomes[0]
    assert isinstance(first, ChunkMissed)
    assert first.seq == 1
    assert "joined mid-chunk" in first.reason
    assert [o.chunk.header.seq for o in outcomes if isinstance(o, ChunkRebuilt)] == [2, 3, 4, 5]


def test_a_tampered_header_or_signature_is_refused() -> None:
    items = site_relay(CLIP.packets[:30])
    _, second, _ = seals(items)
    recorder = RelayRecorder(EXPECT)
    feed(recorder, items[: items.index(Seal(second))])  # chunk 0, and chunk 1's packets
    # The header of the second chunk with one byte changed (in the predecessor's hash, so it
    # still decodes), then with a signature that is not the site's.
    tampered = bytearray(second.header_bytes)
    tampered[-1] ^= 0x01
    forged = SiteSigner.generate().sign(second.header_bytes)
    for header, signature in ((bytes(tampered), second.signature), (second.header_bytes, forged)):
        outcome = recorder.on_seal(header, signature)
        assert isinstance(outcome, ChunkRefused), outcome
        assert outcome.seq == 1
        assert "signature does not verify with the site's key" in outcome.reason
    assert recorder.counters.chunks_refused == 2
    assert recorder.cursor.seq == 0  # nothing refused moved it
    # The genuine seal still finds its packets.
    genuine = recorder.on_seal(second.header_bytes, second.signature)
    assert isinstance(genuine, ChunkRebuilt)
    assert genuine.chunk.payload == second.payload


def test_a_chunk_of_another_stream_or_site_is_refused_even_when_signed() -> None:
    items = site_relay(CLIP.packets[:20])
    recorder = RelayRecorder(replace(EXPECT, device_id="cam-2"))
    outcomes = feed(recorder, items)
    assert all(isinstance(o, ChunkRefused) for o in outcomes)
    refused = outcomes[0]
    assert isinstance(refused, ChunkRefused)
    assert "its header names site-1/cam-1/lq, not site-1/cam-2/lq" in refused.reason
    malformed = recorder.on_seal(b"\x93\x01\x02\x03", bytes(64))
    assert isinstance(malformed, ChunkRefused)
    assert malformed.seq is None
    assert str(malformed).startswith("refused a chunk: malformed header")


def test_a_signed_header_without_packets_is_refused() -> None:
    site_chunk = seals(site_relay(CLIP.packets[:20]))[0]
    empty = replace(site_chunk.header, packets=()).encode()
    outcome = RelayRecorder(EXPECT).on_seal(empty, SIGNER.sign(empty))
    assert outcome == ChunkRefused(0, "its header lists no packets")


def test_a_chunk_that_does_not_name_its_predecessor_is_refused() -> None:
    items = site_relay(CLIP.packets[:20])
    first, _ = seals(items)
    recorder = RelayRecorder(EXPECT)
    outcomes = feed(recorder, items[: items.index(Seal(first)) + 1])
    assert isinstance(outcomes[0], ChunkRebuilt)
    # A genuine site signature over a chunk seq 1 that does not follow chunk 0: the chain
    # is broken (a fork), so it must not be stored after chunk 0.
    rest = [i for i in items[items.index(Seal(first)) + 1 :] if isinstance(i, LivePacket)]
    draft = ChunkDraft(
        "cam-1",
        "lq",
        rest[0].wall_ns,
        rest[-1].wall_ns + NS_PER_S // 10,
        CLIP.codec,
        tuple(CLIP.packets[10:20]),
    )
    fork = seal_chunk(
        draft,
        site_id=SITE_ID,
        seq=1,
        prev_chunk_hash=GENESIS_HASH,
        discontinuity=False,
        signer=SIGNER,
    )
    recorder.on_packets(rest)
    outcome = recorder.on_seal(fork.header_bytes, fork.signature)
    assert isinstance(outcome, ChunkRefused)
    assert "does not name chunk #0 as its predecessor" in outcome.reason


def test_a_chunk_the_store_already_has_is_rebuilt_without_moving_the_cursor_back() -> None:
    items = site_relay(CLIP.packets)
    head = seals(items)[4]
    recorder = RelayRecorder(EXPECT, cursor=TransferCursor(4, head.chunk_hash))
    outcomes = feed(recorder, items)
    assert [o.chunk.header.seq for o in outcomes if isinstance(o, ChunkRebuilt)] == list(range(6))
    assert recorder.cursor.seq == 5  # moved only by the chunk after the head


def test_packets_the_site_never_seals_are_dropped_counted_and_explained() -> None:
    # A relay-only stream: packets, never a seal.
    items = [live(p) for p in CLIP.packets]
    recorder = RelayRecorder(EXPECT, max_packet_age_ns=2 * NS_PER_S)
    feed(recorder, items)
    # Packets more than 2 s older than the newest were let go.
    assert recorder.counters.unsealed_packets_dropped == 60 - 21
    assert recorder.kept_packets == 21
    notice = recorder.unsealed_notice
    assert notice is not None
    assert "39 packets of cam-1/lq waited 2 s without a seal and none came" in notice
    assert "the site does not store this stream" in notice


def test_a_seal_that_comes_after_its_packets_were_let_go_is_a_named_miss() -> None:
    # The site's gate releases its first chunk 4.5 s late (a pre-buffer longer than the
    # central lets packets wait).
    items = site_relay(CLIP.packets)
    late = seals(items)[0]
    packets = [i for i in items if isinstance(i, LivePacket)][:46]
    recorder = RelayRecorder(EXPECT, max_packet_age_ns=2 * NS_PER_S)
    (missed,) = feed(recorder, [*packets, Seal(late)])
    assert isinstance(missed, ChunkMissed)
    assert missed.seq == 0
    assert "its packets were discarded while they waited for the seal" in missed.reason
    assert "more than 2 s" in missed.reason


def test_chunks_the_site_left_out_are_unsealed_and_the_next_stored_one_is_rebuilt() -> None:
    # The site stored only cut chunks 2 and 3 (its rule left the others out): they are its
    # seq 0 and 1; the packets of the chunks before are discarded as never sealed.
    items = site_relay(CLIP.packets, stored={2, 3})
    recorder = RelayRecorder(EXPECT)
    outcomes = feed(recorder, items)
    assert [o.chunk.header.seq for o in outcomes if isinstance(o, ChunkRebuilt)] == [0, 1]
    assert recorder.counters.unsealed_packets_dropped == 20
    assert recorder.unsealed_notice is None  # the site does seal this stream


def test_kept_packets_are_bounded_by_bytes_and_count() -> None:
    items = [live(p) for p in CLIP.packets]
    by_count = RelayRecorder(EXPECT, max_kept_packets=7)
    feed(by_count, items)
    assert by_count.kept_packets == 7
    assert by_count.counters.unsealed_packets_dropped == 53
    by_bytes = RelayRecorder(EXPECT, max_kept_bytes=4000)
    feed(by_bytes, items)
    kept = items[-by_bytes.kept_packets :]
    assert sum(len(p.data) for p in kept if isinstance(p, LivePacket)) <= 4000
    with pytest.raises(ValueError, match="must be positive"):
        RelayRecorder(EXPECT, max_kept_packets=0)


def test_a_new_live_stream_forgets_the_packets_of_the_old_one() -> None:
    items = site_relay(CLIP.packets)
    first_seal = items.index(Seal(seals(items)[0]))
    recorder = RelayRecorder(EXPECT)
    feed(recorder, items[: first_seal + 5])  # chunk 0 rebuilt, 5 packets of chunk 1 kept
    recorder.restart(recorder.cursor)
    assert recorder.kept_packets == 0
    assert recorder.counters.unsealed_packets_dropped == 5
    # The new stream starts with the site's cached GOP: chunk 2 on, as a viewer joining.
    resumed = items.index(live(CLIP.packets[20]))
    outcomes = feed(recorder, items[resumed:])
    # The seal of chunk 1 comes after that GOP's keyframe: joined mid-chunk, a named miss.
    first, second = outcomes[:2]
    assert isinstance(first, ChunkMissed)
    assert first.seq == 1
    assert "joined mid-chunk" in first.reason
    assert isinstance(second, ChunkRebuilt)
    assert second.missing_before == 1
    assert [o.chunk.header.seq for o in outcomes if isinstance(o, ChunkRebuilt)] == [2, 3, 4, 5]
