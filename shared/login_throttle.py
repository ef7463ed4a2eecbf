"""Bounds password guessing: after a few failed logins for a name or from a client, wait.

Each attempt is counted against two keys, the username and the client address, before the
password is checked, so parallel attempts cannot slip past the limit. A key with `limit`
attempts in the last `window_s` refuses further ones until `lockout_s` after its newest
attempt; after that one more is let through (and counted), so a guesser gets one try per
lockout period. A successful login takes its own attempt back and clears its username.
Unknown usernames are counted like known ones, so the answer never tells them apart. The
number of keys kept is bounded; the oldest go first. Time is the clock's monotonic time.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.clock import NS_PER_S, Clock


@dataclass(frozen=True)
class ThrottleRule:
    """How many attempts a key may make in `window_s`, and the wait once it has."""

    limit: int
    window_s: float
    lockout_s: float


USERNAME_RULE = ThrottleRule(limit=5, window_s=900.0, lockout_s=60.0)
CLIENT_RULE = ThrottleRule(limit=20, window_s=900.0, lockout_s=60.0)
MAX_KEYS = 4096


class LoginThrottled(Exception):
    """Too many recent failed logins for this name or from this client."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Attempt:
    """One counted attempt, to be taken back if it succeeds."""

    keys: tuple[str, ...]
    at_ns: int


class LoginThrottle:
    """See the module docstring."""

    def __init__(
        self,
        *,
        clock: Clock,
        username_rule: ThrottleRule = USERNAME_RULE,
        client_rule: ThrottleRule = CLIENT_RULE,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._clock = clock
        self._rules = {"user": username_rule, "client": client_rule}
        self._max_keys = max_keys
        self._attempts: dict[str, list[int]] = {}  # key -> monotonic instants, oldest first

    def begin(self, username: str, client: str) -> Attempt:
        """Count an attempt, or raise `LoginThrottled` (without counting it)."""
        now_ns = self._clock.monotonic_ns()
        keys = (f"user:{username.casefold()}", f"client:{client}")
        wait_ns = max(self._wait_ns(key, now_ns) for key in keys)
        if wait_ns > 0:
            raise LoginThrottled(max(1.0, wait_ns / NS_PER_S))
        for key in keys:
            self._attempts.setdefault(key, []).append(now_ns)
        self._bound_keys(now_ns)
        return Attempt(keys, now_ns)

    def succeeded(self, attempt: Attempt) -> None:
        """The attempt's password was right: clear its username, take it back from its client."""
        user_key, client_key = attempt.keys
        self._attempts.pop(user_key, None)
        instants = self._attempts.get(client_key)
        if instants is not None and attempt.at_ns in instants:
            instants.remove(attempt.at_ns)
            if not instants:
                del self._attempts[client_key]

    def tracked_keys(self) -> int:
        """How many names and clients have attempts on record (bounded by `max_keys`)."""
        return len(self._attempts)

    def _rule(self, key: str) -> ThrottleRule:
        return self._rules[key.split(":", 1)[0]]

    def _wait_ns(self, key: str, now_ns: int) -> int:
        instants = self._attempts.get(key)
        if not instants:
            return 0
        rule = self._rule(key)
        window_start_ns = now_ns - round(rule.window_s * NS_PER_S)
        while instants and instants[0] <= window_start_ns:
            instants.pop(0)
        if not instants:
            del self._attempts[key]
            return 0
        if len(instants) < rule.limit:
            return 0
        return instants[-1] + round(rule.lockout_s * NS_PER_S) - now_ns

    def _bound_keys(self, now_ns: int) -> None:
        if len(self._attempts) <= self._max_keys:
            return
        for key in list(self._attempts):
            self._wait_ns(key, now_ns)  # drops keys with nothing left in their window
        while len(self._attempts) > self._max_keys:
            del self._attempts[next(iter(self._attempts))]
