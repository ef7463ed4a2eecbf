"""The agent's accounts: password login, bearer sessions, and per-device permissions.

Users come from the configuration (`[[users]]`). A login checks the password with scrypt in a
worker thread; an unknown username is checked against a dummy hash with the same parameters,
so it costs the same time and gets the same refusal as a wrong password. Failed attempts are
bounded by a `LoginThrottle`. A session token is 256 random bits; only its SHA-256 is kept,
so a memory dump does not hand out live tokens. Sessions expire after `token_ttl_s` of the
clock's wall time, and at most `max_sessions` live at once (the oldest goes first).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from agent.config import UserAccount
from shared.clock import NS_PER_S, Clock
from shared.login_throttle import LoginThrottle, LoginThrottled
from shared.passwords import SCRYPT_N, SCRYPT_P, SCRYPT_R, verify_password

__all__ = [
    "Accounts",
    "LoginRefused",
    "LoginThrottled",
    "Principal",
    "Session",
]

DEFAULT_TOKEN_TTL_S = 12 * 3600
DEFAULT_MAX_SESSIONS = 256
MAX_USERNAME_CHARS = 64
MAX_PASSWORD_CHARS = 1024
MAX_TOKEN_CHARS = 128
CONCURRENT_VERIFICATIONS = 2  # scrypt takes 16 MiB and a core for ~50 ms; a login flood waits


class LoginRefused(Exception):
    """Wrong username or password; deliberately says no more than that."""

    def __init__(self) -> None:
        super().__init__("wrong username or password")


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, and which devices they may use (`"*"`: every device)."""

    username: str
    devices: frozenset[str]

    def may_access(self, device_id: str) -> bool:
        return "*" in self.devices or device_id in self.devices


@dataclass(frozen=True)
class Session:
    """A login's bearer token (shown once) and when it stops working."""

    token: str
    username: str
    expires_at_ns: int


@dataclass(frozen=True)
class _Live:
    principal: Principal
    expires_at_ns: int


class Accounts:
    """See the module docstring."""

    def __init__(
        self,
        users: Iterable[UserAccount],
        *,
        clock: Clock,
        token_ttl_s: float = DEFAULT_TOKEN_TTL_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        throttle: LoginThrottle | None = None,
    ) -> None:
        if token_ttl_s <= 0 or max_sessions <= 0:
            raise ValueError(
                f"token_ttl_s ({token_ttl_s}) and max_sessions ({max_sessions}) must be positive"
            )
        self._users = {user.username: user for user in users}
        self._clock = clock
        self._ttl_ns = round(token_ttl_s * NS_PER_S)
        self._max_sessions = max_sessions
        self._throttle = throttle or LoginThrottle(clock=clock)
        self._sessions: dict[bytes, _Live] = {}  # SHA-256 of the token -> session, oldest first
        self._verifications = asyncio.Semaphore(CONCURRENT_VERIFICATIONS)
        # Random salt and digest: no password matches it, and checking one costs what
        # checking a real user's default-parameter hash costs.
        self._dummy_hash = "$".join(
            [
                "scrypt",
                str(SCRYPT_N),
                str(SCRYPT_R),
                str(SCRYPT_P),
                base64.b64encode(secrets.token_bytes(16)).decode("ascii"),
                base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
            ]
        )

    async def login(self, username: str, password: str, client: str) -> Session:
        """A new session; `LoginRefused` for wrong credentials, `LoginThrottled` after too
        many recent failures (then the password is not even checked)."""
        attempt = self._throttle.begin(username, client)
        user = self._users.get(username)
        too_long = len(username) > MAX_USERNAME_CHARS or len(password) > MAX_PASSWORD_CHARS
        stored = user.password_hash if user is not None else self._dummy_hash
        async with self._verifications:
            matches = await asyncio.to_thread(verify_password, "" if too_long else password, stored)
        if user is None or too_long or not matches:
            raise LoginRefused()
        self._throttle.succeeded(attempt)
        token = secrets.token_urlsafe(32)
        expires_at_ns = self._clock.now_ns() + self._ttl_ns
        self._drop_expired()
        while len(self._sessions) >= self._max_sessions:
            del self._sessions[next(iter(self._sessions))]
        principal = Principal(user.username, frozenset(user.devices))
        self._sessions[_digest(token)] = _Live(principal, expires_at_ns)
        return Session(token, user.username, expires_at_ns)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a live session's token; None for unknown or expired tokens."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        key = _digest(token)
        live = self._sessions.get(key)
        if live is None:
            return None
        if self._clock.now_ns() >= live.expires_at_ns:
            del self._sessions[key]
            return None
        return live.principal

    def logout(self, token: str) -> bool:
        """End the token's session; False when it was not live."""
        if self.authenticate(token) is None:
            return False
        del self._sessions[_digest(token)]
        return True

    def live_sessions(self) -> int:
        self._drop_expired()
        return len(self._sessions)

    def _drop_expired(self) -> None:
        now_ns = self._clock.now_ns()
        for key in [k for k, live in self._sessions.items() if now_ns >= live.expires_at_ns]:
            del self._sessions[key]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
