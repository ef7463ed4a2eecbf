"""Looking for Siteline agents in a range of addresses, for networks where zeroconf does not
reach (another subnet, multicast filtered).

`parse_scan_range` reads what an administrator typed: a network in CIDR form
("192.168.1.0/24"), a range of addresses ("192.168.1.10-192.168.1.50") or one address, and
refuses more than `MAX_SCAN_ADDRESSES` addresses with a message naming the limit.
`AddressScanner.scan` then tries every address on each given port (by default the agent's,
8443), at most `concurrency` connections at once, each step of each connection bounded by
`timeout_s`. On an open port it first tries TLS without verifying the certificate, only to
read the certificate's SHA-256 fingerprint, and if TLS fails it tries plain HTTP; either way
it asks `GET /api/v1/site` without credentials. A Siteline agent answers 401 with
`WWW-Authenticate: Bearer realm="siteline"`; anything else is not reported. A found agent is
a `FoundSite` with source "scan" (its id and name are learnt when it is added with an
account; the fingerprint must still be compared with the one the site shows). Progress
(addresses done of the total, sites found so far) goes to a callback after every address;
cancelling the task that runs the scan stops it and closes its connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass

from agent.discovery import API_PATH
from central.site_browser import FoundSite

__all__ = [
    "DEFAULT_AGENT_PORT",
    "MAX_SCAN_ADDRESSES",
    "AddressScanner",
    "ScanProgress",
    "ScanRange",
    "ScanRangeError",
    "parse_scan_ports",
    "parse_scan_range",
]

DEFAULT_AGENT_PORT = 8443  # [api] port in agent/config.py
MAX_SCAN_ADDRESSES = 4096
MAX_SCAN_PORTS = 16
DEFAULT_CONCURRENCY = 64
DEFAULT_TIMEOUT_S = 2.0
MAX_RESPONSE_HEAD_BYTES = 16 * 1024
_PROBE_PATH = f"{API_PATH}/site"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ScanRangeError(ValueError):
    """What the administrator typed is not a scannable range; `field` names the input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class ScanRange:
    """Consecutive addresses from `first` to `last`, both included."""

    first: IpAddress
    last: IpAddress

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __iter__(self) -> Iterator[IpAddress]:
        make = type(self.first)
        for value in range(int(self.first), int(self.last) + 1):
            yield make(value)


@dataclass(frozen=True, slots=True)
class ScanProgress:
    """How far a scan is: addresses done out of `total`, and the sites found so far."""

    done: int
    total: int
    found: tuple[FoundSite, ...]


def parse_scan_range(text: str, *, max_addresses: int = MAX_SCAN_ADDRESSES) -> ScanRange:
    """The addresses `text` names; `ScanRangeError` naming the part at fault otherwise.

    For a network the usable hosts are scanned (not the network and broadcast addresses
    of an IPv4 network larger than /31). Host bits are allowed: "10.0.0.7/24" is 10.0.0.0/24.
    """
    value = text.strip()
    if not value:
        raise ScanRangeError("range", "empty; give a network (10.0.0.0/24) or a range")
    if "/" in value:
        scan = _network_range(value)
    elif "-" in value:
        first_text, _, last_text = value.partition("-")
        first, last = _address(first_text), _address(last_text)
        if first.version != last.version:
            raise ScanRangeError("range", f"{value!r} mixes an IPv4 and an IPv6 address")
        if int(last) < int(first):
            raise ScanRangeError("range", f"{value!r} ends before it starts")
        scan = ScanRange(first, last)
    else:
        address = _address(value)
        scan = ScanRange(address, address)
    if scan.size > max_addresses:
        raise ScanRangeError(
            "range",
            f"{value!r} holds {scan.size} addresses; a scan is limited to {max_addresses}",
        )
    return scan


def _network_range(value: str) -> ScanRange:
    address_text, _, prefix = value.partition("/")
    address = _address(address_text)
    try:
        network = ipaddress.ip_network(f"{address}/{prefix.strip()}", strict=False)
    except ValueError as exc:
        raise ScanRangeError(
            "range", f"{value!r}: /{prefix.strip()} is not a prefix length"
        ) from exc
    first, last = network.network_address, network.broadcast_address
    if network.version == 4 and network.prefixlen < 31:
        first, last = first + 1, last - 1
    return ScanRange(first, last)


def _address(text: str) -> IpAddress:
    value = text.strip()
    try:
        address = ipaddress.ip_address(value)
    except ValueError as exc:
        raise ScanRangeError("range", f"{value!r} is not an IPv4 or IPv6 address") from exc
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise ScanRangeError("range", f"{value!r}: addresses with a zone (%...) are not scanned")
    return address


def parse_scan_ports(ports: Sequence[object]) -> tuple[int, ...]:
    """The distinct ports to try, in the given order; `ScanRangeError` on "ports" otherwise."""
    if not ports:
        raise ScanRangeError("ports", "give at least one port")
    checked: list[int] = []
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ScanRangeError("ports", f"{port!r} is not a TCP port (1 to 65535)")
        if port not in checked:
            checked.append(port)
    if len(checked) > MAX_SCAN_PORTS:
        raise ScanRangeError(
            "ports", f"{len(checked)} ports given; a scan tries at most {MAX_SCAN_PORTS}"
        )
    return tuple(checked)


class AddressScanner:
    """Scans ranges for Siteline agents with bounded concurrency and per-step timeouts."""

    def __init__(
        self,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency: {concurrency} must be at least 1")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s: {timeout_s} is not a positive number of seconds")
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._tls = _fingerprint_reading_context()

    async def scan(
        self,
        addresses: ScanRange,
        ports: Sequence[int] = (DEFAULT_AGENT_PORT,),
        *,
        on_progress: Callable[[ScanProgress], None] | None = None,
    ) -> list[FoundSite]:
        """The agents found, by address then port. `on_progress` hears the start (0 done)
        and every finished address, the last time with done == total."""
        checked_ports = parse_scan_ports(ports)
        total = addresses.size
        found: list[FoundSite] = []
        done = 0

        def report() -> None:
            if on_progress is not None:
                on_progress(ScanProgress(done, total, tuple(found)))

        pending = iter(addresses)

        async def worker() -> None:
            nonlocal done
            for address in pending:
                for port in checked_ports:
                    site = await self._probe(str(address), port)
                    if site is not None:
                        found.append(site)
                done += 1
                report()

        report()
        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._concurrency, total)):
                group.create_task(worker())
        return sorted(found, key=lambda s: (ipaddress.ip_address(s.address), s.port))

    async def _probe(self, address: str, port: int) -> FoundSite | None:
        """The agent on `address:port`, or None for a closed port or another service."""
        try:
            try:
                fingerprint, head = await self._exchange_over_tls(address, port)
                scheme: str = "https"
            except _NotTls:
                fingerprint, head = None, await self._exchange_in_plain(address, port)
                scheme = "http"
        except (_PortClosed, _NoAnswer):
            return None
        if not is_agent_challenge(head):
            return None
        return FoundSite(
            addresses=(address,), port=port, scheme=scheme, fingerprint=fingerprint, source="scan"
        )

    async def _exchange_over_tls(self, address: str, port: int) -> tuple[str, bytes]:
        """(certificate fingerprint, response head) over TLS; `_NotTls` when TLS fails."""
        reader, writer = await self._connect(address, port)
        async with self._closing(writer):
            try:
                async with asyncio.timeout(self._timeout_s):
                    await writer.start_tls(self._tls)
            except (OSError, TimeoutError, EOFError) as exc:  # ssl.SSLError is an OSError
                raise _NotTls from exc
            tls_object = writer.get_extra_info("ssl_object")
            der = tls_object.getpeercert(binary_form=True) if tls_object is not None else None
            if not der:
                raise _NotTls
            return hashlib.sha256(der).hexdigest(), await self._request(reader, writer, address)

    async def _exchange_in_plain(self, address: str, port: int) -> bytes:
        reader, writer = await self._connect(address, port)
        async with self._closing(writer):
            return await self._request(reader, writer, address)

    async def _connect(
        self, address: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await asyncio.open_connection(address, port, limit=MAX_RESPONSE_HEAD_BYTES)
        except (OSError, TimeoutError) as exc:
            raise _PortClosed from exc

    @contextlib.asynccontextmanager
    async def _closing(self, writer: asyncio.StreamWriter) -> AsyncIterator[None]:
        """Close the connection after use: politely (bounded) after an answer, at once after
        a failure or a cancellation, when the peer may never finish a polite close."""
        try:
            yield
        except BaseException:
            writer.transport.abort()
            raise
        writer.close()
        try:
            async with asyncio.timeout(self._timeout_s):
                await writer.wait_closed()
        except TimeoutError:
            writer.transport.abort()
        except OSError:
            pass  # reset by the peer: closed all the same

    async def _request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: str
    ) -> bytes:
        """The head of the answer to `GET /api/v1/site` without credentials."""
        host = f"[{address}]" if ":" in address else address
        request = (
            f"GET {_PROBE_PATH} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                writer.write(request.encode("ascii"))
                await writer.drain()
                return await reader.readuntil(b"\r\n\r\n")
        except (
            OSError,
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:
            raise _NoAnswer from exc


def is_agent_challenge(head: bytes) -> bool:
    """Whether an HTTP response head is the agent's refusal of an anonymous request."""
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or status[1] != "401":
        return False
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() == "www-authenticate" and _is_siteline_bearer(value):
            return True
    return False


def _is_siteline_bearer(challenge: str) -> bool:
    scheme, _, parameters = challenge.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return any(
        name.strip().lower() == "realm" and value.strip() == '"siteline"'
        for name, _, value in (part.partition("=") for part in parameters.split(","))
    )


class _PortClosed(Exception):
    """Nothing accepts connections there (refused, unreachable or silent)."""


class _NotTls(Exception):
    """The port does not complete a TLS handshake."""


class _NoAnswer(Exception):
    """The port took the request but gave no HTTP answer in time."""


def _fingerprint_reading_context() -> ssl.SSLContext:
    """TLS that accepts any certificate: the scan only reads it, to show its fingerprint;
    the site is pinned to that fingerprint, once an administrator confirmed it, when added."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # reading the certificate, not trusting it
    return context
