"""Login, logout, token expiry and the bound on failed logins, through the real HTTPS API."""

from __future__ import annotations

import statistics
import time

import pytest

from shared.api_input import format_instant
from shared.clock import NS_PER_S
from tests.agent_api.api_site import TOKEN_TTL_S, ApiSite

LOGIN = "/api/v1/auth/login"


async def test_login_gives_a_token_that_opens_the_api(api: ApiSite) -> None:
    status, data, headers = await api.call(
        "POST", LOGIN, json={"username": "admin", "password": "admin-pw"}
    )
    assert status == 200
    assert isinstance(data, dict)
    assert set(data) == {"token", "expires_at"}
    expected_expiry_ns = api.clock.now_ns() + round(TOKEN_TTL_S * NS_PER_S)
    assert data["expires_at"] == format_instant(expected_expiry_ns)
    assert headers["Cache-Control"] == "no-store"
    status, site, _ = await api.call("GET", "/api/v1/site", token=data["token"])
    assert status == 200
    assert isinstance(site, dict)
    assert site["id"] == api.config.site.id


async def test_wrong_password_and_unknown_user_get_the_same_answer(api: ApiSite) -> None:
    wrong = await api.call("POST", LOGIN, json={"username": "admin", "password": "nope"})
    unknown = await api.call("POST", LOGIN, json={"username": "ghost", "password": "nope"})
    for status, data, headers in (wrong, unknown):
        assert status == 401
        assert data == {"error": {"code": "login_refused", "message": "wrong username or password"}}
        assert headers["WWW-Authenticate"] == 'Bearer realm="siteline"'
    assert wrong[0:2] == unknown[0:2]


async def test_an_unknown_user_costs_a_password_check_too(api: ApiSite) -> None:
    """Timing must not tell whether a user exists: an unknown name is checked against a
    dummy scrypt hash. Without it the answer would come about 50 times sooner."""

    async def timed(username: str) -> float:
        began = time.perf_counter()
        status, _, _ = await api.call("POST", LOGIN, json={"username": username, "password": "x"})
        assert status == 401
        return time.perf_counter() - began

    known, unknown = [], []
    for _ in range(3):  # both names stay under the throttle's limit of 5
        known.append(await timed("clerk"))
        unknown.append(await timed("ghost"))
    assert statistics.median(unknown) > 0.4 * statistics.median(known), (known, unknown)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"username": "admin"}', "password: missing (required)"),
        (b'{"password": "admin-pw"}', "username: missing (required)"),
        (b'{"username": 7, "password": "x"}', "username: must be a string, not a number"),
        (b'{"username": "admin", "password": "x", "role": "root"}', "role: unknown member"),
        (b'{"username": "admin", "password": ', "body: not valid JSON"),
        (b"[1, 2]", "body: must be a JSON object, not list"),
        (b"", "body: not valid JSON"),
        (b"[" * 30_000, "body: nested too deeply"),
    ],
)
async def test_malformed_login_bodies_are_refused_naming_the_part(
    api: ApiSite, body: bytes, message: str
) -> None:
    status, data, _ = await api.call(
        "POST", LOGIN, data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert isinstance(data, dict)
    assert data["error"]["code"] == "bad_request"
    assert data["error"]["message"].startswith(message), data


async def test_an_oversized_body_is_refused_before_it_is_read(api: ApiSite) -> None:
    status, data, _ = await api.call("POST", LOGIN, data=b"{" + b" " * 100_000 + b"}")
    assert status == 413
    assert data == {
        "error": {"code": "payload_too_large", "message": "body: larger than 65536 bytes"}
    }


async def test_a_token_stops_working_when_it_expires(api: ApiSite) -> None:
    token = await api.login()
    api.clock.advance(TOKEN_TTL_S - 1)
    assert (await api.call("GET", "/api/v1/site", token=token))[0] == 200
    api.clock.advance(1)
    status, data, headers = await api.call("GET", "/api/v1/site", token=token)
    assert status == 401
    assert isinstance(data, dict)
    assert data["error"]["code"] == "unauthorized"
    assert headers["WWW-Authenticate"] == 'Bearer realm="siteline"'


async def test_logout_ends_only_its_own_session(api: ApiSite) -> None:
    first = await api.login()
    second = await api.login()
    status, data, _ = await api.call("POST", "/api/v1/auth/logout", token=first)
    assert (status, data) == (204, None)
    assert (await api.call("GET", "/api/v1/site", token=first))[0] == 401
    assert (await api.call("POST", "/api/v1/auth/logout", token=first))[0] == 401
    assert (await api.call("GET", "/api/v1/site", token=second))[0] == 200


async def test_repeated_failures_lock_the_name_out_for_a_while(api: ApiSite) -> None:
    for _ in range(5):
        status, _, _ = await api.call("POST", LOGIN, json={"username": "clerk", "password": "no"})
        assert status == 401
    # Locked now: even the right password is refused, without checking it.
    status, data, headers = await api.call(
        "POST", LOGIN, json={"username": "clerk", "password": "clerk-pw"}
    )
    assert status == 429
    assert isinstance(data, dict)
    assert data["error"]["code"] == "too_many_attempts"
    assert headers["Retry-After"] == "60"
    # An unknown name is counted the same way, so the lock does not reveal who exists.
    for _ in range(5):
        await api.call("POST", LOGIN, json={"username": "ghost", "password": "no"})
    assert (await api.call("POST", LOGIN, json={"username": "ghost", "password": "x"}))[0] == 429
    # Other names are not affected.
    await api.login("admin")
    api.clock.advance(60)
    await api.login("clerk")
