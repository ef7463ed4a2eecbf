"""A site's retrieval bandwidth cap: one token bucket that every retrieval of the site shares.

Theory of operation
-------------------
A retrieval transfer gives the site credit (`LinkClient.transfer`) only after the site's
`BandwidthCap` admits the bytes (`acquire`, the `CreditGate` protocol), and the site never
sends more than the credit it holds, so what the cap admits is what crosses the link for the
retrieval: frame bytes, framing overhead included (see shared/link/flow_control.py). Live
and interactive streams have their own credit and are never paced here, so they keep their
priority.

The bucket fills at the cap's rate (bits per second from the setting, counted here in
bytes) up to `burst_bytes`, 40 ms of the rate; it starts empty, so the first second after a
cap is set admits at most the cap. A request is admitted, whole, once the bucket holds all
of it, and empties it by that much. While the request at the head of the queue is larger
than the burst, the bucket may fill up to that request's size, so any request is admitted
eventually, never in debt. Hence the bound that makes the cap exact:

    bytes admitted in any span of t seconds <= rate * t + max(burst_bytes, largest request)

With requests of at most `grant_piece_bytes` (10 ms of the rate) every 1 s window holds at
most 104% of the cap, and the long-run rate is the cap itself: a waiter that wakes late
finds the bytes it missed still in the bucket (a piece is at most half the burst). So a
caller with more to grant (a whole chunk's credit) asks for it in pieces of
`grant_piece_bytes`, granting each as it is admitted: one request of n bytes lets a 1 s
window hold rate + n bytes. Credit the cap never saw (the window a transfer opens with)
is not paced either. Below about 820 kbit/s the piece and the burst have a floor
(`MIN_GRANT_PIECE_BYTES`, so that the site does not cut payloads into tiny frames) and the
1 s overshoot bound is then `burst_bytes` over the cap instead of 4%.

Waiters are served first come, first served, so one device cannot starve the others. Only
the head of the queue sleeps on the clock, until its request is covered; `set_rate` wakes
it to plan again at the new rate (`None` lifts the cap and lets every waiter through at
once). A waiter that is cancelled leaves the queue without being charged anything.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from shared.clock import NS_PER_S, Clock

BITS_PER_BYTE = 8
BURST_S = 0.04
"""The bucket holds this much time of the rate: the 1 s windows may exceed the cap by it."""
GRANT_PIECE_S = 0.01
"""The largest request that keeps the bound above, as time of the rate."""
MIN_GRANT_PIECE_BYTES = 2048
"""Pieces never get smaller than this, whatever the rate (the burst holds two of them)."""

# The bucket is counted in bit-nanoseconds: one byte is 8e9 units, and t ns at r bit/s add
# exactly r * t units, so the rate is kept without rounding however long the cap runs.
_UNITS_PER_BYTE = BITS_PER_BYTE * NS_PER_S


@dataclass(eq=False)
class _Waiter:
    grant_bytes: int
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class BandwidthCap:
    """Paces the credit of all retrieval transfers of one site (see the module docstring)."""

    def __init__(self, clock: Clock, max_bandwidth_bps: int | None) -> None:
        self._clock = clock
        self._rate_bps: int | None = None
        self._level_units = 0
        self._filled_ns = clock.monotonic_ns()
        self._queue: deque[_Waiter] = deque()
        self.admitted_bytes = 0
        """Every byte admitted so far (with the cap lifted too), for progress and checks."""
        self.set_rate(max_bandwidth_bps)

    @property
    def max_bandwidth_bps(self) -> int | None:
        return self._rate_bps

    @property
    def grant_piece_bytes(self) -> int | None:
        """The largest request that keeps the 1 s windows exact; None without a cap."""
        if self._rate_bps is None:
            return None
        return _piece_bytes(self._rate_bps)

    @property
    def burst_bytes(self) -> int | None:
        """What the bucket holds when full; None without a cap."""
        if self._rate_bps is None:
            return None
        return _burst_bytes(self._rate_bps)

    @property
    def waiting(self) -> int:
        """How many requests are queued."""
        return len(self._queue)

    def set_rate(self, max_bandwidth_bps: int | None) -> None:
        """Change the cap now (None: no cap); queued requests are planned again at once."""
        if max_bandwidth_bps is not None and (
            isinstance(max_bandwidth_bps, bool)
            or not isinstance(max_bandwidth_bps, int)
            or max_bandwidth_bps < 1
        ):
            raise ValueError(
                f"max_bandwidth_bps must be a whole number of bits per second, at least 1, "
                f"or None for no cap; not {max_bandwidth_bps!r}"
            )
        self._fill()
        self._rate_bps = max_bandwidth_bps
        if max_bandwidth_bps is not None:
            # A new cap starts empty; a changed one keeps what it holds, up to its new size.
            self._level_units = min(self._level_units, self._capacity_units())
        else:
            self._level_units = 0
        for waiter in self._queue:
            waiter.wake.set()

    async def acquire(self, grant_bytes: int) -> None:
        """Return once `grant_bytes` may be granted to the site (at once without a cap)."""
        if grant_bytes < 0:
            raise ValueError(f"cannot acquire a negative number of bytes ({grant_bytes})")
        if grant_bytes == 0:
            return
        if self._rate_bps is None:
            self.admitted_bytes += grant_bytes
            return
        self._fill()
        if not self._queue and self._level_units >= grant_bytes * _UNITS_PER_BYTE:
            self._admit(grant_bytes)
            return
        waiter = _Waiter(grant_bytes)
        self._queue.append(waiter)
        try:
            await self._wait_for_turn(waiter)
        finally:
            if waiter in self._queue:  # cancelled, or let through by lifting the cap
                self._fill()
                was_head = self._queue[0] is waiter
                self._queue.remove(waiter)
                if self._rate_bps is not None:
                    self._level_units = min(self._level_units, self._capacity_units())
                if was_head and self._queue:
                    self._queue[0].wake.set()

    async def _wait_for_turn(self, waiter: _Waiter) -> None:
        need_units = waiter.grant_bytes * _UNITS_PER_BYTE
        while True:
            waiter.wake.clear()
            rate_bps = self._rate_bps
            if rate_bps is None:
                self.admitted_bytes += waiter.grant_bytes
                return
            if self._queue[0] is not waiter:
                await waiter.wake.wait()
                continue
            self._fill()
            if self._level_units >= need_units:
                self._queue.popleft()
                self._admit(waiter.grant_bytes)
                if self._queue:
                    self._queue[0].wake.set()
                return
            missing_units = need_units - self._level_units
            delay_ns = -(-missing_units // rate_bps)
            await self._sleep_unless_woken(waiter, delay_ns)

    async def _sleep_unless_woken(self, waiter: _Waiter, delay_ns: int) -> None:
        sleeping = asyncio.ensure_future(self._clock.sleep(delay_ns / NS_PER_S))
        woken = asyncio.ensure_future(waiter.wake.wait())
        try:
            await asyncio.wait((sleeping, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            woken.cancel()

    def _admit(self, grant_bytes: int) -> None:
        self._level_units -= grant_bytes * _UNITS_PER_BYTE
        self.admitted_bytes += grant_bytes

    def _fill(self) -> None:
        """Add what the rate earned since the last fill, up to the capacity of that time."""
        now_ns = self._clock.monotonic_ns()
        elapsed_ns = now_ns - self._filled_ns
        self._filled_ns = now_ns
        if self._rate_bps is not None and elapsed_ns > 0:
            self._level_units = min(
                self._capacity_units(), self._level_units + elapsed_ns * self._rate_bps
            )

    def _capacity_units(self) -> int:
        """The burst, or the head's request while it is larger (so that it can be covered)."""
        assert self._rate_bps is not None
        capacity_bytes = _burst_bytes(self._rate_bps)
        if self._queue:
            capacity_bytes = max(capacity_bytes, self._queue[0].grant_bytes)
        return capacity_bytes * _UNITS_PER_BYTE


def _piece_bytes(rate_bps: int) -> int:
    return max(MIN_GRANT_PIECE_BYTES, round(rate_bps / BITS_PER_BYTE * GRANT_PIECE_S))


def _burst_bytes(rate_bps: int) -> int:
    return max(2 * MIN_GRANT_PIECE_BYTES, round(rate_bps / BITS_PER_BYTE * BURST_S))
