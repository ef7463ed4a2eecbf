"""Flow control: whatever the grants and sizes, a sender never exceeds its credit."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.link import events as ev
from shared.link import messages as m
from shared.link.connection import LinkConnection
from tests.link.link_pair import Pump


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    return {
        "piece_bytes": draw(st.integers(min_value=64, max_value=70_000)),
        "initial": [draw(st.integers(min_value=0, max_value=50_000)) for _ in range(3)],
        "payloads": draw(
            st.lists(
                st.tuples(st.integers(0, 2), st.integers(min_value=0, max_value=90_000)),
                min_size=1,
                max_size=12,
            )
        ),
        "grants": draw(st.lists(st.integers(min_value=1, max_value=60_000), max_size=40)),
        "send_limits": draw(st.lists(st.integers(min_value=1, max_value=100_000), min_size=1)),
    }


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_the_sender_never_exceeds_its_credit(scenario: dict[str, object]) -> None:
    central = LinkConnection(role=m.LinkRole.CENTRAL, software="c")
    site = LinkConnection(
        role=m.LinkRole.SITE,
        software="s",
        piece_bytes=scenario["piece_bytes"],  # type: ignore[arg-type]
    )
    pump = Pump(central, site)
    pump.run()
    initial: list[int] = scenario["initial"]  # type: ignore[assignment]
    priorities = (m.Priority.BACKGROUND, m.Priority.INTERACTIVE, m.Priority.BACKGROUND)
    for index, (credit, priority) in enumerate(zip(initial, priorities, strict=True)):
        central.send_request(
            m.TransferRequest(index + 1, "cam", "hq", 0, 1, None, credit, priority)
        )
    pump.run()
    granted = {rid: initial[rid - 1] for rid in (1, 2, 3)}
    sent_payloads: dict[int, list[bytes]] = {1: [], 2: [], 3: []}
    for stream, size in scenario["payloads"]:  # type: ignore[attr-defined]
        payload = bytes([stream]) * size
        site.send_chunk(stream + 1, b"header", bytes(64), payload)
        sent_payloads[stream + 1].append(payload)
    limits: list[int] = scenario["send_limits"]  # type: ignore[assignment]
    grants: list[int] = scenario["grants"]  # type: ignore[assignment]
    step = 0
    seen: list[ev.LinkEvent] = []
    while True:
        data = site.data_to_send(limits[step % len(limits)])
        events = central.receive(data)
        seen += events
        assert not any(isinstance(e, ev.ProtocolViolated) for e in events), events
        for rid in (1, 2, 3):  # the sender's own account agrees with the receiver's
            stream = site._out.stream(rid)
            if stream is not None:
                assert stream.credit.sent_bytes <= granted[rid]
                assert stream.credit.available == granted[rid] - stream.credit.sent_bytes
        if step < len(grants):
            rid = 1 + step % 3
            central.grant(rid, grants[step])
            granted[rid] += grants[step]
            site.receive(central.data_to_send())
        elif not data:
            break
        step += 1
    for rid in (1, 2, 3):  # generous credit at the end: everything arrives, whole and in order
        central.grant(rid, 10_000_000)
    for rid in (1, 2, 3):
        site.end_stream(rid, m.StreamOutcome.COMPLETE)
    site.receive(central.data_to_send())
    pump.run()
    received: dict[int, list[bytes]] = {1: [], 2: [], 3: []}
    for event in seen + pump.events_a:
        if isinstance(event, ev.ChunkReceived):
            received[event.request_id].append(event.payload)
    assert received == sent_payloads
