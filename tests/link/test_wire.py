"""Every message survives the wire unchanged; anything else is a ProtocolError that names it."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.link import messages as m
from shared.link.errors import ErrorCode, ProtocolError
from shared.link.wire import decode_message, encode_message, message_type_code, message_types

request_ids = st.integers(min_value=1, max_value=(1 << 53) - 1)
times = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
ids = st.text(min_size=1, max_size=40)
texts = st.text(max_size=100)
credits = st.integers(min_value=0, max_value=1 << 40)
bodies = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(1 << 63), (1 << 64) - 1)
        | st.text(max_size=20)
        | st.binary(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        ),
        max_leaves=10,
    ),
    max_size=5,
)
live_packets = st.builds(
    m.LivePacket,
    times,
    times,
    st.integers(min_value=0, max_value=1 << 40),
    st.booleans(),
    times,
    st.binary(max_size=64),
)

STRATEGIES: dict[type[Any], st.SearchStrategy[Any]] = {
    m.Hello: st.builds(
        m.Hello,
        st.integers(1, 65535),
        st.integers(1, 65535),
        st.sampled_from(m.LinkRole),
        st.text(max_size=50),
        st.integers(1, 1 << 31),
    ),
    m.Ping: st.builds(m.Ping, st.integers(0, (1 << 64) - 1)),
    m.Pong: st.builds(m.Pong, st.integers(0, (1 << 64) - 1)),
    m.Goodbye: st.builds(m.Goodbye, st.text(max_size=20), texts),
    m.Pace: st.builds(m.Pace, st.integers(0, 1 << 48)),
    m.SiteInfoRequest: st.builds(m.SiteInfoRequest, request_ids),
    m.DeviceListRequest: st.builds(m.DeviceListRequest, request_ids),
    m.StatusRequest: st.builds(m.StatusRequest, request_ids),
    m.TimelineRequest: st.builds(m.TimelineRequest, request_ids, ids, ids, times, times),
    m.TransferRequest: st.builds(
        m.TransferRequest,
        request_ids,
        ids,
        ids,
        times,
        times,
        st.none() | st.integers(0, (1 << 63) - 1),
        credits,
        st.sampled_from(m.Priority),
    ),
    m.LiveRequest: st.builds(m.LiveRequest, request_ids, ids, ids, credits),
    m.EventsRequest: st.builds(
        m.EventsRequest, request_ids, st.lists(ids, max_size=5).map(tuple), credits
    ),
    m.PlaceHoldRequest: st.builds(
        m.PlaceHoldRequest,
        request_ids,
        ids,
        st.lists(ids, max_size=3).map(tuple),
        times,
        times,
        times,
        texts,
    ),
    m.ListHoldsRequest: st.builds(m.ListHoldsRequest, request_ids),
    m.ReleaseHoldRequest: st.builds(m.ReleaseHoldRequest, request_ids, st.integers(0, 1 << 40)),
    m.Credit: st.builds(m.Credit, request_ids, st.integers(1, 1 << 40)),
    m.Cancel: st.builds(m.Cancel, request_ids),
    m.Reply: st.builds(m.Reply, request_ids, bodies),
    m.Failure: st.builds(m.Failure, request_ids, st.sampled_from(m.FailureCode), texts),
    m.ChunkHead: st.builds(
        m.ChunkHead,
        request_ids,
        st.binary(min_size=1, max_size=200),
        st.binary(min_size=64, max_size=64),
        st.integers(0, 1 << 28),
    ),
    m.ChunkBody: st.builds(m.ChunkBody, request_ids, st.binary(min_size=1, max_size=300)),
    m.LivePackets: st.builds(
        m.LivePackets,
        request_ids,
        st.none() | st.binary(min_size=1, max_size=50),
        st.lists(live_packets, max_size=4).map(tuple),
    ),
    m.LiveSealed: st.builds(
        m.LiveSealed,
        request_ids,
        st.binary(min_size=1, max_size=200),
        st.binary(min_size=64, max_size=64),
    ),
    m.EventItem: st.builds(m.EventItem, request_ids, ids, st.text(max_size=40), times, bodies),
    m.StreamEnd: st.builds(m.StreamEnd, request_ids, st.sampled_from(m.StreamOutcome), texts),
}


def test_every_message_type_has_a_strategy_and_a_unique_code() -> None:
    assert set(STRATEGIES) == set(message_types())
    codes = [message_type_code(t) for t in message_types()]
    assert len(codes) == len(set(codes))


@given(st.one_of(*STRATEGIES.values()))
def test_round_trip(message: Any) -> None:
    decoded = decode_message(encode_message(message))
    assert decoded == message
    assert type(decoded) is type(message)
    for f in fields(message):  # enums come back as enums, tuples as tuples
        assert type(getattr(decoded, f.name)) is type(getattr(message, f.name))


@given(st.binary(max_size=200))
def test_garbage_is_a_protocol_error_and_nothing_else(data: bytes) -> None:
    code = None
    try:
        decode_message(data)
    except ProtocolError as exc:
        code = exc.code
    assert code in (None, ErrorCode.MALFORMED, ErrorCode.OVERSIZED)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([14, 1, "cam", "hq", 0, 10, None, 100, 7], "TransferRequest.priority: unknown value 7"),
        ([14, 1, "", "hq", 0, 10, None, 100, 2], "TransferRequest.device_id: must not be empty"),
        ([14, 0, "cam", "hq", 0, 10, None, 100, 2], "TransferRequest.request_id: 0 is outside"),
        ([14, 1, "cam", "hq", "0", 10, None, 100, 2], "TransferRequest.start_ns: expected an"),
        ([14, 1, "cam"], "TransferRequest: 2 fields, expected 8"),
        ([30, 5, 0], "Credit.grant_bytes: 0 is outside"),
        ([42, 1, b"h", b"short", 10], "ChunkHead.signature: 5 bytes, expected 64..64"),
        ([47, 1, b"h", b"short"], "LiveSealed.signature: 5 bytes, expected 64..64"),
        ([47, 1, b"", bytes(64)], "LiveSealed.header: 0 bytes, expected 1.."),
        ([47, 1, b"h"], "LiveSealed: 2 fields, expected 3 (request_id, header, signature)"),
        (
            [44, 1, None, [[0, 0, 1, True, 0, b"k"], [1, 1, 1, 1, 0, b"p"]]],
            "LivePackets.packets[1].keyframe",
        ),
        ([44, 1, None, [[0, 0, -1, True, 0, b"k"]]], "LivePackets.packets[0].duration"),
        ([44, 1, None, [[0, 0, 1, True, 2**63, b"k"]]], "LivePackets.packets[0].wall_ns"),
        ([44, 1, None, [[0, 0, 1, True, 0, "k"]]], "LivePackets.packets[0].data"),
        ([44, 1, None, [[0, 0, 1, True, 0]]], "LivePackets.packets[0]: a live packet is"),
        ([40, 1, {1: 2}], "not allowed for map key"),
        ([99], "unknown message type 99"),
        ("text", "a frame must hold a non-empty msgpack array"),
        ([True, 1], "unknown message type True"),
    ],
)
def test_a_bad_field_is_named(items: object, expected: str) -> None:
    body = msgpack.packb(items, use_bin_type=True)
    with pytest.raises(ProtocolError) as caught:
        decode_message(body)
    assert expected in caught.value.message


def test_an_overlong_id_is_oversized() -> None:
    body = msgpack.packb([13, 1, "d" * 129, "hq", 0, 1], use_bin_type=True)
    with pytest.raises(ProtocolError) as caught:
        decode_message(body)
    assert caught.value.code is ErrorCode.OVERSIZED
    assert "TimelineRequest.device_id" in caught.value.message


def test_live_sealed_is_type_47_and_keeps_the_header_bytes_exactly() -> None:
    header = bytes(range(256)) * 3  # any bytes: the header is carried, never re-encoded
    message = m.LiveSealed(7, header, b"s" * 64)
    body = encode_message(message)
    assert msgpack.unpackb(body, raw=False)[0] == 47 == message_type_code(m.LiveSealed)
    decoded = decode_message(body)
    assert isinstance(decoded, m.LiveSealed)
    assert decoded.header == header
    assert decoded.signature == b"s" * 64
