"""Certificate pinning for clients of an agent: the fingerprint's text form and aiohttp's pin.

An agent's certificate is self-signed, so a client trusts it only by its SHA-256 fingerprint,
read once from the agent (`siteline agent fingerprint`, its site info, or its zeroconf
record) and kept. `aiohttp.Fingerprint` then refuses any other certificate during the TLS
handshake, before a request is sent.
"""

from __future__ import annotations

import re

import aiohttp

SHA256_BYTES = 32
_HEX_PAIRS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})*$")
_HEX = re.compile(r"^[0-9A-Fa-f]*$")


def format_fingerprint(digest: bytes) -> str:
    """`AB:CD:...`: uppercase hex pairs joined by colons, as `openssl x509 -fingerprint` prints."""
    return ":".join(f"{byte:02X}" for byte in digest)


def normalize_fingerprint(text: str) -> bytes:
    """The 32 bytes of a SHA-256 fingerprint written with or without colons, in any case.

    Surrounding spaces and an `openssl` prefix such as `sha256 Fingerprint=` are ignored.
    Raises ValueError saying what is wrong otherwise.
    """
    value = text.strip()
    if "=" in value:
        value = value.rsplit("=", 1)[1].strip()
    if ":" in value:
        if not _HEX_PAIRS.fullmatch(value):
            raise ValueError(
                f"fingerprint {text!r}: expected hex pairs separated by colons (AB:CD:...)"
            )
        value = value.replace(":", "")
    elif not _HEX.fullmatch(value):
        raise ValueError(f"fingerprint {text!r}: expected hexadecimal digits")
    if len(value) != 2 * SHA256_BYTES:
        raise ValueError(
            f"fingerprint {text!r}: a SHA-256 fingerprint has {SHA256_BYTES} bytes "
            f"({2 * SHA256_BYTES} hex digits), this has {len(value) / 2:g}"
        )
    return bytes.fromhex(value)


def pinned_fingerprint(text: str) -> aiohttp.Fingerprint:
    """An `aiohttp.Fingerprint` accepting only the certificate with this SHA-256 fingerprint.

    Pass it as `ssl=` of a request or of `aiohttp.TCPConnector`.
    """
    return aiohttp.Fingerprint(normalize_fingerprint(text))
