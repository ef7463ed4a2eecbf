"""The site's retrieval bandwidth cap: bytes admitted per window, order, rate changes and
cancelled waiters, on a manual clock; then real bytes over loopback on the system clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from central.retrieval.bandwidth_cap import MIN_GRANT_PIECE_BYTES, BandwidthCap
from shared.clock import NS_PER_S, ManualClock, SystemClock
from tests.fakes.held_clock import HeldClock

MBIT = 1_000_000

Admission = tuple[int, int]  # (monotonic ns when admitted, bytes)


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Let the other tasks run until `condition` holds (bounded: a fixed number of steps)."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def _settle() -> None:
    """Let every runnable task run as far as it can (a fixed number of loop steps)."""
    for _ in range(50):
        await asyncio.sleep(0)


def _worst_window_bytes(admissions: list[Admission], window_ns: int) -> int:
    """The most bytes admitted in any window [t, t + window_ns) (the worst such window starts
    at an admission)."""
    ordered = sorted(admissions)
    worst = total = 0
    first = 0
    for last in range(len(ordered)):
        total += ordered[last][1]
        while ordered[last][0] >= ordered[first][0] + window_ns:
            total -= ordered[first][1]
            first += 1
        worst = max(worst, total)
    return worst


def _bytes_between(admissions: list[Admission], start_ns: int, end_ns: int) -> int:
    return sum(size for at_ns, size in admissions if start_ns <= at_ns < end_ns)


async def _run_acquirers(
    cap: BandwidthCap,
    clock: ManualClock,
    *,
    acquirers: int,
    until_ns: int,
    on_admitted: Callable[[], None] = lambda: None,
) -> dict[int, list[Admission]]:
    """`acquirers` tasks asking for pieces of random size (at most the cap's piece) until the
    clock passes `until_ns`; what each was admitted, and when."""
    admitted: dict[int, list[Admission]] = {index: [] for index in range(acquirers)}

    async def acquire_pieces(index: int) -> None:
        rng = random.Random(index)
        while clock.monotonic_ns() < until_ns:
            piece = cap.grant_piece_bytes
            assert piece is not None
            size = rng.randint(piece // 4, piece)
            await cap.acquire(size)
            admitted[index].append((clock.monotonic_ns(), size))
            on_admitted()

    await asyncio.gather(*(acquire_pieces(index) for index in range(acquirers)))
    return admitted


@pytest.mark.parametrize("rate_bps", [1 * MBIT, 8 * MBIT, 100 * MBIT])
async def test_every_second_holds_at_most_the_cap_and_its_burst(rate_bps: int) -> None:
    clock = ManualClock()
    cap = BandwidthCap(clock, rate_bps)
    per_s = rate_bps // 8
    admitted = await _run_acquirers(cap, clock, acquirers=4, until_ns=10 * NS_PER_S)
    everything = [a for one in admitted.values() for a in one]

    assert cap.burst_bytes is not None
    worst = _worst_window_bytes(everything, NS_PER_S)
    assert worst <= per_s + cap.burst_bytes
    assert worst <= per_s * 1.05
    assert _bytes_between(everything, 0, NS_PER_S) <= per_s  # a new cap starts empty
    ten_seconds = _bytes_between(everything, 0, 10 * NS_PER_S)
    assert abs(ten_seconds - 10 * per_s) <= 0.02 * 10 * per_s
    assert cap.admitted_bytes == sum(size for _, size in everything)
    # First come, first served: no acquirer gets much less than a fair share.
    for one in admitted.values():
        assert sum(size for _, size in one) >= 0.2 * ten_seconds


async def test_a_low_cap_keeps_its_documented_bound() -> None:
    """Below ~820 kbit/s the piece floor dominates: the excess is the burst, not 5%."""
    clock = ManualClock()
    cap = BandwidthCap(clock, 64_000)
    assert cap.grant_piece_bytes == MIN_GRANT_PIECE_BYTES
    assert cap.burst_bytes == 2 * MIN_GRANT_PIECE_BYTES
    admitted = await _run_acquirers(cap, clock, acquirers=4, until_ns=20 * NS_PER_S)
    everything = [a for one in admitted.values() for a in one]
    assert _worst_window_bytes(everything, NS_PER_S) <= 8_000 + 2 * MIN_GRANT_PIECE_BYTES
    twenty_seconds = _bytes_between(everything, 0, 20 * NS_PER_S)
    assert abs(twenty_seconds - 20 * 8_000) <= 0.02 * 20 * 8_000


async def test_a_lowered_cap_holds_from_the_moment_it_is_set() -> None:
    clock = ManualClock()
    cap = BandwidthCap(clock, 8 * MBIT)
    changed_at: list[int] = []

    def lower_after_five_seconds() -> None:
        if not changed_at and clock.monotonic_ns() >= 5 * NS_PER_S:
            cap.set_rate(2 * MBIT)
            changed_at.append(clock.monotonic_ns())

    admitted = await _run_acquirers(
        cap, clock, acquirers=4, until_ns=12 * NS_PER_S, on_admitted=lower_after_five_seconds
    )
    everything = [a for one in admitted.values() for a in one]
    after = [a for a in everything if a[0] > changed_at[0]]
    assert _worst_window_bytes(after, NS_PER_S) <= 250_000 * 1.05
    start_ns = changed_at[0] + 1
    assert abs(_bytes_between(after, start_ns, start_ns + 5 * NS_PER_S) - 5 * 250_000) <= (
        0.02 * 5 * 250_000
    )


async def test_an_idle_cap_saves_up_its_burst_and_no_more() -> None:
    clock = HeldClock()
    cap = BandwidthCap(clock, 8 * MBIT)
    assert cap.burst_bytes == 40_000
    clock.advance(5)  # idle: the bucket fills to the burst, not to 5 s of the rate
    await cap.acquire(40_000)
    one_more = asyncio.create_task(cap.acquire(1))
    await _until(lambda: clock.sleepers == 1, "one more byte must wait")
    clock.advance(0.000_001)  # one byte at 1,000,000 bytes/s
    await _until(one_more.done, "the byte passes")
    assert clock.monotonic_ns() == 5 * NS_PER_S + 1_000


async def test_without_a_cap_bytes_pass_at_once() -> None:
    clock = ManualClock()
    cap = BandwidthCap(clock, None)
    for _ in range(100):
        await cap.acquire(10_000_000)
    assert clock.monotonic_ns() == 0
    assert cap.admitted_bytes == 1_000_000_000
    assert cap.grant_piece_bytes is None
    assert cap.burst_bytes is None


async def test_waiters_are_served_in_arrival_order_and_a_large_request_passes_whole() -> None:
    clock = HeldClock()
    cap = BandwidthCap(clock, 8 * MBIT)  # 1,000,000 bytes/s, burst 40,000, empty at first
    order: list[str] = []

    async def ask(name: str, size: int) -> None:
        await cap.acquire(size)
        order.append(name)

    large = asyncio.create_task(ask("large", 500_000))
    await _until(lambda: clock.sleepers == 1, "the large request sleeps")
    small = asyncio.create_task(ask("small", 1_000))
    await _settle()
    clock.advance(0.3)
    await _settle()
    # 300,000 bytes would cover the small request, but it may not overtake the large one.
    assert order == []
    assert cap.waiting == 2
    clock.advance(0.2)
    await _until(lambda: order == ["large"], "the large request passes")
    clock.advance(0.000_999)
    await _settle()
    assert order == ["large"]
    clock.advance(0.000_001)
    await _until(lambda: order == ["large", "small"], "the small request passes")
    await asyncio.gather(large, small)
    assert cap.admitted_bytes == 501_000


async def test_a_larger_rate_replans_the_waiting_head_at_once() -> None:
    clock = HeldClock()
    cap = BandwidthCap(clock, 8 * MBIT)
    waiter = asyncio.create_task(cap.acquire(100_000))  # 0.1 s at 1,000,000 bytes/s
    await _until(lambda: clock.sleepers == 1, "the request sleeps")
    clock.advance(0.05)  # 50,000 bytes earned
    await _settle()
    cap.set_rate(80 * MBIT)  # the other 50,000 come in 5 ms now
    await _until(lambda: clock.sleepers == 1, "the request sleeps again, shorter")
    clock.advance(0.004)
    await _settle()
    assert not waiter.done()
    clock.advance(0.001)
    await _until(waiter.done, "the request passes 55 ms after it started")
    assert clock.monotonic_ns() == 55_000_000


async def test_lifting_the_cap_lets_every_waiter_through() -> None:
    clock = HeldClock()
    cap = BandwidthCap(clock, 1 * MBIT)
    waiters = [asyncio.create_task(cap.acquire(1_000_000)) for _ in range(3)]
    await _until(lambda: clock.sleepers == 1, "the head sleeps")
    cap.set_rate(None)
    await _until(lambda: all(w.done() for w in waiters), "every waiter passes")
    assert clock.monotonic_ns() == 0
    assert cap.waiting == 0
    assert cap.admitted_bytes == 3_000_000


async def test_a_cancelled_head_is_not_charged_and_the_next_waiter_moves_up() -> None:
    clock = HeldClock()
    cap = BandwidthCap(clock, 8 * MBIT)
    head = asyncio.create_task(cap.acquire(50_000))
    await _until(lambda: clock.sleepers == 1, "the head sleeps")
    behind = asyncio.create_task(cap.acquire(10_000))
    await _settle()
    clock.advance(0.006)  # 6,000 bytes earned: they stay in the bucket for `behind`
    await _settle()
    head.cancel()
    await _until(lambda: clock.sleepers == 1, "the next waiter sleeps in its place")
    clock.advance(0.003)
    await _settle()
    assert not behind.done()
    clock.advance(0.001)
    await _until(behind.done, "the next waiter passes at 10 ms")
    assert head.cancelled()
    assert cap.admitted_bytes == 10_000
    assert cap.waiting == 0


async def test_a_cancelled_waiter_in_the_middle_keeps_the_others_in_order() -> None:
    clock = HeldClock()
    cap = BandwidthCap(clock, 8 * MBIT)
    order: list[str] = []

    async def ask(name: str, size: int) -> None:
        await cap.acquire(size)
        order.append(name)

    tasks = {}
    for name in ("a", "b", "c"):
        tasks[name] = asyncio.create_task(ask(name, 10_000))
        await _settle()
    tasks["b"].cancel()
    await _settle()
    assert cap.waiting == 2
    clock.advance(0.01)
    await _until(lambda: order == ["a"], "a passes")
    await _until(lambda: clock.sleepers == 1, "c sleeps")
    clock.advance(0.01)
    await _until(lambda: order == ["a", "c"], "c passes after a, 10 ms later")
    assert cap.admitted_bytes == 20_000


async def test_nonsense_rates_and_sizes_are_refused_by_name() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="max_bandwidth_bps"):
        BandwidthCap(clock, 0)
    cap = BandwidthCap(clock, 1 * MBIT)
    with pytest.raises(ValueError, match="max_bandwidth_bps"):
        cap.set_rate(-5)
    with pytest.raises(ValueError, match="negative"):
        await cap.acquire(-1)
    assert cap.max_bandwidth_bps == 1 * MBIT


@pytest.mark.slow
async def test_four_senders_over_loopback_keep_every_second_within_the_cap() -> None:
    """Real bytes on a real socket, paced by the system clock: what arrives per second."""
    clock = SystemClock()
    rate_bps = 16 * MBIT
    per_s = rate_bps // 8
    cap = BandwidthCap(clock, rate_bps)
    arrivals: list[Admission] = []
    sent = [0]

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            arrivals.append((clock.monotonic_ns(), len(data)))
        writer.close()

    async def send(port: int, index: int, until_ns: int) -> None:
        rng = random.Random(index)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        piece = cap.grant_piece_bytes
        assert piece is not None
        while clock.monotonic_ns() < until_ns:
            size = rng.randint(piece // 4, piece)
            await cap.acquire(size)
            writer.write(bytes(size))
            sent[0] += size
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(receive, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        until_ns = clock.monotonic_ns() + 12 * NS_PER_S
        await asyncio.gather(*(send(port, index, until_ns) for index in range(4)))
        for _ in range(500):
            if sum(size for _, size in arrivals) == sent[0]:
                break
            await asyncio.sleep(0.01)
    finally:
        server.close()
        await server.wait_closed()

    assert sum(size for _, size in arrivals) == sent[0]
    first_ns = min(at_ns for at_ns, _ in arrivals)
    worst = _worst_window_bytes(arrivals, NS_PER_S)
    first_second = _bytes_between(arrivals, first_ns, first_ns + NS_PER_S)
    ten_seconds = _bytes_between(arrivals, first_ns, first_ns + 10 * NS_PER_S)
    print(
        f"cap {per_s} B/s: worst 1 s window {worst / per_s:.4f} of the cap, first second "
        f"{first_second / per_s:.4f}, 10 s {ten_seconds / (10 * per_s):.4f}"
    )
    assert worst <= 1.05 * per_s
    assert abs(ten_seconds - 10 * per_s) <= 0.02 * 10 * per_s
