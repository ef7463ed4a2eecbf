"""The failed-login bound on its own, on a manual clock."""

from __future__ import annotations

import pytest

from shared.clock import ManualClock
from shared.login_throttle import LoginThrottle, LoginThrottled, ThrottleRule

RULE = ThrottleRule(limit=3, window_s=600.0, lockout_s=60.0)


def _throttle(clock: ManualClock, *, max_keys: int = 100) -> LoginThrottle:
    return LoginThrottle(
        clock=clock,
        username_rule=RULE,
        client_rule=ThrottleRule(limit=5, window_s=600.0, lockout_s=30.0),
        max_keys=max_keys,
    )


def test_a_locked_name_gets_one_try_per_lockout_until_the_window_passes() -> None:
    clock = ManualClock()
    throttle = _throttle(clock)
    for index in range(3):
        throttle.begin("ann", f"10.0.0.{index}")  # from different clients
    with pytest.raises(LoginThrottled) as locked:
        throttle.begin("ANN", "10.0.0.99")  # names are compared case-insensitively
    assert locked.value.retry_after_s == 60.0
    clock.advance(60)
    throttle.begin("ann", "10.0.0.98")  # one more try, counted
    with pytest.raises(LoginThrottled):
        throttle.begin("ann", "10.0.0.97")
    clock.advance(600)
    for _ in range(3):
        throttle.begin("ann", "10.0.0.96")


def test_a_client_is_bounded_across_names_and_success_takes_its_attempt_back() -> None:
    clock = ManualClock()
    throttle = _throttle(clock)
    for index in range(4):
        throttle.begin(f"user-{index}", "10.0.0.1")
    attempt = throttle.begin("admin", "10.0.0.1")
    with pytest.raises(LoginThrottled) as locked:
        throttle.begin("someone", "10.0.0.1")
    assert locked.value.retry_after_s == 30.0
    throttle.succeeded(attempt)
    throttle.begin("someone", "10.0.0.1")


def test_the_number_of_keys_is_bounded() -> None:
    clock = ManualClock()
    throttle = _throttle(clock, max_keys=10)
    for index in range(100):
        throttle.begin(f"user-{index}", f"10.0.{index}.1")
    assert throttle.tracked_keys() == 10
