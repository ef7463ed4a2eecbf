"""A bounded queue that carries packets from a source's worker threads to the event loop.

Producers are plain threads (PyAV demuxers and encoders, a camera library's callback
thread); the one consumer is a coroutine. The bound is what keeps a stalled consumer from
growing memory: `put` blocks the producer when the queue is full (a demuxer then stops
reading, and TCP pushes back on the camera), `offer` refuses instead, for producers that
must never block (a hardware encoder's callback).
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from agent.sources.base import SourceUnavailable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _End:
    reason: str


class ThreadHandoff(Generic[T]):
    """Bounded many-threads-to-one-coroutine queue; ends with a reason instead of an item.

    Items wait in a deque under a lock; the consumer takes everything queued without help.
    Waking it from a producer thread (`call_soon_threadsafe`) costs far more CPU than moving
    an item (about 200 us against a few us on a small VM), so wake-ups are rationed:

    - only a consumer that is waiting is woken;
    - with `min_wake_interval_s` > 0, an item wakes it only if the last wake-up was at least
      that long ago, or the queue is half full (so a producer never blocks on a full queue
      that nobody was told to drain); an item that does not wake it is taken at the next
      wake-up. The end of the stream always wakes it at once.

    A camera's 25-50 packets a second then cost a few wake-ups, and an item waits at most
    the interval plus the time to the producer's next item.

    Moving items one by one still costs a lock and a few Python calls on each side per
    item, run with cold caches between a demuxer's reads. A producer that gathers its own
    batches (`PacketBatcher`) hands each over with `put_batch`, which always wakes the
    consumer (the producer rationed already), and the consumer takes everything queued
    with `get_batch`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        capacity: int,
        *,
        min_wake_interval_s: float = 0.0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"handoff capacity must be at least 1, not {capacity}")
        if min_wake_interval_s < 0:
            raise ValueError(f"min_wake_interval_s cannot be negative, not {min_wake_interval_s}")
        self._min_wake_interval_s = min_wake_interval_s
        self._last_wake_s = float("-inf")
        self._loop = loop
        self._capacity = capacity
        self._space = threading.Condition()
        # Guarded by _space: queued items (at most `capacity`, plus end markers), the
        # consumer's pending wait, and whether producers are still accepted.
        self._items: deque[T | _End] = deque()
        self._pending = 0  # items (not end markers) in `_items`
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._ended: _End | None = None

    @property
    def min_wake_interval_s(self) -> float:
        """The current rationing interval (read by producers that batch themselves)."""
        return self._min_wake_interval_s

    def set_min_wake_interval(self, seconds: float) -> None:
        """Change the rationing (e.g. while someone watches live); takes effect at once."""
        if seconds < 0:
            raise ValueError(f"min_wake_interval_s cannot be negative, not {seconds}")
        self._min_wake_interval_s = seconds  # one float store: safe against a reading thread

    def put(self, item: T) -> bool:
        """From a worker thread: wait for room, then enqueue. False once closed."""
        with self._space:
            while self._pending >= self._capacity and not self._closed:
                self._space.wait()
            if self._closed:
                return False
            self._pending += 1
            self._items.append(item)
            return self._wake_consumer(rationed=True)

    def put_batch(self, items: Sequence[T]) -> bool:
        """From a worker thread: enqueue `items` together and wake the consumer at once.

        Waits while they do not fit, unless the queue is empty (a batch larger than the
        capacity then goes in whole: the producer's own bound keeps batches small).
        False once closed."""
        if not items:
            return not self._closed
        with self._space:
            while (
                self._pending and self._pending + len(items) > self._capacity and not self._closed
            ):
                self._space.wait()
            if self._closed:
                return False
            self._pending += len(items)
            self._items.extend(items)
            return self._wake_consumer(rationed=False)

    def offer(self, item: T) -> bool:
        """From a worker thread: enqueue only if there is room now. False if full or closed."""
        with self._space:
            if self._closed or self._pending >= self._capacity:
                return False
            self._pending += 1
            self._items.append(item)
            return self._wake_consumer(rationed=True)

    def finish(self, reason: str) -> None:
        """From any thread: the source failed or ended; `get` raises after queued items."""
        with self._space:
            if self._closed:
                return
            self._items.append(_End(reason))
            self._wake_consumer(rationed=False)

    async def get(self) -> T:
        """The next item; raises `SourceUnavailable` with the reason once finished."""
        return (await self._take(1))[0]

    async def get_batch(self) -> list[T]:
        """Every item queued (at least one), in order; raises like `get` once finished."""
        return await self._take(None)

    async def _take(self, limit: int | None) -> list[T]:
        """At least one and at most `limit` (None: all) queued items, waiting for one."""
        while True:
            if self._ended is not None:
                raise SourceUnavailable(self._ended.reason)
            with self._space:
                if self._items:
                    taken: list[T] = []
                    items = self._items
                    while items and (limit is None or len(taken) < limit):
                        item = items.popleft()
                        if isinstance(item, _End):
                            self._ended = item
                            break
                        taken.append(item)
                    if taken:
                        self._pending -= len(taken)
                        self._space.notify_all()
                        return taken
                    continue
                waiter = self._loop.create_future()
                self._waiter = waiter
            try:
                await waiter
            finally:
                with self._space:
                    if self._waiter is waiter:
                        self._waiter = None

    def close(self) -> None:
        """Release blocked producers; later puts and offers are refused."""
        with self._space:
            self._closed = True
            self._space.notify_all()

    def _wake_consumer(self, *, rationed: bool) -> bool:
        """Called with the lock held: resolve the consumer's wait, if it is waiting and the
        rationing rule of the class docstring allows it."""
        if self._waiter is None:
            return True
        if rationed and self._min_wake_interval_s > 0:
            # The loop's clock is the monotonic clock, readable from any thread.
            now_s = self._loop.time()
            recent = now_s - self._last_wake_s < self._min_wake_interval_s
            if recent and self._pending * 2 < self._capacity:
                return True
            self._last_wake_s = now_s
        waiter, self._waiter = self._waiter, None
        try:
            self._loop.call_soon_threadsafe(_resolve, waiter)
        except RuntimeError:  # the event loop is closed: nobody will read any more
            return False
        return True


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
