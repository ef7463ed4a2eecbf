"""Delays between reconnection attempts: exponential growth with upward jitter.

Shared by everything that reconnects: the agent's cameras, GPIO lines and uplink, and the
central's connector to each site. The jitter comes from an injected `random.Random`, so many
clients that lost the same peer do not all retry in step, and tests stay deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_MAX_EXPONENT = 64  # beyond this the delay is at max_s anyway; avoids float overflow


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
