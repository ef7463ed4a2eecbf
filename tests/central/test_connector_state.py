"""The connector state machine: examples of each rule, and random histories that must keep
every invariant."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from central.connector_state import (
    AttemptFailed,
    ConnectorAction,
    ConnectorEvent,
    ConnectorMachine,
    ConnectorPolicy,
    ConnectorStatus,
    Disabled,
    Enabled,
    FailureKind,
    LinkClosed,
    LinkOpened,
    SettingsChanged,
    Started,
    Tick,
)
from shared.backoff import BackoffPolicy
from shared.clock import NS_PER_S

POLICY = ConnectorPolicy(
    backoff=BackoffPolicy(initial_s=1, max_s=60, multiplier=2, jitter=0.25, stable_after_s=30),
    slow_retry_s=300,
    offline_notice_after_s=30,
)
S = NS_PER_S


def _machine(*, dials: bool = True) -> ConnectorMachine:
    return ConnectorMachine(dials=dials, policy=POLICY, rng=random.Random(7), now_ns=0)


def test_a_dialled_site_connects_and_backs_off_exponentially_while_unreachable() -> None:
    machine = _machine()
    assert machine.handle(Started(0)) == [ConnectorAction.DIAL]
    assert machine.status is ConnectorStatus.CONNECTING
    now = 0
    waits = []
    for _ in range(8):
        assert machine.handle(AttemptFailed(now, FailureKind.UNREACHABLE, "refused")) == []
        view = machine.view
        assert view.status is ConnectorStatus.OFFLINE
        assert view.problem == "unreachable: refused"
        assert view.retry_at_ns is not None
        waits.append(view.retry_at_ns - now)
        assert machine.handle(Tick(view.retry_at_ns - 1)) in ([], [ConnectorAction.RAISE_OFFLINE])
        now = view.retry_at_ns
        assert ConnectorAction.DIAL in machine.handle(Tick(now))
    assert waits[0] in range(1 * S, round(1.25 * S) + 1)
    assert all(b >= a for a, b in itertools.pairwise(waits))
    assert waits[-1] == 60 * S  # capped


def test_offline_is_notified_after_the_grace_and_cleared_when_the_link_opens() -> None:
    machine = _machine()
    machine.handle(Started(0))
    machine.handle(LinkOpened(1 * S))
    assert machine.handle(LinkClosed(2 * S, "cut")) == []  # retry in ~1 s, no notice yet
    assert machine.view.offline_since_ns == 2 * S
    machine.handle(Tick(machine.view.retry_at_ns or 0))
    machine.handle(AttemptFailed(4 * S, FailureKind.UNREACHABLE, "timeout"))
    assert machine.next_wakeup_ns() is not None
    actions = machine.handle(Tick(32 * S))
    assert ConnectorAction.RAISE_OFFLINE in actions
    assert machine.view.offline_notified
    assert machine.handle(LinkOpened(40 * S)) == [ConnectorAction.CLEAR_OFFLINE]
    assert machine.view.status is ConnectorStatus.ONLINE
    assert machine.view.offline_since_ns is None


def test_a_refused_account_waits_slowly_until_the_settings_change() -> None:
    machine = _machine()
    machine.handle(Started(0))
    machine.handle(AttemptFailed(1 * S, FailureKind.REFUSED, "HTTP 401"))
    assert machine.status is ConnectorStatus.UNAUTHORISED
    assert machine.view.retry_at_ns == 301 * S
    assert machine.handle(SettingsChanged(5 * S)) == [ConnectorAction.DIAL]
    machine.handle(AttemptFailed(6 * S, FailureKind.INCOMPATIBLE, "protocol 9"))
    assert machine.view.status is ConnectorStatus.INCOMPATIBLE
    assert machine.view.problem == "incompatible: protocol 9"


def test_a_long_good_link_resets_the_backoff() -> None:
    machine = _machine()
    machine.handle(Started(0))
    now = 0
    for _ in range(5):
        machine.handle(AttemptFailed(now, FailureKind.UNREACHABLE, "x"))
        now = machine.view.retry_at_ns or 0
        machine.handle(Tick(now))
    machine.handle(LinkOpened(now))
    closed = now + 31 * S
    machine.handle(LinkClosed(closed, "cut"))
    # A good link that ends is dialled again at once (within the jitter's 0.25 s) ...
    assert machine.view.failures == 0
    assert 0 <= (machine.view.retry_at_ns or 0) - closed <= round(0.25 * S)
    now = machine.view.retry_at_ns or 0
    assert ConnectorAction.DIAL in machine.handle(Tick(now))
    # ... and should that fail, the backoff starts from its first delay.
    machine.handle(AttemptFailed(now, FailureKind.UNREACHABLE, "x"))
    assert 1 * S <= (machine.view.retry_at_ns or 0) - now <= round(1.25 * S)


def test_a_short_link_that_ends_waits_out_the_backoff() -> None:
    machine = _machine()
    machine.handle(Started(0))
    machine.handle(LinkOpened(1 * S))
    machine.handle(LinkClosed(20 * S, "cut"))  # up 19 s, under the 30 s a good link lasts
    wait = (machine.view.retry_at_ns or 0) - 20 * S
    assert 1 * S <= wait <= round(1.25 * S)
    assert machine.view.failures == 1


def test_a_site_that_dials_in_is_waited_for_and_never_dialled() -> None:
    machine = _machine(dials=False)
    assert machine.handle(Started(0)) == []
    assert machine.view.problem == "waiting for the site to dial in"
    assert machine.handle(LinkOpened(1 * S)) == []
    assert machine.handle(LinkClosed(2 * S, "cut")) == []
    assert machine.view.retry_at_ns is None
    assert machine.handle(Tick(100 * S)) == [ConnectorAction.RAISE_OFFLINE]


def test_disabled_means_no_attempts_and_a_dialled_in_link_is_turned_away() -> None:
    machine = _machine()
    machine.handle(Started(0))
    machine.handle(LinkOpened(1 * S))
    assert machine.handle(Disabled(2 * S)) == [ConnectorAction.CLOSE_LINK]
    assert machine.handle(Tick(1000 * S)) == []
    assert machine.handle(LinkOpened(1001 * S)) == [ConnectorAction.CLOSE_LINK]
    assert machine.status is ConnectorStatus.DISABLED
    assert machine.handle(Enabled(1002 * S)) == [ConnectorAction.DIAL]


_failure = st.builds(
    AttemptFailed, st.just(0), st.sampled_from(list(FailureKind)), st.just("detail")
)
_event_shapes = st.one_of(
    st.just(Started(0)),
    _failure,
    st.just(LinkOpened(0)),
    st.just(LinkClosed(0, "cut")),
    st.just(Tick(0)),
    st.just(Tick(0)),
    st.just(Tick(0)),
    st.just(SettingsChanged(0)),
    st.just(Disabled(0)),
    st.just(Enabled(0)),
)


def _at(event: ConnectorEvent, now_ns: int) -> ConnectorEvent:
    match event:
        case AttemptFailed(_, kind, detail):
            return AttemptFailed(now_ns, kind, detail)
        case LinkClosed(_, detail):
            return LinkClosed(now_ns, detail)
        case _:
            return type(event)(now_ns)


@settings(max_examples=400, deadline=None)
@given(
    dials=st.booleans(),
    history=st.lists(st.tuples(st.integers(0, 120 * S), _event_shapes), min_size=1, max_size=60),
)
def test_random_histories_keep_every_invariant(
    dials: bool, history: list[tuple[int, ConnectorEvent]]
) -> None:
    machine = ConnectorMachine(dials=dials, policy=POLICY, rng=random.Random(3), now_ns=0)
    now = 0
    notified = False
    online = False
    opened_at = 0
    for step_ns, shape in history:
        now += step_ns
        wakeup = machine.next_wakeup_ns()
        before = machine.view
        event = _at(shape, now)
        actions = machine.handle(event)
        view = machine.view
        # Only a site we dial is ever dialled, and a dial means an attempt is under way.
        if ConnectorAction.DIAL in actions:
            assert dials
            assert view.status is ConnectorStatus.CONNECTING
        # Online exactly while a link that opened has not closed (and the site is enabled).
        if isinstance(event, LinkOpened) and before.status is not ConnectorStatus.DISABLED:
            online = True
        if isinstance(event, LinkClosed | Disabled):
            online = False
        assert (view.status is ConnectorStatus.ONLINE) == online
        # Notifications alternate, raise first, and only after the grace period.
        for action in actions:
            if action is ConnectorAction.RAISE_OFFLINE:
                assert not notified
                assert before.offline_since_ns is not None
                assert now - before.offline_since_ns >= POLICY.offline_notice_after_s * S
                notified = True
            elif action is ConnectorAction.CLEAR_OFFLINE:
                assert notified
                notified = False
        assert view.offline_notified == notified
        # Nothing is due before the announced wake-up.
        if isinstance(event, Tick) and (wakeup is None or now < wakeup):
            assert actions == []
        # Retries wait within the policy's bounds: after a link that lasted stable_after_s,
        # at once (within the jitter's share of the first delay); else the backoff's.
        if isinstance(event, LinkOpened) and before.status is not ConnectorStatus.DISABLED:
            opened_at = now
        if view.retry_at_ns is not None and view.retry_at_ns != before.retry_at_ns:
            wait_s = (view.retry_at_ns - now) / S
            backoff = POLICY.backoff
            if (
                isinstance(event, LinkClosed)
                and before.status is ConnectorStatus.ONLINE
                and now - opened_at >= backoff.stable_after_s * S
            ):
                assert 0 <= wait_s <= backoff.initial_s * backoff.jitter
            else:
                assert backoff.initial_s <= wait_s <= max(backoff.max_s, POLICY.slow_retry_s)
        if view.status is ConnectorStatus.DISABLED:
            assert view.retry_at_ns is None
            assert ConnectorAction.DIAL not in actions
        if not dials:
            assert view.retry_at_ns is None
