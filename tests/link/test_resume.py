"""Resume: a transfer cut at any byte continues after the last committed chunk.

The receiver commits each chunk once `accept_chunk` passes it and moves its cursor; after a
cut it reconnects and asks again from the cursor. Whatever the cut point, the receiver ends
with a byte-identical copy of the site's chunks, none stored twice, and at most the chunk
that was in flight is sent again.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.chunk import SignedChunk
from shared.link import events as ev
from shared.link import messages as m
from shared.link.connection import LinkConnection
from shared.link.framing import encode_frame
from shared.link.wire import encode_message
from shared.signing import SiteSigner
from shared.transfer_acceptance import (
    ChunkRejected,
    TransferCursor,
    TransferExpectation,
    accept_chunk,
)
from tests.link.link_pair import ChunkListServer
from tests.store.store_chunks import T0_NS, ChunkFactory

SIGNER = SiteSigner.generate()
EXPECT = TransferExpectation("site-1", "cam-1", "hq", SIGNER.public_key)


def _site_chunks(sizes: list[int]) -> list[SignedChunk]:
    factory = ChunkFactory(SIGNER, rng=random.Random(7))
    return [
        factory.make(start_ns=T0_NS + i * 10**9, duration_ns=10**9, stream="hq", payload_size=size)
        for i, size in enumerate(sizes)
    ]


class Receiver:
    """The central's side of a transfer: verify, commit, advance the cursor."""

    def __init__(self) -> None:
        self.cursor = TransferCursor()
        self.committed: dict[int, SignedChunk] = {}
        self.received_again = 0
        self.commits = 0

    def on_chunk(self, event: ev.ChunkReceived) -> None:
        if event.header in {c.header_bytes for c in self.committed.values()}:
            self.received_again += 1
        accepted = accept_chunk(EXPECT, self.cursor, event.header, event.signature, event.payload)
        seq = accepted.chunk.header.seq
        assert seq not in self.committed, "a chunk was stored twice"
        self.committed[seq] = accepted.chunk
        self.commits += 1
        self.cursor = self.cursor.after(accepted.chunk)


def _attempt(
    chunks: list[SignedChunk], receiver: Receiver, cut_after: int | None, piece_bytes: int
) -> bool:
    """One connection; the site's bytes stop after `cut_after`. True if the stream ended."""
    central = LinkConnection(role=m.LinkRole.CENTRAL, software="c")
    site = LinkConnection(role=m.LinkRole.SITE, software="s", piece_bytes=piece_bytes)
    server = ChunkListServer(site, chunks)
    central.send_request(
        m.TransferRequest(
            1, "cam-1", "hq", 0, 1 << 62, receiver.cursor.seq, 1 << 30, m.Priority.BACKGROUND
        )
    )
    server.handle(site.receive(central.data_to_send()))
    central.receive(site.data_to_send(1))  # only the site's Hello
    budget = cut_after
    while site.wants_to_send:
        data = site.data_to_send(512)
        if budget is not None:
            data = data[:budget]
            budget -= len(data)
        for event in central.receive(data):
            if isinstance(event, ev.ChunkReceived):
                receiver.on_chunk(event)
            elif isinstance(event, ev.StreamEnded):
                assert event.outcome is m.StreamOutcome.COMPLETE
                return True
            assert not isinstance(event, ev.ProtocolViolated), event
        if budget == 0:
            return False  # the connection died here
    raise AssertionError("the site stopped sending before the end of the stream")


def _transfer_bytes(chunks: list[SignedChunk], piece_bytes: int) -> int:
    central = LinkConnection(role=m.LinkRole.CENTRAL, software="c")
    site = LinkConnection(role=m.LinkRole.SITE, software="s", piece_bytes=piece_bytes)
    central.send_request(
        m.TransferRequest(1, "cam-1", "hq", 0, 1 << 62, None, 1 << 30, m.Priority.BACKGROUND)
    )
    ChunkListServer(site, chunks).handle(site.receive(central.data_to_send()))
    site.data_to_send(1)  # the Hello
    return len(site.data_to_send(1 << 30))


def _check_copy(chunks: list[SignedChunk], receiver: Receiver) -> None:
    copy = [receiver.committed[seq] for seq in sorted(receiver.committed)]
    assert [(c.header_bytes, c.signature, c.payload) for c in copy] == [
        (c.header_bytes, c.signature, c.payload) for c in chunks
    ]
    assert receiver.commits == len(chunks)


def test_a_cut_at_every_byte_resumes_to_an_identical_copy() -> None:
    chunks = _site_chunks([700, 1, 1500, 300])
    piece_bytes = 256
    total = _transfer_bytes(chunks, piece_bytes)
    assert total > 2500
    for cut in range(total):
        receiver = Receiver()
        assert not _attempt(chunks, receiver, cut, piece_bytes)
        before = receiver.commits
        assert _attempt(chunks, receiver, None, piece_bytes)
        _check_copy(chunks, receiver)
        assert receiver.received_again == 0  # the cursor skips what was committed
        assert receiver.commits - before == len(chunks) - before


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=8),
    piece_bytes=st.integers(min_value=32, max_value=4096),
)
def test_many_cuts_in_one_transfer(sizes: list[int], cuts: list[int], piece_bytes: int) -> None:
    chunks = _site_chunks(sizes)
    receiver = Receiver()
    for cut in cuts:
        if _attempt(chunks, receiver, cut, piece_bytes):
            break
    else:
        assert _attempt(chunks, receiver, None, piece_bytes)
    _check_copy(chunks, receiver)


def test_a_tampered_chunk_is_rejected_and_does_not_move_the_cursor() -> None:
    chunks = _site_chunks([400, 400])
    receiver = Receiver()
    receiver.on_chunk(
        ev.ChunkReceived(1, chunks[0].header_bytes, chunks[0].signature, chunks[0].payload, 0)
    )
    cursor = receiver.cursor
    flipped = bytes([chunks[1].payload[0] ^ 1]) + chunks[1].payload[1:]
    with pytest.raises(ChunkRejected, match="payload is not the one the header names"):
        receiver.on_chunk(
            ev.ChunkReceived(1, chunks[1].header_bytes, chunks[1].signature, flipped, 0)
        )
    assert receiver.cursor == cursor
    foreign = ChunkFactory(SiteSigner.generate()).make(start_ns=T0_NS, stream="hq")
    with pytest.raises(ChunkRejected, match="signature does not verify"):
        accept_chunk(
            EXPECT, TransferCursor(), foreign.header_bytes, foreign.signature, foreign.payload
        )
    with pytest.raises(ChunkRejected, match="not after the cursor"):
        accept_chunk(EXPECT, cursor, chunks[0].header_bytes, chunks[0].signature, chunks[0].payload)
    other = _site_chunks([10])[0]
    with pytest.raises(ChunkRejected, match="not of the stream asked for"):
        accept_chunk(
            TransferExpectation("site-1", "cam-2", "hq", SIGNER.public_key),
            TransferCursor(),
            other.header_bytes,
            other.signature,
            other.payload,
        )


def test_a_chunk_deleted_at_the_site_is_a_counted_gap() -> None:
    chunks = _site_chunks([100, 100, 100])
    first = accept_chunk(
        EXPECT, TransferCursor(), chunks[0].header_bytes, chunks[0].signature, chunks[0].payload
    )
    third = accept_chunk(
        EXPECT,
        TransferCursor().after(first.chunk),
        chunks[2].header_bytes,
        chunks[2].signature,
        chunks[2].payload,
    )
    assert third.missing_before == 1


@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=4),
    drop_at=st.integers(min_value=0, max_value=6000),
    drop_len=st.integers(min_value=1, max_value=600),
)
def test_a_link_that_loses_bytes_never_gets_a_wrong_chunk_committed(
    sizes: list[int], drop_at: int, drop_len: int
) -> None:
    """Bytes lost in the middle: the receiver sees a protocol error or rejects a chunk; what
    it committed is exact; the next connection completes the copy."""
    chunks = _site_chunks(sizes)
    receiver = Receiver()
    central = LinkConnection(role=m.LinkRole.CENTRAL, software="c")
    site = LinkConnection(role=m.LinkRole.SITE, software="s", piece_bytes=512)
    central.send_request(
        m.TransferRequest(1, "cam-1", "hq", 0, 1 << 62, None, 1 << 30, m.Priority.BACKGROUND)
    )
    ChunkListServer(site, chunks).handle(site.receive(central.data_to_send()))
    central.receive(site.data_to_send(1))
    stream = site.data_to_send(1 << 30)
    damaged = stream[:drop_at] + stream[drop_at + drop_len :]
    outcome = "intact"
    for event in central.receive(damaged):
        if isinstance(event, ev.ChunkReceived):
            try:
                receiver.on_chunk(event)
            except ChunkRejected:
                outcome = "rejected"
                break
        elif isinstance(event, ev.ProtocolViolated):
            outcome = "violation"
    end_frame = encode_frame(encode_message(m.StreamEnd(1, m.StreamOutcome.COMPLETE, "")))
    if drop_at < len(stream) - len(end_frame):
        # Bytes lost from the chunks themselves (a loss inside the final StreamEnd only
        # leaves that frame incomplete, after every chunk arrived whole).
        assert outcome != "intact" or receiver.commits < len(chunks)
    for seq, chunk in receiver.committed.items():
        assert (chunk.header_bytes, chunk.payload) == (
            chunks[seq].header_bytes,
            chunks[seq].payload,
        )
    assert _attempt(chunks, receiver, None, 512)
    _check_copy(chunks, receiver)
