"""The central's users: password login, bearer sessions kept in the catalog, and who may do
what.

Users live in the catalog (made by `siteline central init` and the users API). A login checks
the password with scrypt in a worker thread, an unknown username against a dummy hash of the
same cost, so the answer and its timing never tell whether a user exists; failures are
bounded by a `LoginThrottle`. A session token is 256 random bits; only its SHA-256 is stored,
so neither the catalog nor a backup hands out live tokens. Sessions survive a restart of the
central and end at their expiry, at logout, or when the user is disabled.

Every API route names an `Action`; `AccessPolicy.allows` is the one hook that decides. Today
it decides by role; per-device rights plug in here later without touching the routes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from central.catalog.catalog import Catalog
from shared.clock import NS_PER_S, Clock
from shared.login_throttle import LoginThrottle, LoginThrottled
from shared.passwords import SCRYPT_N, SCRYPT_P, SCRYPT_R, verify_password

__all__ = [
    "AccessPolicy",
    "Action",
    "CentralAccounts",
    "LoginRefused",
    "LoginThrottled",
    "Principal",
    "Session",
]

MAX_USERNAME_CHARS = 64
MAX_PASSWORD_CHARS = 1024
MAX_TOKEN_CHARS = 128
CONCURRENT_VERIFICATIONS = 2  # scrypt takes 16 MiB and a core for ~50 ms; a flood waits


class LoginRefused(Exception):
    """Wrong username or password (or a disabled user); deliberately says no more."""

    def __init__(self) -> None:
        super().__init__("wrong username or password")


@dataclass(frozen=True, slots=True)
class Principal:
    username: str
    role: str


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # shown once, at login
    username: str
    expires_at_ns: int


class Action(StrEnum):
    """What a request does, for the access policy."""

    VIEW = "view"  # read sites, devices, timelines, notifications
    LIVE = "live"
    PLAYBACK = "playback"
    EXPORT = "export"
    RETRIEVE = "retrieve"  # fetch recordings from a site
    CONFIGURE_DEVICES = "configure_devices"  # names, recording and live-feed rules
    MANAGE_SITES = "manage_sites"  # add, update, remove sites; enrolment tokens
    MANAGE_USERS = "manage_users"


_ROLE_ACTIONS: dict[str, frozenset[Action]] = {
    "admin": frozenset(Action),
    "operator": frozenset(Action) - {Action.MANAGE_SITES, Action.MANAGE_USERS},
    "viewer": frozenset({Action.VIEW, Action.LIVE, Action.PLAYBACK}),
}


class AccessPolicy:
    """Whether a principal may take an action, on a device when one is named."""

    def allows(self, principal: Principal, action: Action, device_id: str | None = None) -> bool:
        del device_id  # per-device rights come with roles and rights management
        return action in _ROLE_ACTIONS.get(principal.role, frozenset())


class CentralAccounts:
    """See the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        *,
        clock: Clock,
        token_ttl_s: float,
        throttle: LoginThrottle | None = None,
    ) -> None:
        if token_ttl_s <= 0:
            raise ValueError(f"token_ttl_s must be positive, not {token_ttl_s}")
        self._catalog = catalog
        self._clock = clock
        self._ttl_ns = round(token_ttl_s * NS_PER_S)
        self._throttle = throttle or LoginThrottle(clock=clock)
        self._verifications = asyncio.Semaphore(CONCURRENT_VERIFICATIONS)
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
        """A new session; `LoginRefused` for wrong credentials or a disabled user,
        `LoginThrottled` after too many recent failures (the password is then not checked)."""
        attempt = self._throttle.begin(username, client)
        too_long = len(username) > MAX_USERNAME_CHARS or len(password) > MAX_PASSWORD_CHARS
        user = None if too_long else self._catalog.user(username)
        stored = user.password_hash if user is not None else self._dummy_hash
        async with self._verifications:
            matches = await asyncio.to_thread(verify_password, "" if too_long else password, stored)
        if user is None or user.disabled or not matches:
            raise LoginRefused()
        self._throttle.succeeded(attempt)
        token = secrets.token_urlsafe(32)
        now_ns = self._clock.now_ns()
        expires_ns = now_ns + self._ttl_ns
        # A synced write: in a worker thread, not on the loop that answers the other requests.
        await asyncio.to_thread(
            self._catalog.store_token, _digest(token), user.username, now_ns, expires_ns
        )
        return Session(token, user.username, expires_ns)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a live session's token; None for unknown or expired tokens."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        record = self._catalog.token(_digest(token))
        if record is None or self._clock.now_ns() >= record.expires_ns:
            return None
        user = self._catalog.user(record.username)
        if user is None or user.disabled:
            return None
        return Principal(user.username, user.role)

    async def logout(self, token: str) -> bool:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return False
        return await asyncio.to_thread(self._catalog.revoke_token, _digest(token))

    def purge_expired(self) -> int:
        return self._catalog.purge_expired_tokens(self._clock.now_ns())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
