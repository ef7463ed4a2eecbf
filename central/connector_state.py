"""The connection state of one site, as a machine with no I/O: events in, actions out.

Each site the central knows has one connector. The connector's runner does the I/O (dials,
serves the link, reads the clock) and feeds what happened into this machine; the machine
says what to do next and what operators see. Keeping the rules here, in one place without
sockets or tasks, is what lets a property test drive thousands of random histories through
them.

States:

- ``connecting``: an attempt is under way (central-dialled sites only);
- ``online``: a link is open;
- ``offline``: no link; a central-dialled site retries at ``retry_at_ns`` with exponential
  backoff (at once, within a fraction of the first delay, after a link that had lasted
  ``stable_after_s``), a site that dials in is simply waited for;
- ``unauthorised``: the site refused the account, or could not prove it is the site that was
  added (certificate or identity differ). Retried slowly: a password fixed at the site, or a
  settings change here (which retries at once), ends it;
- ``incompatible``: the site speaks no protocol version the central does. Retried slowly
  (the site may be upgraded);
- ``disabled``: an administrator switched the site off; nothing happens until enabled.

Notifications: once a site has been without a link for ``offline_notice_after_s`` (so that a
link that flaps for a second does not page anyone), the machine asks for an "offline"
notification; when a link opens again, it asks to clear it. Raise and clear alternate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from enum import StrEnum

from shared.backoff import BackoffPolicy
from shared.clock import NS_PER_S


class ConnectorStatus(StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    UNAUTHORISED = "unauthorised"
    INCOMPATIBLE = "incompatible"
    DISABLED = "disabled"


class FailureKind(StrEnum):
    """Why an attempt did not give a link."""

    UNREACHABLE = "unreachable"  # no answer, refused connection, timeout, TLS cut
    REFUSED = "refused"  # the site refused the account's credentials
    UNTRUSTED = "untrusted"  # the certificate or the site identity is not the pinned one
    INCOMPATIBLE = "incompatible"  # no common protocol version


# Events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Started:
    now_ns: int


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    now_ns: int
    kind: FailureKind
    detail: str


@dataclass(frozen=True, slots=True)
class LinkOpened:
    now_ns: int


@dataclass(frozen=True, slots=True)
class LinkClosed:
    now_ns: int
    detail: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; due retries and notifications happen on ticks."""

    now_ns: int


@dataclass(frozen=True, slots=True)
class SettingsChanged:
    """Address, credentials or pin changed: forget the backoff and try again now."""

    now_ns: int


@dataclass(frozen=True, slots=True)
class Disabled:
    now_ns: int


@dataclass(frozen=True, slots=True)
class Enabled:
    now_ns: int


ConnectorEvent = (
    Started | AttemptFailed | LinkOpened | LinkClosed | Tick | SettingsChanged | Disabled | Enabled
)


# Actions -----------------------------------------------------------------------------------


class ConnectorAction(StrEnum):
    DIAL = "dial"  # start a connection attempt now, abandoning any still under way
    CLOSE_LINK = "close_link"  # drop the open link (the site is disabled)
    RAISE_OFFLINE = "raise_offline"  # the site has been unreachable for a while
    CLEAR_OFFLINE = "clear_offline"  # it is back


LINK_STABLE_AFTER_S = 10.0
"""A link that lasted this long was a good one: when it ends the site is dialled again at
once, and the backoff starts afresh."""


@dataclass(frozen=True, slots=True)
class ConnectorPolicy:
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    slow_retry_s: float = 300.0  # between attempts while unauthorised or incompatible
    offline_notice_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.slow_retry_s <= 0 or self.offline_notice_after_s < 0:
            raise ValueError("need slow_retry_s > 0 and offline_notice_after_s >= 0")


@dataclass(frozen=True, slots=True)
class ConnectorView:
    """What operators and the runner see of a connector."""

    status: ConnectorStatus
    since_ns: int  # when the status last changed
    problem: str | None  # why the site is not online, in words
    retry_at_ns: int | None  # the next attempt (central-dialled sites that wait)
    failures: int  # attempts failed since the last stable link
    offline_since_ns: int | None  # without a link since (None while online or disabled)
    offline_notified: bool


class ConnectorMachine:
    """The rules; see the module docstring. `dials` is False for sites that dial in."""

    def __init__(
        self, *, dials: bool, policy: ConnectorPolicy, rng: random.Random, now_ns: int
    ) -> None:
        self.dials = dials
        self.policy = policy
        self._rng = rng
        self._online_since_ns: int | None = None
        self.view = ConnectorView(
            status=ConnectorStatus.OFFLINE,
            since_ns=now_ns,
            problem="not started",
            retry_at_ns=None,
            failures=0,
            offline_since_ns=now_ns,
            offline_notified=False,
        )

    @property
    def status(self) -> ConnectorStatus:
        return self.view.status

    def next_wakeup_ns(self) -> int | None:
        """When a `Tick` next has something to do (a retry or a notification), if ever."""
        view = self.view
        times = [] if view.retry_at_ns is None else [view.retry_at_ns]
        if view.offline_since_ns is not None and not view.offline_notified:
            times.append(
                view.offline_since_ns + round(self.policy.offline_notice_after_s * NS_PER_S)
            )
        return min(times) if times else None

    def handle(self, event: ConnectorEvent) -> list[ConnectorAction]:
        """Apply `event`; the actions the runner must take, in order."""
        status = self.view.status
        if status is ConnectorStatus.DISABLED and not isinstance(event, Enabled):
            # A site that dials in while disabled is turned away.
            return [ConnectorAction.CLOSE_LINK] if isinstance(event, LinkOpened) else []
        match event:
            case Started(now_ns) | Enabled(now_ns) | SettingsChanged(now_ns):
                return self._start(now_ns)
            case AttemptFailed(now_ns, kind, detail):
                if status is not ConnectorStatus.CONNECTING:
                    return []  # a late report from an attempt that no longer matters
                return self._failed(now_ns, kind, detail)
            case LinkOpened(now_ns):
                return self._opened(now_ns)
            case LinkClosed(now_ns, detail):
                if status is not ConnectorStatus.ONLINE:
                    return []
                return self._closed(now_ns, detail)
            case Tick(now_ns):
                return self._tick(now_ns)
            case Disabled(now_ns):
                return self._disable(now_ns)
        raise TypeError(f"not a connector event: {event!r}")

    # transitions ---------------------------------------------------------------------------

    def _start(self, now_ns: int) -> list[ConnectorAction]:
        if self.view.status is ConnectorStatus.ONLINE:
            return []  # a settings change while online takes effect on the next link
        offline_since = self.view.offline_since_ns
        if offline_since is None:
            offline_since = now_ns
        if not self.dials:
            self._set(
                ConnectorStatus.OFFLINE,
                now_ns,
                problem="waiting for the site to dial in",
                retry_at_ns=None,
                failures=0,
                offline_since_ns=offline_since,
            )
            return []
        self._set(
            ConnectorStatus.CONNECTING,
            now_ns,
            problem=None,
            retry_at_ns=None,
            failures=0,
            offline_since_ns=offline_since,
        )
        return [ConnectorAction.DIAL]

    def _failed(self, now_ns: int, kind: FailureKind, detail: str) -> list[ConnectorAction]:
        failures = self.view.failures
        match kind:
            case FailureKind.UNREACHABLE:
                status = ConnectorStatus.OFFLINE
                wait_s = self.policy.backoff.delay_s(failures, self._rng)
                problem = f"unreachable: {detail}"
            case FailureKind.REFUSED | FailureKind.UNTRUSTED:
                status = ConnectorStatus.UNAUTHORISED
                wait_s = self.policy.slow_retry_s
                problem = f"{kind}: {detail}"
            case FailureKind.INCOMPATIBLE:
                status = ConnectorStatus.INCOMPATIBLE
                wait_s = self.policy.slow_retry_s
                problem = f"incompatible: {detail}"
        self._set(
            status,
            now_ns,
            problem=problem,
            retry_at_ns=now_ns + round(wait_s * NS_PER_S),
            failures=failures + 1,
            offline_since_ns=self.view.offline_since_ns,
        )
        return self._tick(now_ns)

    def _opened(self, now_ns: int) -> list[ConnectorAction]:
        notified = self.view.offline_notified
        self._online_since_ns = now_ns
        self._set(
            ConnectorStatus.ONLINE,
            now_ns,
            problem=None,
            retry_at_ns=None,
            failures=self.view.failures,
            offline_since_ns=None,
        )
        return [ConnectorAction.CLEAR_OFFLINE] if notified else []

    def _closed(self, now_ns: int, detail: str) -> list[ConnectorAction]:
        failures = self.view.failures
        backoff = self.policy.backoff
        online_since = self._online_since_ns if self._online_since_ns is not None else now_ns
        stable = now_ns - online_since >= round(backoff.stable_after_s * NS_PER_S)
        self._online_since_ns = None
        retry_at = None
        if self.dials and stable:
            # A link that worked for a while ended: most often the line dropped it (a
            # router restarted, a mobile line changed address) and the site is reachable
            # again at once. Dial again now, within the jitter's share of the first delay
            # so that sites that lost their links together do not dial in step; should
            # that fail, the backoff starts from its first delay.
            failures = 0
            wait_s = backoff.initial_s * backoff.jitter * self._rng.random()
            retry_at = now_ns + round(wait_s * NS_PER_S)
        elif self.dials:
            retry_at = now_ns + round(backoff.delay_s(failures, self._rng) * NS_PER_S)
            failures += 1
        elif stable:
            failures = 0
        self._set(
            ConnectorStatus.OFFLINE,
            now_ns,
            problem=f"link lost: {detail}",
            retry_at_ns=retry_at,
            failures=failures,
            offline_since_ns=now_ns,
        )
        return self._tick(now_ns)

    def _tick(self, now_ns: int) -> list[ConnectorAction]:
        actions: list[ConnectorAction] = []
        view = self.view
        notice_ns = round(self.policy.offline_notice_after_s * NS_PER_S)
        if (
            view.offline_since_ns is not None
            and not view.offline_notified
            and now_ns - view.offline_since_ns >= notice_ns
        ):
            self.view = replace(view, offline_notified=True)
            actions.append(ConnectorAction.RAISE_OFFLINE)
        view = self.view
        if view.retry_at_ns is not None and now_ns >= view.retry_at_ns:
            self._set(
                ConnectorStatus.CONNECTING,
                now_ns,
                problem=view.problem,
                retry_at_ns=None,
                failures=view.failures,
                offline_since_ns=view.offline_since_ns,
            )
            actions.append(ConnectorAction.DIAL)
        return actions

    def _disable(self, now_ns: int) -> list[ConnectorAction]:
        was_online = self.view.status is ConnectorStatus.ONLINE
        notified = self.view.offline_notified
        self._online_since_ns = None
        self.view = ConnectorView(
            status=ConnectorStatus.DISABLED,
            since_ns=now_ns,
            problem="disabled by an administrator",
            retry_at_ns=None,
            failures=0,
            offline_since_ns=None,
            offline_notified=False,
        )
        actions = [ConnectorAction.CLOSE_LINK] if was_online else []
        if notified:
            actions.append(ConnectorAction.CLEAR_OFFLINE)  # nobody expects it online now
        return actions

    def _set(
        self,
        status: ConnectorStatus,
        now_ns: int,
        *,
        problem: str | None,
        retry_at_ns: int | None,
        failures: int,
        offline_since_ns: int | None,
    ) -> None:
        since = now_ns if status is not self.view.status else self.view.since_ns
        self.view = ConnectorView(
            status=status,
            since_ns=since,
            problem=problem,
            retry_at_ns=retry_at_ns,
            failures=failures,
            offline_since_ns=offline_since_ns,
            offline_notified=self.view.offline_notified and offline_since_ns is not None,
        )
