"""Where a retrieval stream starts when the central holds some of its span already."""

from __future__ import annotations

import random

from central.retrieval.held_run import HeldRun, held_after_cursor, held_run
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S
from shared.signing import SiteSigner
from shared.store.chunk_meta import ChunkMeta
from tests.store.store_chunks import T0_NS, ChunkFactory

CHUNK_NS = 2 * NS_PER_S


def _chain(count: int, *, seed: int = 1, every_ns: int = CHUNK_NS) -> list[ChunkMeta]:
    """`count` chained chunks of one stream, 2 s long, one every `every_ns` from T0 (more
    than 2 s: with recording gaps between them), as the central stores them."""
    factory = ChunkFactory(SiteSigner.generate(), rng=random.Random(seed))
    return [
        _meta(factory.make(start_ns=T0_NS + i * every_ns, duration_ns=CHUNK_NS))
        for i in range(count)
    ]


def _meta(chunk: SignedChunk) -> ChunkMeta:
    return ChunkMeta(chunk.header_bytes, chunk.signature, chunk.header)


def _run_of(metas: list[ChunkMeta]) -> HeldRun:
    return HeldRun(
        cursor_seq=metas[-1].seq,
        cursor_hash=metas[-1].chunk_hash,
        chunks=len(metas),
        payload_bytes=sum(m.payload_size for m in metas),
        covered_until_ns=metas[-1].end_ns,
    )


def test_nothing_held_starts_at_the_span() -> None:
    assert held_run([], start_ns=T0_NS, predecessor=None) is None


def test_a_run_from_a_chunk_that_covers_the_start_continues_after_its_last() -> None:
    chain = _chain(10)
    # The span starts inside chunk 3; the central holds 3..6, then 8..9 (7 is missing).
    start_ns = chain[3].start_ns + NS_PER_S
    held = chain[3:7] + chain[8:]
    assert held_run(held, start_ns=start_ns, predecessor=None) == _run_of(chain[3:7])


def test_the_run_stops_where_the_chain_breaks() -> None:
    chain = _chain(4)
    other = _chain(4, seed=2)  # other chunks: the same seqs, other hashes
    held = [chain[0], chain[1], other[2], chain[3]]
    assert held_run(held, start_ns=chain[0].start_ns, predecessor=None) == _run_of(chain[:2])


def test_a_first_held_chunk_after_the_start_needs_its_predecessor() -> None:
    chain = _chain(6, every_ns=3 * NS_PER_S)
    # The span starts in the recording gap before chunk 2: chunk 2 is the site's first of
    # the span only if chunk 1 is held and ends before the span.
    start_ns = chain[1].end_ns + NS_PER_S // 2
    assert held_run(chain[2:5], start_ns=start_ns, predecessor=chain[1]) == _run_of(chain[2:5])
    # Without it the site might hold a chunk the central lacks before chunk 2.
    assert held_run(chain[2:5], start_ns=start_ns, predecessor=None) is None
    # A predecessor that is not the one chunk 2 names proves nothing.
    stranger = _chain(6, seed=2, every_ns=3 * NS_PER_S)[1]
    assert held_run(chain[2:5], start_ns=start_ns, predecessor=stranger) is None
    # Nor does one that reaches into the span.
    assert held_run(chain[2:5], start_ns=chain[1].start_ns, predecessor=chain[1]) is None


def test_the_first_chunk_of_a_stream_has_nothing_before_it() -> None:
    chain = _chain(3)
    start_ns = chain[0].start_ns - 60 * NS_PER_S  # asked from before the camera started
    assert held_run(chain, start_ns=start_ns, predecessor=None) == _run_of(chain)


def _by_seq(metas: list[ChunkMeta]) -> dict[int, ChunkMeta]:
    return {meta.seq: meta for meta in metas}


def test_after_a_cursor_the_held_chunks_that_follow_it_are_skipped() -> None:
    chain = _chain(8)
    # Stored: up to 5 (the cursor says 3: the cut came before it moved), then 7; 6 missing.
    held = _by_seq(chain[:6] + chain[7:])
    run = held_after_cursor(
        held.get, cursor_seq=3, cursor_hash=chain[3].chunk_hash, end_ns=chain[-1].end_ns
    )
    assert run == _run_of(chain[4:6])


def test_after_a_cursor_nothing_held_or_another_chain_or_past_the_span_is_not_skipped() -> None:
    chain = _chain(6)
    other = _chain(6, seed=2)

    def after_2(held: list[ChunkMeta], end_ns: int) -> HeldRun | None:
        return held_after_cursor(
            _by_seq(held).get, cursor_seq=2, cursor_hash=chain[2].chunk_hash, end_ns=end_ns
        )

    end_ns = chain[-1].end_ns
    assert after_2(chain[:3], end_ns) is None
    # The chunk held with the next seq names another chunk before it: not this chain's.
    assert after_2(chain[:3] + other[3:], end_ns) is None
    # Held, but starting at the span's end or after: not the span's.
    assert after_2(chain, chain[3].start_ns) is None
    assert after_2(chain, chain[4].start_ns) == _run_of(chain[3:4])
