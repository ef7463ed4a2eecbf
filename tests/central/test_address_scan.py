"""The address scan against real servers on loopback: the agent's HTTPS API (found, with its
certificate's fingerprint), the same API over plain HTTP (found, no fingerprint), web servers
that are not agents over HTTP and HTTPS, a server that never answers, and closed ports (all
not reported); progress up to the total; cancelling; and the refusals of what cannot be
scanned, each naming the input."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from agent.accounts import Accounts
from agent.web_api import build_web_app
from central.address_scan import (
    MAX_SCAN_ADDRESSES,
    AddressScanner,
    ScanProgress,
    ScanRange,
    ScanRangeError,
    is_agent_challenge,
    parse_scan_ports,
    parse_scan_range,
)
from central.site_browser import FoundSite
from shared.api_server import ApiServer
from shared.tls_pinning import normalize_fingerprint
from tests.agent_api.api_site import TOKEN_TTL_S, ApiSite, running_api

WAIT_S = 10.0
POLL_S = 0.02


@asynccontextmanager
async def _serving(app: web.Application, site: ApiSite | None = None) -> AsyncIterator[int]:
    """`app` on a free loopback port (over TLS with the agent's certificate if `site`)."""
    context = site.identity.server_ssl_context() if site is not None else None
    server = ApiServer(app, host="127.0.0.1", port=0, ssl_context=context)
    port = await server.start()
    try:
        yield port
    finally:
        await server.stop()


def _plain_agent_app(site: ApiSite) -> web.Application:
    """The agent's real API application, to serve over plain HTTP (scheme = "http")."""
    accounts = Accounts(site.config.users, clock=site.clock, token_ttl_s=TOKEN_TTL_S)
    return build_web_app(site.service, accounts)


def _other_web_app() -> web.Application:
    """A web server that is not an agent: a page for everything, and a Basic challenge."""

    async def page(request: web.Request) -> web.Response:
        if request.path.startswith("/api/"):
            return web.Response(
                status=401, text="login", headers={"WWW-Authenticate": 'Basic realm="siteline"'}
            )
        return web.Response(text="<html>router</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    return app


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[ApiSite]:
    async with running_api(tmp_path / "site") as site:
        yield site


def _port_of(site: ApiSite) -> int:
    return int(site.base_url.rsplit(":", 1)[1])


async def test_the_scan_finds_the_agent_over_https_and_http_and_nothing_else(
    agent: ApiSite,
) -> None:
    expected_fingerprint = normalize_fingerprint(agent.identity.fingerprint).hex()
    https_port, closed_port = _port_of(agent), _closed_port()
    async with (
        _serving(_plain_agent_app(agent)) as http_port,
        _serving(_other_web_app()) as other_http_port,
        _serving(_other_web_app(), agent) as other_https_port,
    ):
        ports = [closed_port, other_http_port, other_https_port, https_port, http_port]
        found = await AddressScanner().scan(parse_scan_range("127.0.0.1/32"), ports)
    assert found == sorted(
        [
            FoundSite(("127.0.0.1",), https_port, "https", expected_fingerprint, "scan"),
            FoundSite(("127.0.0.1",), http_port, "http", None, "scan"),
        ],
        key=lambda site: site.port,
    )
    assert {(site.site_id, site.name, site.version) for site in found} == {(None, None, None)}


async def test_progress_counts_every_address_up_to_the_total(agent: ApiSite) -> None:
    progress: list[ScanProgress] = []
    scanner = AddressScanner(concurrency=2)
    found = await scanner.scan(
        parse_scan_range("127.0.0.1-127.0.0.3"), [_port_of(agent)], on_progress=progress.append
    )
    assert [site.address for site in found] == ["127.0.0.1"]  # 127.0.0.2 and .3 refuse
    assert [(p.done, p.total) for p in progress] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert progress[0].found == ()
    assert progress[-1].found == tuple(found)


async def test_a_server_that_never_answers_is_not_reported() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        found = await AddressScanner(timeout_s=0.2).scan(parse_scan_range("127.0.0.1"), [port])
        assert found == []
        assert len(accepted) == 2  # the TLS attempt, then plain HTTP
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_cancelling_a_scan_stops_it_and_closes_its_connections() -> None:
    connected = asyncio.Event()
    closed: list[bool] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # until the scanner closes the connection
        closed.append(True)
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    progress: list[ScanProgress] = []
    try:
        scan = asyncio.create_task(
            AddressScanner(concurrency=1, timeout_s=60.0).scan(
                parse_scan_range("127.0.0.1-127.0.0.8"), [port], on_progress=progress.append
            )
        )
        async with asyncio.timeout(WAIT_S):
            await connected.wait()
        scan.cancel()
        with pytest.raises(asyncio.CancelledError):
            await scan
        await _until(lambda: closed == [True], "the scanner's connection is closed")
        assert [(p.done, p.total) for p in progress] == [(0, 8)]
    finally:
        server.close()
        await server.wait_closed()


async def _until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(round(WAIT_S / POLL_S)):
        if condition():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"not seen in {WAIT_S} s: {what}")


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("192.168.1.0/24", "192.168.1.1", "192.168.1.254"),
        ("192.168.1.77/24", "192.168.1.1", "192.168.1.254"),
        ("10.0.0.4/31", "10.0.0.4", "10.0.0.5"),
        ("127.0.0.1/32", "127.0.0.1", "127.0.0.1"),
        (" 192.168.1.10 - 192.168.1.50 ", "192.168.1.10", "192.168.1.50"),
        ("10.0.0.9", "10.0.0.9", "10.0.0.9"),
        ("fd00::1-fd00::ff", "fd00::1", "fd00::ff"),
        ("fd00::/116", "fd00::", "fd00::fff"),
    ],
)
def test_ranges_are_read_as_typed(text: str, first: str, last: str) -> None:
    scan = parse_scan_range(text)
    assert (str(scan.first), str(scan.last)) == (first, last)


def test_a_range_lists_its_addresses_in_order() -> None:
    scan = parse_scan_range("10.0.0.254-10.0.1.1")
    assert scan.size == 4
    assert [str(a) for a in scan] == ["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"]
    assert isinstance(scan, ScanRange)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/19", "range: '10.0.0.0/19' holds 8190 addresses; a scan is limited to 4096"),
        ("10.0.0.0/8", "range: '10.0.0.0/8' holds 16777214 addresses; a scan is limited to 4096"),
        ("fd00::/64", "holds 18446744073709551616 addresses; a scan is limited to 4096"),
        ("10.0.0.1-10.0.16.1", "holds 4097 addresses; a scan is limited to 4096"),
    ],
)
def test_a_range_larger_than_the_limit_is_refused(text: str, message: str) -> None:
    with pytest.raises(ScanRangeError, match=message) as caught:
        parse_scan_range(text)
    assert caught.value.field == "range"


def test_the_largest_range_allowed_is_accepted() -> None:
    assert parse_scan_range("10.0.0.0/20").size == 4094
    assert parse_scan_range("10.0.0.1-10.0.16.0").size == MAX_SCAN_ADDRESSES


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.300", "range: '10.0.0.300' is not an IPv4 or IPv6 address"),
        ("10.0.0.1-10.0.0.300", "range: '10.0.0.300' is not an IPv4 or IPv6 address"),
        ("shop.example/24", "range: 'shop.example' is not an IPv4 or IPv6 address"),
        ("10.0.0.0/33", "range: '10.0.0.0/33': /33 is not a prefix length"),
        ("10.0.0.9-10.0.0.1", "range: '10.0.0.9-10.0.0.1' ends before it starts"),
        ("10.0.0.1-fd00::1", "range: '10.0.0.1-fd00::1' mixes an IPv4 and an IPv6 address"),
        ("fe80::1%eth0", "range: 'fe80::1%eth0': addresses with a zone"),
        ("  ", "range: empty"),
    ],
)
def test_a_malformed_range_is_named(text: str, message: str) -> None:
    with pytest.raises(ScanRangeError) as caught:
        parse_scan_range(text)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ([], "ports: give at least one port"),
        ([0], "ports: 0 is not a TCP port (1 to 65535)"),
        ([8443, 70000], "ports: 70000 is not a TCP port (1 to 65535)"),
        (["8443"], "ports: '8443' is not a TCP port (1 to 65535)"),
        ([True], "ports: True is not a TCP port (1 to 65535)"),
        (list(range(1, 18)), "ports: 17 ports given; a scan tries at most 16"),
    ],
)
def test_malformed_ports_are_named(ports: list[object], message: str) -> None:
    with pytest.raises(ScanRangeError) as caught:
        parse_scan_ports(ports)
    assert str(caught.value) == message


def test_repeated_ports_are_tried_once() -> None:
    assert parse_scan_ports([8443, 8080, 8443]) == (8443, 8080)


@pytest.mark.parametrize(
    ("head", "is_agent"),
    [
        (b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="siteline"\r\n\r\n', True),
        (
            b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
            b'www-authenticate: bearer error="invalid_token", realm="siteline"\r\n\r\n',
            True,
        ),
        (b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="other"\r\n\r\n', False),
        (b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="siteline"\r\n\r\n', False),
        (b'HTTP/1.1 200 OK\r\nWWW-Authenticate: Bearer realm="siteline"\r\n\r\n', False),
        (b"HTTP/1.1 401 Unauthorized\r\n\r\n", False),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", False),
    ],
)
def test_only_the_agents_challenge_counts(head: bytes, is_agent: bool) -> None:
    assert is_agent_challenge(head) is is_agent
