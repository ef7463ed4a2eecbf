"""The connection state machine: handshake, requests and answers, streams, faults."""

from __future__ import annotations

import pytest

from shared.link import events as ev
from shared.link import messages as m
from shared.link.connection import LinkConnection, LinkUsageError
from shared.link.errors import ErrorCode
from shared.link.framing import encode_frame
from shared.link.wire import decode_message, encode_message
from shared.signing import SiteSigner
from tests.link.link_pair import ChunkListServer, Pump, central_end, site_end
from tests.store.store_chunks import T0_NS, ChunkFactory


def _open_pair() -> tuple[LinkConnection, LinkConnection, Pump]:
    central, site = central_end(), site_end()
    pump = Pump(central, site)
    pump.run()
    assert isinstance(pump.events_a[0], ev.PeerReady)
    assert isinstance(pump.events_b[0], ev.PeerReady)
    return central, site, pump


def _frame(message: m.Message) -> bytes:
    return encode_frame(encode_message(message))


def _violation(events: list[ev.LinkEvent]) -> ev.ProtocolViolated:
    assert events, "expected a protocol violation"
    last = events[-1]
    assert isinstance(last, ev.ProtocolViolated), events
    return last


def _goodbye(connection: LinkConnection) -> m.Goodbye:
    data = connection.data_to_send(1 << 30)
    frames = []
    while data:
        length = int.from_bytes(data[:4], "big")
        frames.append(decode_message(data[4 : 4 + length]))
        data = data[4 + length :]
    assert isinstance(frames[-1], m.Goodbye), frames
    return frames[-1]


def test_handshake_agrees_on_the_version_and_learns_the_peer() -> None:
    central, site, _ = _open_pair()
    assert central.version == site.version == m.PROTOCOL_VERSION
    assert central.peer is not None
    assert central.peer.role is m.LinkRole.SITE
    assert site.peer is not None
    assert site.peer.software == "test-central"


def test_no_common_version_is_incompatible() -> None:
    site = site_end()
    hello = m.Hello(
        m.PROTOCOL_VERSION + 1, m.PROTOCOL_VERSION + 3, m.LinkRole.CENTRAL, "x", 1 << 20
    )
    violation = _violation(site.receive(_frame(hello)))
    assert violation.error.code is ErrorCode.INCOMPATIBLE
    low, high = m.PROTOCOL_VERSION + 1, m.PROTOCOL_VERSION + 3
    assert f"the peer speaks protocol versions {low}..{high}" in violation.error.message
    assert f"this side {m.MIN_PROTOCOL_VERSION}..{m.PROTOCOL_VERSION}" in violation.error.message
    assert site.closed
    assert _goodbye(site).code == "incompatible"


def test_two_sites_cannot_talk() -> None:
    violation = _violation(site_end().receive(site_end().data_to_send()))
    assert "both ends claim the role site" in violation.error.message


def test_anything_before_hello_is_out_of_order() -> None:
    violation = _violation(site_end().receive(_frame(m.SiteInfoRequest(1))))
    assert violation.error.code is ErrorCode.UNEXPECTED
    assert "expected Hello first, got SiteInfoRequest" in violation.error.message


def test_request_and_reply() -> None:
    central, site, pump = _open_pair()
    central.send_request(m.SiteInfoRequest(central.new_request_id()))
    pump.run()
    (received,) = pump.events_b[1:]
    assert isinstance(received, ev.RequestReceived)
    site.reply(received.request.request_id, {"id": "site-1", "name": "Shop"})
    pump.run()
    assert pump.events_a[-1] == ev.ReplyReceived(1, {"id": "site-1", "name": "Shop"})


def test_a_failure_answers_the_request_and_the_link_goes_on() -> None:
    central, site, pump = _open_pair()
    central.send_request(m.TimelineRequest(1, "nope", "hq", 0, 10))
    pump.run()
    site.fail(1, m.FailureCode.NOT_FOUND, "no device 'nope'")
    central.send_request(m.StatusRequest(2))
    pump.run()
    site.reply(2, {"ok": True})
    pump.run()
    assert pump.events_a[-2:] == [
        ev.FailureReceived(1, m.FailureCode.NOT_FOUND, "no device 'nope'"),
        ev.ReplyReceived(2, {"ok": True}),
    ]


def test_answering_twice_or_the_wrong_way_is_a_local_usage_error() -> None:
    central, site, pump = _open_pair()
    central.send_request(m.StatusRequest(1))
    central.send_request(m.EventsRequest(2, (), 10_000))
    pump.run()
    site.reply(1, {})
    with pytest.raises(LinkUsageError, match="not waiting"):
        site.reply(1, {})
    with pytest.raises(LinkUsageError, match="is a stream"):
        site.reply(2, {})
    with pytest.raises(LinkUsageError, match="never received"):
        site.send_chunk(9, b"h", bytes(64), b"")
    with pytest.raises(LinkUsageError, match="not a TransferRequest"):
        site.send_chunk(2, b"h", bytes(64), b"")
    with pytest.raises(LinkUsageError, match="does not follow"):
        central.send_request(m.StatusRequest(2))


def _chunks(count: int, payload_size: int = 150_000) -> list:  # type: ignore[type-arg]
    factory = ChunkFactory(SiteSigner.generate())
    return [
        factory.make(start_ns=T0_NS + i * 10**9, duration_ns=10**9, payload_size=payload_size)
        for i in range(count)
    ]


def test_a_transfer_delivers_every_chunk_whole_and_in_order() -> None:
    central, site, pump = _open_pair()
    chunks = _chunks(5)
    server = ChunkListServer(site, chunks)
    pump.handle_b = server.handle
    granted: list[int] = []

    def grant_after_each_chunk(events: list[ev.LinkEvent]) -> None:
        for event in events:
            if isinstance(event, ev.ChunkReceived):
                central.grant(event.request_id, event.frame_bytes)
                granted.append(event.frame_bytes)

    pump.handle_a = grant_after_each_chunk
    central.send_request(
        m.TransferRequest(1, "cam-1", "lq", 0, 1 << 62, None, 200_000, m.Priority.BACKGROUND)
    )
    pump.run()
    received = [e for e in pump.events_a if isinstance(e, ev.ChunkReceived)]
    assert [(r.header, r.signature, r.payload) for r in received] == [
        (c.header_bytes, c.signature, c.payload) for c in chunks
    ]
    end = pump.events_a[-1]
    assert end == ev.StreamEnded(1, m.StreamOutcome.COMPLETE, "", partial_chunk_discarded=False)
    assert pump.bytes_a_to_b > 0
    assert central.outstanding_credit(1) == 0  # the stream is over


def test_byte_at_a_time_gives_the_same_events() -> None:
    central, site = central_end(), site_end()
    chunks = _chunks(2, payload_size=70_000)
    wire = central.data_to_send()
    central.send_request(
        m.TransferRequest(1, "cam-1", "lq", 0, 1 << 62, None, 1 << 30, m.Priority.INTERACTIVE)
    )
    wire += central.data_to_send()
    events: list[ev.LinkEvent] = []
    for byte in wire:
        events += site.receive(bytes([byte]))
    ChunkListServer(site, chunks).handle(events)
    answer = site.data_to_send(1 << 30)
    received: list[ev.LinkEvent] = []
    for byte in answer:
        received += central.receive(bytes([byte]))
    payloads = [e.payload for e in received if isinstance(e, ev.ChunkReceived)]
    assert payloads == [c.payload for c in chunks]
    assert isinstance(received[-1], ev.StreamEnded)


def test_cancel_ends_the_stream_and_drops_what_was_queued() -> None:
    central, site, pump = _open_pair()
    chunks = _chunks(3, payload_size=300_000)
    central.send_request(
        m.TransferRequest(1, "cam-1", "lq", 0, 1 << 62, None, 1 << 30, m.Priority.BACKGROUND)
    )
    pump.step()
    pump.step()
    ChunkListServer(site, chunks).handle(pump.events_b[-1:])
    first_piece = site.data_to_send(100_000)  # part of the first chunk is on its way
    central.receive(first_piece)
    central.cancel(1)
    pump.run()
    cancelled = [e for e in pump.events_b if isinstance(e, ev.StreamCancelled)]
    assert cancelled == [ev.StreamCancelled(1)]
    assert pump.events_a[-1] == ev.StreamEnded(
        1, m.StreamOutcome.CANCELLED, "", partial_chunk_discarded=True
    )
    assert not any(isinstance(e, ev.ChunkReceived) for e in pump.events_a)
    assert site.send_chunk(1, b"h", bytes(64), b"late") is False  # a late producer is told


def test_credit_that_crosses_the_end_of_a_stream_is_harmless() -> None:
    central, site, pump = _open_pair()
    central.send_request(m.EventsRequest(1, (), 1000))
    pump.run()
    site.end_stream(1, m.StreamOutcome.COMPLETE)
    central.grant(1, 5000)  # sent before the end arrives
    pump.run()
    assert not any(isinstance(e, ev.ProtocolViolated) for e in pump.events_a + pump.events_b)
    assert not site.closed


def test_items_beyond_the_credit_close_the_link() -> None:
    central, _site, pump = _open_pair()
    central.send_request(m.EventsRequest(1, (), 40))
    pump.run()
    rogue = _frame(m.EventItem(1, "motion", "cam-1", 5, {"boxes": [1, 2, 3] * 10}))
    violation = _violation(central.receive(rogue))
    assert violation.error.code is ErrorCode.FLOW_CONTROL
    assert "stream 1" in violation.error.message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (m.ChunkBody(1, b"x"), "ChunkBody on stream 1 without a ChunkHead"),
        (m.Reply(7, {}), "Reply to request 7, which awaits no reply"),
        (m.StreamEnd(9, m.StreamOutcome.COMPLETE, ""), "StreamEnd for request 9"),
        (m.LivePackets(1, None, ()), "LivePackets on stream 1, a TransferRequest"),
        (m.LiveSealed(1, b"h", bytes(64)), "LiveSealed on stream 1, a TransferRequest"),
        (m.EventItem(3, "motion", "cam", 1, {}), "EventItem for request 3, which is no open"),
        (m.Hello(1, 1, m.LinkRole.SITE, "again", 1 << 20), "a second Hello"),
    ],
)
def test_out_of_order_answers_are_named(message: m.Message, expected: str) -> None:
    central, _, pump = _open_pair()
    central.send_request(
        m.TransferRequest(1, "cam-1", "lq", 0, 1, None, 1 << 20, m.Priority.BACKGROUND)
    )
    pump.run()
    violation = _violation(central.receive(_frame(message)))
    assert violation.error.code is ErrorCode.UNEXPECTED
    assert expected in violation.error.message
    assert central.closed
    assert central.receive(_frame(m.Ping(1))) == []  # nothing more after the fault


def test_a_chunk_head_before_the_previous_payload_is_complete() -> None:
    central, _, pump = _open_pair()
    central.send_request(
        m.TransferRequest(1, "cam-1", "lq", 0, 1, None, 1 << 20, m.Priority.BACKGROUND)
    )
    pump.run()
    head = _frame(m.ChunkHead(1, b"h", bytes(64), 10))
    events = central.receive(head + _frame(m.ChunkBody(1, b"12345")) + head)
    assert "before the previous chunk's payload was complete (5 of 10" in (
        _violation(events).error.message
    )


def test_more_payload_than_announced_is_malformed() -> None:
    central, _, pump = _open_pair()
    central.send_request(
        m.TransferRequest(1, "cam-1", "lq", 0, 1, None, 1 << 20, m.Priority.BACKGROUND)
    )
    pump.run()
    events = central.receive(
        _frame(m.ChunkHead(1, b"h", bytes(64), 3)) + _frame(m.ChunkBody(1, b"1234"))
    )
    assert _violation(events).error.code is ErrorCode.MALFORMED


def test_request_ids_must_grow() -> None:
    central, site, pump = _open_pair()
    central.send_request(m.StatusRequest(5))
    pump.run()
    violation = _violation(site.receive(_frame(m.StatusRequest(5))))
    assert "request id 5, not above the last one (5)" in violation.error.message


def test_too_many_open_requests_are_refused_one_by_one() -> None:
    central = central_end()
    site = LinkConnection(role=m.LinkRole.SITE, software="s", max_open_requests=2)
    pump = Pump(central, site)
    pump.run()
    for request_id in (1, 2, 3):
        central.send_request(m.StatusRequest(request_id))
    pump.run()
    assert pump.events_a[-1] == ev.FailureReceived(
        3, m.FailureCode.REFUSED, "more than 2 requests open on this link"
    )
    assert [e.request.request_id for e in pump.events_b if isinstance(e, ev.RequestReceived)] == [
        1,
        2,
    ]


def test_ping_is_answered_and_goodbye_closes() -> None:
    central, site, pump = _open_pair()
    central.ping(42)
    pump.run()
    assert pump.events_a[-1] == ev.PongReceived(42)
    site.close(message="shutting down")
    pump.run()
    last: ev.LinkEvent = pump.events_a[-1]
    assert last == ev.PeerClosed("closed", "shutting down")
    assert central.closed
    assert site.closed
    with pytest.raises(LinkUsageError):
        central.send_request(m.StatusRequest(central.new_request_id()))


def test_live_goes_before_a_background_transfer() -> None:
    central, site, pump = _open_pair()
    central.send_request(
        m.TransferRequest(1, "cam-1", "lq", 0, 1 << 62, None, 1 << 30, m.Priority.BACKGROUND)
    )
    central.send_request(m.LiveRequest(2, "cam-1", "lq", 1 << 20))
    pump.run()
    ChunkListServer(site, _chunks(4, payload_size=500_000)).handle(pump.events_b[1:2])
    first = site.data_to_send(64 * 1024)  # the transfer starts
    packet = m.LivePacket(0, 0, 3000, True, T0_NS, b"\x00\x00\x00\x01" + b"k" * 1000)
    site.send_live(2, None, (packet,))
    second = site.data_to_send(64 * 1024)
    events = central.receive(first + second)
    assert not any(isinstance(e, ev.ChunkReceived) for e in events)
    assert isinstance(events[-1], ev.LiveReceived)  # live within the next batch
    assert second.index(encode_message(m.LivePackets(2, None, (packet,)))) < 64


# -- seals on live streams (protocol version 2) ------------------------------------------------

LIVE_PACKET = m.LivePacket(0, 0, 3000, True, T0_NS, b"\x00\x00\x00\x01" + b"k" * 100)


def _old_peer_hello(role: m.LinkRole) -> bytes:
    return _frame(m.Hello(1, 1, role, "old", 1 << 20))


def test_a_seal_follows_the_packets_and_is_charged_to_credit() -> None:
    central, site, pump = _open_pair()
    assert central.live_sealed_agreed
    assert site.live_sealed_agreed
    central.send_request(m.LiveRequest(1, "cam-1", "lq", 100_000))
    pump.run()
    assert site.send_live(1, b"codec", (LIVE_PACKET,))
    assert site.send_live_sealed(1, b"signed header", b"s" * 64)
    pump.run()
    packets, seal = pump.events_a[-2:]
    assert isinstance(packets, ev.LiveReceived)
    assert seal == ev.LiveSealedReceived(
        1, b"signed header", b"s" * 64, len(_frame(m.LiveSealed(1, b"signed header", b"s" * 64)))
    )
    assert central.outstanding_credit(1) == 100_000 - packets.frame_bytes - seal.frame_bytes


def test_a_seal_waits_for_credit_like_any_item() -> None:
    central, site, pump = _open_pair()
    seal_frame = len(_frame(m.LiveSealed(1, b"h" * 100, b"s" * 64)))
    central.send_request(m.LiveRequest(1, "cam-1", "lq", seal_frame - 1))
    pump.run()
    assert site.send_live_sealed(1, b"h" * 100, b"s" * 64)  # queued, not sent
    pump.run()
    assert not any(isinstance(e, ev.LiveSealedReceived) for e in pump.events_a)
    central.grant(1, 1)
    pump.run()
    assert isinstance(pump.events_a[-1], ev.LiveSealedReceived)


def test_a_seal_beyond_the_credit_closes_the_link() -> None:
    central, _site, pump = _open_pair()
    central.send_request(m.LiveRequest(1, "cam-1", "lq", 50))
    pump.run()
    violation = _violation(central.receive(_frame(m.LiveSealed(1, b"h" * 100, b"s" * 64))))
    assert violation.error.code is ErrorCode.FLOW_CONTROL


def test_a_version_1_peer_agrees_on_1_and_is_sent_no_seals() -> None:
    site = site_end()
    (ready,) = site.receive(_old_peer_hello(m.LinkRole.CENTRAL))
    assert isinstance(ready, ev.PeerReady)
    assert site.version == 1
    assert not site.live_sealed_agreed
    site.data_to_send()  # our Hello
    (request,) = site.receive(_frame(m.LiveRequest(1, "cam-1", "lq", 100_000)))
    assert isinstance(request, ev.RequestReceived)
    assert site.send_live(1, None, (LIVE_PACKET,))
    assert site.send_live_sealed(1, b"header", b"s" * 64) is False
    sent = site.data_to_send(1 << 20)
    assert sent == _frame(m.LivePackets(1, None, (LIVE_PACKET,)))  # nothing else


def test_a_seal_on_a_version_1_link_is_a_protocol_error() -> None:
    central = central_end()
    central.receive(_old_peer_hello(m.LinkRole.SITE))
    assert central.version == 1
    central.send_request(m.LiveRequest(1, "cam-1", "lq", 100_000))
    violation = _violation(central.receive(_frame(m.LiveSealed(1, b"h", bytes(64)))))
    assert violation.error.code is ErrorCode.UNEXPECTED
    assert "LiveSealed on a link of protocol version 1; it needs 2" in violation.error.message


def test_seals_after_a_cancel_are_dropped_by_the_asker() -> None:
    central, site, pump = _open_pair()
    central.send_request(m.LiveRequest(1, "cam-1", "lq", 100_000))
    pump.run()
    assert site.send_live_sealed(1, b"h", bytes(64))  # queued as the cancel is on its way
    central.cancel(1)
    pump.run()
    assert not any(isinstance(e, ev.LiveSealedReceived) for e in pump.events_a)
    assert pump.events_a[-1] == ev.StreamEnded(1, m.StreamOutcome.CANCELLED, "", False)
    assert site.send_live_sealed(1, b"h", bytes(64)) is False  # the stream is over


def test_chunk_started_tells_the_credit_left_when_the_head_came_not_when_read() -> None:
    """A head and the first payload pieces often come in one message; by the time the
    receiver reads ChunkStarted the pieces have used credit too. `credit_left` is the credit
    just after the head, what the whole payload can use, so a receiver that lends the rest
    does not lend those pieces' bytes twice."""
    central, site, pump = _open_pair()
    window = 50_000
    chunk = _chunks(1, payload_size=120_000)[0]
    central.send_request(
        m.TransferRequest(1, "cam-1", "hq", 0, 1 << 62, None, window, m.Priority.BACKGROUND)
    )
    pump.step()
    pump.step()
    ChunkListServer(site, [chunk]).handle(pump.events_b[-1:])
    events = central.receive(site.data_to_send(1 << 30))  # the head and a window of payload
    [started] = [e for e in events if isinstance(e, ev.ChunkStarted)]
    head_frame = len(_frame(m.ChunkHead(1, chunk.header_bytes, chunk.signature, 120_000)))
    assert started.payload_size == 120_000
    assert started.credit_left == window - head_frame
    assert central.outstanding_credit(1) < started.credit_left  # the pieces used some
