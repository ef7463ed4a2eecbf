"""The background pace: the asker sets a rate, the sender spaces its background frames.

The promise (shared/link/pacer.py): in any span of t seconds the background class sends at
most rate * t + burst + the largest frame, live frames are never held back, and a sender
with enough to send keeps the rate itself over the long run. Checked here over two real
connection objects, the time given by the test.
"""

from __future__ import annotations

import bisect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.link import events as ev
from shared.link import messages as m
from shared.link.connection import LinkConnection, LinkUsageError
from shared.link.framing import encode_frame
from shared.link.pacer import NS_PER_S, SendPacer
from shared.link.wire import encode_message
from tests.link.link_pair import Pump, central_end, site_end

MS = 1_000_000


def _joined() -> tuple[LinkConnection, LinkConnection, Pump]:
    central, site = central_end(), site_end()
    pump = Pump(central, site)
    pump.run()
    return central, site, pump


def _open_transfers(
    central: LinkConnection, site: LinkConnection, pump: Pump, count: int, credit: int
) -> list[int]:
    ids = []
    for _ in range(count):
        request_id = central.new_request_id()
        central.send_request(
            m.TransferRequest(request_id, "cam", "hq", 0, 1, None, credit, m.Priority.BACKGROUND)
        )
        ids.append(request_id)
    pump.run()
    return ids


def _send_paced(
    site: LinkConnection, until_ns: int, lateness_ns: list[int]
) -> list[tuple[int, int]]:
    """Drive the site's sending like the session does, waking `lateness_ns[i]` after each
    instant the pace names; (instant, bytes) of each batch sent."""
    sent: list[tuple[int, int]] = []
    now_ns = 0
    step = 0
    while now_ns < until_ns:
        next_ns = site.next_send_ns(now_ns)
        if next_ns is None:
            break
        now_ns = max(now_ns, next_ns) + lateness_ns[step % len(lateness_ns)]
        step += 1
        data = site.data_to_send(64 * 1024, now_ns)
        if data:
            sent.append((now_ns, len(data)))
    return sent


def _most_in_any_window(sent: list[tuple[int, int]], window_ns: int) -> int:
    """The most bytes sent in any window of `window_ns` (each batch counted at its instant)."""
    times = [t for t, _ in sent]
    sums = [0]
    for _, size in sent:
        sums.append(sums[-1] + size)
    most = 0
    for i, (t, _) in enumerate(sent):
        j = bisect.bisect_left(times, t + window_ns)
        most = max(most, sums[j] - sums[i])
    return most


@settings(max_examples=60, deadline=None)
@given(
    rate_bps=st.integers(200_000, 50_000_000),
    streams=st.integers(1, 4),
    chunk_sizes=st.lists(st.integers(1, 300_000), min_size=1, max_size=6),
    lateness_ns=st.lists(st.integers(0, 30 * MS), min_size=1, max_size=8),
)
def test_no_window_holds_more_than_rate_plus_burst_plus_a_frame(
    rate_bps: int, streams: int, chunk_sizes: list[int], lateness_ns: list[int]
) -> None:
    central, site, pump = _joined()
    ids = _open_transfers(central, site, pump, streams, credit=64 << 20)
    assert central.pace_background(rate_bps)
    pump.run()
    assert site.background_pace_bps == rate_bps
    for request_id in ids:
        for size in chunk_sizes:
            site.send_chunk(request_id, b"h" * 600, bytes(64), bytes(size))
    pacer = SendPacer()
    pacer.set_rate(rate_bps)
    assert pacer.burst_bytes is not None
    assert pacer.piece_bytes is not None
    largest_frame = max(pacer.piece_bytes + 32, 600 + 64 + 32)
    sent = _send_paced(site, until_ns=1 << 62, lateness_ns=lateness_ns)
    total = sum(size for _, size in sent)
    assert total >= streams * sum(chunk_sizes)  # everything went, frames around it
    for window_s in (0.1, 1.0):
        window_ns = int(window_s * NS_PER_S)
        bound = rate_bps * window_s / 8 + pacer.burst_bytes + largest_frame
        assert _most_in_any_window(sent, window_ns) <= bound


def test_a_prompt_sender_keeps_the_rate_over_the_long_run() -> None:
    central, site, pump = _joined()
    (request_id,) = _open_transfers(central, site, pump, 1, credit=64 << 20)
    rate_bps = 4_000_000
    central.pace_background(rate_bps)
    pump.run()
    site.send_chunk(request_id, b"h" * 600, bytes(64), bytes(8 << 20))
    # Wakes 3 ms late each time: the burst (10 ms of the rate) covers it.
    sent = _send_paced(site, until_ns=10 * NS_PER_S, lateness_ns=[3 * MS])
    in_10_s = sum(size for t, size in sent if t < 10 * NS_PER_S)
    assert in_10_s == pytest.approx(rate_bps / 8 * 10, rel=0.01)


def test_live_frames_are_never_held_back_by_the_pace() -> None:
    central, site, pump = _joined()
    (transfer,) = _open_transfers(central, site, pump, 1, credit=64 << 20)
    live = central.new_request_id()
    central.send_request(m.LiveRequest(live, "cam", "lq", 1 << 20))
    central.pace_background(100_000)
    pump.run()
    site.send_chunk(transfer, b"h" * 600, bytes(64), bytes(1 << 20))
    assert site.data_to_send(64 * 1024, 0)  # the first paced frame; the bucket is in debt
    assert (site.next_send_ns(1 * MS) or 0) > 1 * MS
    site.send_live(live, None, (m.LivePacket(0, 0, 1, True, 0, b"x" * 1000),))
    assert site.next_send_ns(1 * MS) == 1 * MS
    frames = central.receive(site.data_to_send(64 * 1024, 1 * MS))
    assert [type(e) for e in frames] == [ev.LiveReceived]


def test_lifting_the_pace_lets_background_go_at_once() -> None:
    central, site, pump = _joined()
    (transfer,) = _open_transfers(central, site, pump, 1, credit=64 << 20)
    central.pace_background(100_000)
    pump.run()
    site.send_chunk(transfer, b"h" * 600, bytes(64), bytes(256 * 1024))
    pump.events_a += central.receive(site.data_to_send(64 * 1024, 0))
    assert (site.next_send_ns(0) or 0) > 0
    central.pace_background(None)
    pump.run()  # the pump gives no time: only an unpaced sender can go
    assert site.background_pace_bps is None
    assert site.next_send_ns(0) is None
    assert any(isinstance(e, ev.ChunkReceived) for e in pump.events_a)


def test_a_paced_sender_needs_the_time() -> None:
    central, site, pump = _joined()
    central.pace_background(1_000_000)
    pump.run()
    with pytest.raises(LinkUsageError, match="now_ns"):
        site.data_to_send(1024)


def test_a_peer_of_version_2_is_paced_through_credit_instead() -> None:
    central, site = central_end(), site_end()
    # The site's Hello as a version-2 agent sends it.
    hello = m.Hello(1, 2, m.LinkRole.SITE, "old-site", 1 << 20)

    events = central.receive(encode_frame(encode_message(hello)))
    assert isinstance(events[0], ev.PeerReady)
    assert central.version == 2
    assert central.pace_background(1_000_000) is False
    # And a Pace arriving on a version-2 link is a protocol error naming the version.
    old_central_hello = m.Hello(1, 2, m.LinkRole.CENTRAL, "old-central", 1 << 20)
    site.receive(encode_frame(encode_message(old_central_hello)))
    events = site.receive(encode_frame(encode_message(m.Pace(1000))))
    assert isinstance(events[-1], ev.ProtocolViolated)
    assert "Pace on a link of protocol version 2" in events[-1].error.message


def test_a_pace_below_one_bit_per_second_is_refused() -> None:
    central, _, _ = _joined()
    with pytest.raises(LinkUsageError, match="at least 1 bit"):
        central.pace_background(0)


HQ_HEADER_BYTES = 390
"""The header of a real 1 s HQ chunk of 10 frames a second (tests/link_io/link_site.py's
cameras); its head frame, with the 64-byte signature, is about 470 bytes, sent whole."""
LQ_HEADER_BYTES = 296  # the same site's 1 s LQ chunk, 5 frames a second
LONG_HEADER_BYTES = 1200  # about a 2 s chunk of 30 frames a second
HQ_PAYLOAD_BYTES = 36_000  # 1 s at 300 kbit/s
HEAD_TOO_LARGE = pytest.mark.xfail(
    strict=True,
    reason="a chunk's head goes as one frame: at 64 kbit/s the 470-byte head of a 1 s HQ "
    "chunk is 5.9% of a second by itself, so a window that holds one is over by more than "
    "5%; the API refuses caps below 256 kbit/s (central/site_management.py, "
    "tests/central/api/test_bad_input.py)",
)
RUN_S = 60


def _saturated_run(rate_bps: int, header_bytes: int) -> list[tuple[int, int]]:
    """Two transfers of 1 s HQ chunks, more than the pace lets through in `RUN_S`, sent by
    a writer that wakes 0 to 3 ms late; (instant, bytes) of each batch in the run."""
    central, site, pump = _joined()
    ids = _open_transfers(central, site, pump, 2, credit=64 << 20)
    assert central.pace_background(rate_bps)
    pump.run()
    chunks_each = rate_bps * RUN_S // 8 // HQ_PAYLOAD_BYTES + 2
    for _ in range(chunks_each):
        for request_id in ids:
            site.send_chunk(request_id, b"h" * header_bytes, bytes(64), bytes(HQ_PAYLOAD_BYTES))
    sent = _send_paced(site, RUN_S * NS_PER_S, lateness_ns=[0, 1 * MS, 3 * MS, 0, 2 * MS])
    assert site.next_send_ns(RUN_S * NS_PER_S) is not None  # still more to send: saturated
    return sent


def _window_sums(sent: list[tuple[int, int]], window_ns: int) -> list[int]:
    """Bytes in [t, t + window) for each batch instant t whose window ends within the run."""
    times = [t for t, _ in sent]
    sums = [0]
    for _, size in sent:
        sums.append(sums[-1] + size)
    return [
        sums[bisect.bisect_left(times, t + window_ns)] - sums[i]
        for i, t in enumerate(times)
        if t + window_ns <= times[-1]
    ]


@pytest.mark.parametrize(
    ("rate_bps", "header_bytes"),
    [
        (64_000, LQ_HEADER_BYTES),
        pytest.param(64_000, HQ_HEADER_BYTES, marks=HEAD_TOO_LARGE),
        (128_000, HQ_HEADER_BYTES),
        (256_000, HQ_HEADER_BYTES),
        (256_000, LONG_HEADER_BYTES),
        (1_000_000, HQ_HEADER_BYTES),
        (1_000_000, LONG_HEADER_BYTES),
    ],
)
def test_every_window_of_a_long_run_keeps_the_cap(rate_bps: int, header_bytes: int) -> None:
    # The retrieval cap's promise: every 1 s window at most 5% over, every 10 s window
    # within 2%. Pieces and the burst shrink with the rate, so what is left over a window
    # is 10 ms of the rate and the larger of a piece and a chunk's head.
    sent = _saturated_run(rate_bps, header_bytes)
    per_s = rate_bps / 8
    one_s = _window_sums(sent, NS_PER_S)
    ten_s = _window_sums(sent, 10 * NS_PER_S)
    assert len(ten_s) > 100
    assert max(one_s) <= per_s * 1.05, max(one_s) / per_s
    assert max(ten_s) <= per_s * 10 * 1.02, max(ten_s) / (per_s * 10)
    assert min(ten_s) >= per_s * 10 * 0.98, min(ten_s) / (per_s * 10)


@pytest.mark.parametrize(
    ("rate_bps", "piece", "burst"),
    [(64_000, 240, 80), (256_000, 960, 320), (1_000_000, 2048, 1250), (4_000_000, 5000, 5000)],
)
def test_pieces_and_burst_shrink_with_the_rate(rate_bps: int, piece: int, burst: int) -> None:
    pacer = SendPacer()
    pacer.set_rate(rate_bps)
    assert (pacer.piece_bytes, pacer.burst_bytes) == (piece, burst)
