"""The site's events (camera lost and restored, motion, inputs, storage) fanned out to listeners.

Publishing never blocks: each subscriber has a bounded queue, and a subscriber that falls
behind loses its oldest events and is told how many through `dropped`. The most recent events
are kept for late subscribers (the link's event subscription, the status command).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.system_events import SystemEvent

_log = logging.getLogger(__name__)


@dataclass
class Subscription:
    """A listener's queue of events; `dropped` counts events lost because it fell behind."""

    queue: asyncio.Queue[SystemEvent]
    dropped: int = 0
    _hub: EventHub | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._hub is not None:
            self._hub.unsubscribe(self)
            self._hub = None


class EventHub:
    """Fan-out of `SystemEvent`s; see the module docstring."""

    def __init__(self, *, history: int = 500, queue_size: int = 1000) -> None:
        self._recent: deque[SystemEvent] = deque(maxlen=history)
        self._subscriptions: list[Subscription] = []
        self._queue_size = queue_size

    def publish(self, event: SystemEvent) -> None:
        self._recent.append(event)
        _log.info("event %s %s %s", event.kind, event.device_id or "-", event.detail or "")
        for sub in self._subscriptions:
            if sub.queue.full():
                sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait(event)

    def subscribe(self) -> Subscription:
        sub = Subscription(asyncio.Queue(self._queue_size), _hub=self)
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    def recent(self) -> Iterator[SystemEvent]:
        return iter(tuple(self._recent))
