"""The central's REST API as the client commands use it: log in, call, download.

One `CentralClient` talks to one central over an `aiohttp.ClientSession` the caller owns,
pinned to the central's certificate fingerprint over HTTPS. Every failure comes out as one
of two errors whose messages say what happened, never as a library's exception:

- `CentralRefused`: the central answered with an error (its status, code, message and the
  `field` at fault, as the API returns them);
- `CentralUnreachable`: no answer (nothing listens, TLS failed, the connection broke, no
  answer in time, an answer that is not the API's); `CertificateMismatch`, one of them,
  when the certificate is not the pinned one.

A download that breaks mid-way is resumed with a Range request from where it stopped.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from shared.clock import Clock
from shared.tls_pinning import format_fingerprint, pinned_fingerprint

API_PREFIX = "/api/v1"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
DOWNLOAD_ATTEMPTS = 5
DOWNLOAD_BLOCK_BYTES = 1 << 16
RETRY_DELAY_S = 1.0
_REASONS_TO_RETRY = (
    aiohttp.ClientPayloadError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    TimeoutError,
)


class CentralRefused(Exception):
    """The central answered with an error status."""

    def __init__(self, status: int, code: str, message: str, field: str | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def describe(self) -> str:
        """The message, led by the field at fault unless it names it already."""
        if self.field and not self.message.startswith(f"{self.field}:"):
            return f"{self.field}: {self.message}"
        return self.message


class CentralUnreachable(Exception):
    """No usable answer from the central; the message says why."""


class CertificateMismatch(CentralUnreachable):
    """The central presented a certificate other than the pinned one."""

    def __init__(self, base_url: str, expected: str, presented: str) -> None:
        super().__init__(
            f"{base_url} presented a certificate with SHA-256 {presented}, "
            f"not the pinned {expected}"
        )
        self.expected = expected
        self.presented = presented


class CentralClient:
    """See the module docstring. `pin` is the certificate's fingerprint (None over HTTP)."""

    def __init__(
        self, http: aiohttp.ClientSession, base_url: str, *, pin: str | None, clock: Clock
    ) -> None:
        self._http = http
        self._base_url = base_url
        self._pin = pin
        self._ssl: aiohttp.Fingerprint | bool = True if pin is None else pinned_fingerprint(pin)
        self._clock = clock
        self._token: str | None = None

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def pin(self) -> str | None:
        return self._pin

    async def login(self, username: str, password: str) -> None:
        """Log in; every later call carries the session's token."""
        body = await self.call(
            "POST", "/auth/login", body={"username": username, "password": password}
        )
        self._token = str(body["token"])

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, object] | None = None,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> Any:
        """The JSON answer of `method` on `path` (below /api/v1); None for an empty one."""
        timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_S, sock_read=read_timeout_s)
        url = self._base_url + API_PREFIX + path
        try:
            async with self._http.request(
                method, url, json=body, headers=self._headers(), ssl=self._ssl, timeout=timeout
            ) as reply:
                data = await reply.read()
                if reply.status >= 400:
                    raise _refusal(reply, data)
                if not data:
                    return None
                try:
                    return await reply.json()
                except (aiohttp.ContentTypeError, ValueError) as exc:
                    raise CentralUnreachable(
                        f"{url}: the answer is not the central API's JSON; is "
                        f"{self._base_url} a Siteline central?"
                    ) from exc
        except aiohttp.ClientError as exc:
            raise self._unreachable(exc) from exc
        except TimeoutError as exc:
            raise CentralUnreachable(
                f"{self._base_url} did not answer {method} {path} in time"
            ) from exc

    async def download(self, path: str, destination: Path, *, expected_bytes: int) -> None:
        """Download `path` into `destination` (made or emptied first), resuming with a Range
        request after a broken connection. `CentralUnreachable` when the file could not be
        had whole (what came stays in `destination`: the caller removes it)."""
        url = self._base_url + API_PREFIX + path
        with destination.open("wb") as handle:
            written, problem = await self._download_into(handle, url, expected_bytes)
            handle.flush()
            os.fsync(handle.fileno())
        if written != expected_bytes:
            reason = f" in {DOWNLOAD_ATTEMPTS} attempts ({problem!r})" if problem else ""
            raise CentralUnreachable(
                f"{url}: downloaded {written} of {expected_bytes} bytes{reason}"
            )

    async def _download_into(
        self, handle: BinaryIO, url: str, expected_bytes: int
    ) -> tuple[int, BaseException | None]:
        """(bytes written, the last reason to retry when the attempts ran out)."""
        timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S)
        written = 0
        problem: BaseException | None = None
        for attempt in range(DOWNLOAD_ATTEMPTS):
            if attempt:
                await self._clock.sleep(RETRY_DELAY_S * attempt)
            headers = self._headers()
            if written:
                headers["Range"] = f"bytes={written}-"
            try:
                async with self._http.get(
                    url, headers=headers, ssl=self._ssl, timeout=timeout
                ) as reply:
                    if reply.status == 416 and written == expected_bytes:
                        return written, None  # it was all there; the end just went unseen
                    if reply.status >= 400:
                        raise _refusal(reply, await reply.read())
                    if reply.status != 206 or not _resumes_at(reply, written):
                        handle.seek(0)  # the whole file again
                        handle.truncate()
                        written = 0
                    async for block in reply.content.iter_chunked(DOWNLOAD_BLOCK_BYTES):
                        handle.write(block)
                        written += len(block)
                return written, None
            except aiohttp.ServerFingerprintMismatch as exc:
                raise self._unreachable(exc) from exc
            except _REASONS_TO_RETRY as exc:
                problem = exc
            except aiohttp.ClientError as exc:
                raise self._unreachable(exc) from exc
        return written, problem

    def _headers(self) -> dict[str, str]:
        return {} if self._token is None else {"Authorization": f"Bearer {self._token}"}

    def _unreachable(self, exc: aiohttp.ClientError) -> CentralUnreachable:
        base = self._base_url
        if isinstance(exc, aiohttp.ServerFingerprintMismatch):
            return CertificateMismatch(
                base, format_fingerprint(exc.expected), format_fingerprint(exc.got)
            )
        if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
            return CentralUnreachable(f"{base}: the TLS handshake failed ({exc}); is it HTTPS?")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return CentralUnreachable(
                f"cannot reach the central at {base}: {describe_os_error(exc.os_error)}"
            )
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return CentralUnreachable(
                f"{base} closed the connection without answering; is it "
                f"{'HTTP' if base.startswith('https:') else 'HTTPS'}?"
            )
        return CentralUnreachable(f"{base}: the connection failed ({exc})")


def describe_os_error(error: OSError) -> str:
    """Why a connection failed, in words."""
    if error.errno == errno.ECONNREFUSED:
        return "nothing listens on that port (connection refused)"
    if isinstance(error, socket.gaierror):
        return f"the host name does not resolve ({error.strerror})"
    return error.strerror or str(error)


def _resumes_at(reply: aiohttp.ClientResponse, offset: int) -> bool:
    """Whether a 206 answer starts at `offset` (Content-Range: bytes START-END/SIZE)."""
    unit, _, span = reply.headers.get("Content-Range", "").partition(" ")
    start, _, _ = span.partition("-")
    return unit == "bytes" and start.isdigit() and int(start) == offset


def _refusal(reply: aiohttp.ClientResponse, data: bytes) -> CentralRefused:
    code, message, field = "http_error", f"HTTP {reply.status} {reply.reason or ''}".strip(), None
    try:
        error = json.loads(data)["error"]
        code, message = str(error["code"]), str(error["message"])
        field = None if error.get("field") is None else str(error["field"])
    except (ValueError, KeyError, TypeError):
        pass  # not the API's error body: the status says it
    return CentralRefused(reply.status, code, message, field)
