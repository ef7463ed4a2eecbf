"""Checking a site before it is added: reach it, log in, pin it, read what it has.

Adding a site must either succeed completely or say precisely which of the things the
administrator typed is wrong, so `probe_site` opens one link with the given address, port,
scheme, account and fingerprint, reads the site's identity and device list, closes the link,
and raises `SiteProbeError` naming the field at fault:

- ``address``: the name does not resolve, or nothing answers at that address;
- ``port``: the host answers but refuses connections on that port;
- ``scheme``: the port speaks the other protocol (HTTPS on an HTTP port, or the reverse);
- ``password``: the site refused the username or password;
- ``fingerprint``: the certificate is not the pinned one, or HTTPS was asked without a pin
  (the message then shows the certificate's fingerprint, to compare with what
  `siteline agent fingerprint` prints at the site);
- ``site``: it answered, but not as a Siteline site (or with a protocol we do not speak).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from central.catalog.records import NewDevice
from central.site_device_list import DeviceListError, discovered_devices
from shared.clock import Clock
from shared.link_io.client import LinkLost, RequestFailed
from shared.link_io.dialing import DialError, DialFailure, connect_to_site
from shared.tls_pinning import normalize_fingerprint

_ADDRESS_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.EHOSTDOWN}


class SiteProbeError(Exception):
    """The site cannot be added as given; `field` names the setting at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class SiteAddress:
    scheme: str  # "https" or "http"
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = self.host
        try:
            if ipaddress.ip_address(host).version == 6:
                host = f"[{host}]"
        except ValueError:
            pass  # a host name
        return f"{self.scheme}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProbedSite:
    remote_site_id: str
    name: str
    product: str
    version: str
    time_zone: str
    fingerprint: str | None
    public_key: bytes
    devices: tuple[NewDevice, ...]
    """Read as every device list from a site is (`central/site_device_list.py`): with
    each stream's format where the site reports it."""


async def probe_site(
    http: aiohttp.ClientSession,
    address: SiteAddress,
    *,
    username: str,
    password: str,
    fingerprint: str | None,
    clock: Clock,
    software: str,
    read_timeout_s: float,
) -> ProbedSite:
    """The site's identity and devices, or `SiteProbeError` naming what is wrong."""
    pin: str | None = None
    if address.scheme == "https":
        if fingerprint is None:
            seen = await _certificate_fingerprint(http, address)
            raise SiteProbeError(
                "fingerprint",
                f"{address.base_url}: HTTPS needs the site's certificate fingerprint; the "
                f"certificate there has SHA-256 {seen}. Compare it with what `siteline agent "
                "fingerprint` prints at the site, then give it as the fingerprint.",
            )
        try:
            pin = normalize_fingerprint(fingerprint).hex()
        except ValueError as exc:
            raise SiteProbeError("fingerprint", f"{fingerprint!r}: {exc}") from exc
    try:
        async with connect_to_site(
            http,
            address.base_url,
            username=username,
            password=password,
            fingerprint=pin,
            clock=clock,
            software=software,
            read_timeout_s=read_timeout_s,
        ) as link:
            info = await link.site_info()
            devices = await link.devices()
    except DialError as exc:
        raise _explain(exc, address) from exc
    except (LinkLost, RequestFailed) as exc:
        raise SiteProbeError("site", f"{address.base_url}: the link failed: {exc}") from exc
    return _probed(info, devices, address)


async def _certificate_fingerprint(http: aiohttp.ClientSession, address: SiteAddress) -> str:
    try:
        async with http.get(address.base_url, ssl=aiohttp.Fingerprint(bytes(32))):
            pass
    except aiohttp.ServerFingerprintMismatch as exc:
        return ":".join(f"{b:02X}" for b in exc.got)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _explain(DialError(f"{address.base_url}: {exc}"), address, cause=exc) from exc
    raise SiteProbeError("fingerprint", f"{address.base_url}: no certificate was presented")


def _explain(
    exc: DialError, address: SiteAddress, *, cause: BaseException | None = None
) -> SiteProbeError:
    """Which field a dial failure points at."""
    where = address.base_url
    match exc.kind:
        case DialFailure.REFUSED:
            return SiteProbeError("password", f"{where}: the site refused the username or password")
        case DialFailure.UNTRUSTED:
            return SiteProbeError("fingerprint", str(exc))
        case DialFailure.INCOMPATIBLE:
            return SiteProbeError("site", f"{where}: no protocol version in common ({exc})")
        case DialFailure.BROKEN:
            return SiteProbeError(
                "site", f"{where}: this does not answer as a Siteline site ({exc})"
            )
    root = cause if cause is not None else exc.__cause__
    if isinstance(root, aiohttp.ClientConnectorError):
        os_error = root.os_error
        if isinstance(os_error, socket.gaierror):
            return SiteProbeError("address", f"{address.host!r} does not resolve to an address")
        if isinstance(os_error, ssl.SSLError):
            return _wrong_scheme(address)
        if os_error.errno == errno.ECONNREFUSED:
            return SiteProbeError(
                "port", f"{address.host} refuses connections on port {address.port}"
            )
        if os_error.errno in _ADDRESS_ERRNOS:
            return SiteProbeError("address", f"nothing answers at {address.host} ({os_error})")
    if isinstance(root, aiohttp.ClientSSLError | ssl.SSLError):
        return _wrong_scheme(address)
    if isinstance(root, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError) or (
        isinstance(root, aiohttp.ClientOSError) and address.scheme == "http"
    ):
        return _wrong_scheme(address)
    if isinstance(root, TimeoutError | aiohttp.ServerTimeoutError):
        return SiteProbeError("address", f"nothing answers at {address.host} in time")
    return SiteProbeError("address", f"{where}: cannot reach the site ({exc})")


def _wrong_scheme(address: SiteAddress) -> SiteProbeError:
    other = "http" if address.scheme == "https" else "https"
    return SiteProbeError(
        "scheme",
        f"{address.base_url}: port {address.port} does not speak {address.scheme.upper()}; "
        f"is the site set up for {other.upper()}?",
    )


def _probed(info: Mapping[str, object], devices: object, address: SiteAddress) -> ProbedSite:
    def text(mapping: Mapping[str, object], key: str) -> str:
        value = mapping.get(key)
        if not isinstance(value, str):
            raise SiteProbeError("site", f"{address.base_url}: the site's {key!r} is missing")
        return value

    try:
        probed_devices = discovered_devices(devices)
    except DeviceListError as exc:
        raise SiteProbeError("site", f"{address.base_url}: its device list: {exc}") from exc
    try:
        public_key = bytes.fromhex(text(info, "public_key"))
    except ValueError as exc:
        raise SiteProbeError("site", f"{address.base_url}: the public key is not hex") from exc
    fingerprint = info.get("fingerprint")
    return ProbedSite(
        remote_site_id=text(info, "id"),
        name=text(info, "name"),
        product=text(info, "product"),
        version=text(info, "version"),
        time_zone=text(info, "time_zone"),
        fingerprint=fingerprint if isinstance(fingerprint, str) else None,
        public_key=public_key,
        devices=tuple(probed_devices),
    )
