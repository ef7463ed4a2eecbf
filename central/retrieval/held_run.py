"""Where a retrieval stream starts: after the chunks of its span the central holds already.

An operator who stops a job and asks again for the same span, a rule whose event falls on a
span an earlier job brought, a missed-chunk job over chunks the live relay stored in the
end: each would transfer again chunks the central holds. The store keeps each chunk once,
so nothing would be stored twice, but the link, often the scarcest thing a site has, would
carry them again.

A transfer resumes after one chunk (its cursor: that chunk's seq and hash), so what a stream
can skip is the *held run*: the central's chunks of the span that start at the span's first
chunk and follow each other without a missing seq, each naming the one before by its hash.
The run's first chunk must be the site's first chunk of the span, which the central knows
when its first held chunk of the span

- covers the span's start (chunks of a stream never overlap, so nothing of the site's comes
  before it in the span), or
- is the stream's first chunk ever (seq 0), or
- follows a held chunk (seq - 1, named by its hash) that ends before the span: the chain
  leaves no room for another chunk between them.

Otherwise the stream starts at the span's start, as if nothing were held. Held chunks after
a hole in the run are sent again and recognised by the store (the protocol resumes after
one cursor, it has no list of ranges).

A stream that has a cursor resumes after it, and after the held chunks that follow it
(`held_after_cursor`): the chunk after the cursor may be stored already when a link was cut
or the central stopped between storing a chunk and moving the cursor past it (the cursor
moves after the store commits). Without this, every cut would send that chunk again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.store.chunk_meta import ChunkMeta


@dataclass(frozen=True, slots=True)
class HeldRun:
    """The held run of a span: where its stream resumes, and what it already counts."""

    cursor_seq: int
    cursor_hash: bytes
    chunks: int
    payload_bytes: int
    covered_until_ns: int


def held_run(
    metas: Sequence[ChunkMeta], *, start_ns: int, predecessor: ChunkMeta | None
) -> HeldRun | None:
    """The held run of a span that starts at `start_ns`, or None if it cannot be known.

    `metas`: the central's chunks overlapping the span, in time order (`chunk_metas`);
    `predecessor`: the central's chunk with the seq before the first of them, if held.
    """
    if not metas:
        return None
    first = metas[0]
    known_first = (
        first.start_ns <= start_ns
        or first.seq == 0
        or (
            predecessor is not None
            and predecessor.seq == first.seq - 1
            and predecessor.chunk_hash == first.header.prev_chunk_hash
            and predecessor.end_ns <= start_ns
        )
    )
    if not known_first:
        return None
    last = first
    payload_bytes = first.payload_size
    count = 1
    for meta in metas[1:]:
        if meta.seq != last.seq + 1 or meta.header.prev_chunk_hash != last.chunk_hash:
            break
        last = meta
        payload_bytes += meta.payload_size
        count += 1
    return HeldRun(
        cursor_seq=last.seq,
        cursor_hash=last.chunk_hash,
        chunks=count,
        payload_bytes=payload_bytes,
        covered_until_ns=last.end_ns,
    )


MAX_FOLLOWED = 100_000
"""A bound on the chunks `held_after_cursor` follows in one call (a day of 1 s chunks)."""


def held_after_cursor(
    held_seq: Callable[[int], ChunkMeta | None],
    *,
    cursor_seq: int,
    cursor_hash: bytes,
    end_ns: int,
) -> HeldRun | None:
    """The held chunks that follow a cursor: seq after seq, each naming the one before by
    its hash, each starting before `end_ns` (the span's end); None when the chunk after the
    cursor is not held. `held_seq(seq)`: the central's chunk of the stream with that seq."""
    last_seq, last_hash = cursor_seq, cursor_hash
    last: ChunkMeta | None = None
    payload_bytes = count = 0
    while count < MAX_FOLLOWED:
        meta = held_seq(last_seq + 1)
        if meta is None or meta.header.prev_chunk_hash != last_hash or meta.start_ns >= end_ns:
            break
        last, last_seq, last_hash = meta, meta.seq, meta.chunk_hash
        payload_bytes += meta.payload_size
        count += 1
    if last is None:
        return None
    return HeldRun(
        cursor_seq=last.seq,
        cursor_hash=last.chunk_hash,
        chunks=count,
        payload_bytes=payload_bytes,
        covered_until_ns=last.end_ns,
    )
