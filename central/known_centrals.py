"""Trusting a central's self-signed certificate on first use, as SSH trusts host keys.

A central serves HTTPS with a certificate nobody signed; a client trusts it by its SHA-256
fingerprint. The client commands take the fingerprint from the operator when given
(`--central-fingerprint`); otherwise the first contact reads the certificate the central
presents (a TLS handshake that sends nothing), shows its fingerprint, and remembers it per
central URL in `known_centrals.json`. Every request is then pinned to the remembered
fingerprint, so a different certificate later is refused before a password is sent.

The file maps each central's base URL (scheme, host and port, nothing else) to the
fingerprint and when it was first seen. It is written whole, atomically, readable only by
its owner.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
from dataclasses import dataclass
from pathlib import Path

from shared.api_input import format_instant
from shared.atomic_file import write_atomically
from shared.clock import Clock
from shared.tls_pinning import format_fingerprint, normalize_fingerprint

FILE_NAME = "known_centrals.json"
HANDSHAKE_TIMEOUT_S = 10.0


class KnownCentralsError(Exception):
    """The file of known centrals cannot be read or written; the message says which and why."""


@dataclass(frozen=True, slots=True)
class KnownCentral:
    fingerprint: str  # AB:CD:...
    first_seen: str  # ISO 8601


class KnownCentrals:
    """See the module docstring."""

    def __init__(self, path: Path, *, clock: Clock) -> None:
        self._path = path
        self._clock = clock

    @property
    def path(self) -> Path:
        return self._path

    def get(self, central_url: str) -> KnownCentral | None:
        """What is remembered of the central at `central_url`, or None."""
        entry = self._read().get(central_url)
        return None if entry is None else KnownCentral(**entry)

    def remember(self, central_url: str, fingerprint: str) -> None:
        """Remember `fingerprint` for `central_url`, replacing what was remembered."""
        canonical = format_fingerprint(normalize_fingerprint(fingerprint))
        centrals = self._read()
        known = centrals.get(central_url)
        if known is not None and known["fingerprint"] == canonical:
            return
        centrals[central_url] = {
            "fingerprint": canonical,
            "first_seen": format_instant(self._clock.now_ns()),
        }
        text = json.dumps({"centrals": centrals}, indent=2, sort_keys=True) + "\n"
        try:
            write_atomically(self._path, text.encode(), mode=0o600)
        except OSError as exc:
            raise KnownCentralsError(f"{self._path}: cannot be written ({exc.strerror})") from exc

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise KnownCentralsError(f"{self._path}: cannot be read ({exc.strerror})") from exc
        try:
            centrals = json.loads(text)["centrals"]
            if not isinstance(centrals, dict):
                raise TypeError("centrals is not an object")
            for url, entry in centrals.items():
                normalize_fingerprint(entry["fingerprint"])
                if not isinstance(url, str) or not isinstance(entry["first_seen"], str):
                    raise TypeError(f"the entry of {url!r} is malformed")
        except (ValueError, KeyError, TypeError) as exc:
            raise KnownCentralsError(
                f"{self._path}: not a file of known centrals ({exc}); fix or remove it"
            ) from exc
        return {
            url: {"fingerprint": e["fingerprint"], "first_seen": e["first_seen"]}
            for url, e in centrals.items()
        }


async def presented_fingerprint(host: str, port: int) -> str:
    """The SHA-256 fingerprint of the certificate the server at host:port presents.

    Only a handshake: the certificate is not trusted for anything, and nothing is sent.
    Raises OSError (ssl.SSLError included) or TimeoutError when there is no such server.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # reading the certificate, not trusting it
    async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
        _, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        tls = writer.get_extra_info("ssl_object")
        certificate = None if tls is None else tls.getpeercert(binary_form=True)
        if not certificate:
            raise ssl.SSLError(f"{host}:{port} presented no certificate")
        return format_fingerprint(hashlib.sha256(certificate).digest())
    finally:
        writer.close()
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass  # closing a connection we only looked at
