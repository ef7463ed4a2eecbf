"""Reconnecting with backoff: the loop a camera, a GPIO line and the uplink share.

A *session* opens something and serves it until it fails; it returns when it opened
(monotonic ns), or None if it never did. `reconnect_forever` runs sessions one after the
other with a delay between them that grows exponentially from `initial_s` to `max_s`, with
upward jitter from the injected `random.Random` (so a site's devices do not all retry in
step), and starts again from `initial_s` after a session that stayed up `stable_after_s`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

from shared.backoff import BackoffPolicy
from shared.clock import NS_PER_S, Clock

Session = Callable[[], Awaitable[int | None]]


async def reconnect_forever(
    session: Session,
    *,
    backoff: BackoffPolicy,
    clock: Clock,
    rng: random.Random,
    before_retry: Callable[[float], None],
) -> None:
    """Run `session` again and again until cancelled; `before_retry(delay_s)` is told each
    wait (for a log line) before it starts."""
    attempt = 0
    while True:
        opened_at_ns = await session()
        if opened_at_ns is not None:
            up_ns = clock.monotonic_ns() - opened_at_ns
            if up_ns >= backoff.stable_after_s * NS_PER_S:
                attempt = 0
        delay_s = backoff.delay_s(attempt, rng)
        attempt += 1
        before_retry(delay_s)
        await clock.sleep(delay_s)
