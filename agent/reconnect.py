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
from dataclasses import dataclass

from shared.clock import NS_PER_S, Clock

_MAX_EXPONENT = 64  # beyond this the delay is at max_s anyway; avoids float overflow

Session = Callable[[], Awaitable[int | None]]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Delays between reconnection attempts, in seconds."""

    initial_s: float = 1.0
    max_s: float = 60.0
    multiplier: float = 2.0
    jitter: float = 0.25  # each delay is stretched by up to this fraction, at random
    stable_after_s: float = 30.0  # a session this long resets the delay to initial_s

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, not {self.initial_s}, {self.max_s}")
        if self.multiplier < 1 or not 0 <= self.jitter <= 1 or self.stable_after_s < 0:
            raise ValueError("need multiplier >= 1, 0 <= jitter <= 1, stable_after_s >= 0")

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number `attempt` (0-based); within [initial_s, max_s]."""
        base = self.initial_s * self.multiplier ** min(attempt, _MAX_EXPONENT)
        return min(self.max_s, base * (1 + self.jitter * rng.random()))


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
