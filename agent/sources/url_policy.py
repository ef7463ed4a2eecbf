"""What a camera URL may look like before it is handed to FFmpeg.

FFmpeg opens far more than network cameras: a URL can name a local file (`file:`), glue
files together (`concat:`), read a descriptor (`pipe:`), carve a byte range out of another
URL (`subfile,,start,...:`), or wrap another protocol (`crypto:`, `async:`, `cache:`). A
camera URL typed into a configuration therefore is a way to read the agent's own disk or
reach services the agent can see (SSRF). The policy here is an allow-list: only `rtsp://`
and `rtsps://` URLs with a proper host, an optional port and optional credentials. LAN,
private and loopback addresses are legitimate (cameras live there); what is refused is an
address written so that it hides what it is (an IPv4 address inside an IPv6 literal, a
numeric host in a non-canonical form).

Error messages name the configuration field and the reason, and never contain the
password: they use `redact_url` or no URL at all.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable

from agent.sources.base import SourceConfigError

_Refuse = Callable[[str], SourceConfigError]

MAX_URL_CHARS = 2048
ALLOWED_SCHEMES = ("rtsp", "rtsps")

# FFmpeg protocols that read local data or wrap another URL; named in errors so an
# operator sees why the URL is refused, not just that its scheme is unknown.
_FFMPEG_TRICK_PROTOCOLS = frozenset(
    {
        "async",
        "bluray",
        "cache",
        "concat",
        "concatf",
        "crypto",
        "data",
        "fd",
        "file",
        "ftp",
        "gopher",
        "hls",
        "http",
        "https",
        "ipfs",
        "pipe",
        "subfile",
        "tee",
        "unix",
    }
)

# RFC 3986: unreserved, reserved ("gen-delims" and "sub-delims") and "%" for escapes.
_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~" + ":/?#[]@" + "!$&'()*+,;=%")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_PERCENT_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENCODED_CONTROL_RE = re.compile(r"%(?:[01][0-9A-Fa-f]|7[Ff])")
_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def validate_camera_url(url: str, *, field: str) -> str:
    """Return `url` unchanged if it is an acceptable rtsp(s) camera URL, else raise.

    Raises `SourceConfigError` whose message starts with `field` and states the reason.
    """

    def refuse(reason: str) -> SourceConfigError:
        return SourceConfigError(f"{field}: {reason}")

    if not url:
        raise refuse("camera URL is empty")
    if len(url) > MAX_URL_CHARS:
        raise refuse(f"camera URL is longer than {MAX_URL_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise refuse("camera URL contains whitespace or a control character")

    scheme, sep, rest = url.partition(":")
    # FFmpeg reads a protocol name up to the first ":" or ","; a comma there means
    # protocol options ("subfile,,start,10,end,20,,:file:..."), never a camera.
    if "," in scheme:
        prefix = scheme.split(",", 1)[0]
        raise refuse(
            f"camera URL uses an FFmpeg protocol-option prefix ({prefix + ','!r}); "
            "only rtsp:// and rtsps:// are allowed"
        )
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise refuse("camera URL must start with rtsp:// or rtsps://")
    lowered = scheme.lower()
    if lowered in _FFMPEG_TRICK_PROTOCOLS:
        raise refuse(
            f"the {lowered + ':'!r} protocol is not allowed for cameras; "
            "only rtsp:// and rtsps:// are allowed"
        )
    if lowered not in ALLOWED_SCHEMES:
        raise refuse(f"scheme {lowered!r} is not allowed; only rtsp:// and rtsps:// are allowed")
    if not rest.startswith("//"):
        raise refuse("camera URL must start with rtsp:// or rtsps://")

    if any(ch not in _URL_CHARS for ch in url):
        raise refuse("camera URL contains a character that is not allowed in a URL")
    if _PERCENT_ESCAPE_RE.search(url):
        raise refuse("camera URL has a malformed percent-escape")
    # FFmpeg decodes escapes in credentials before building RTSP headers; an escaped CR or
    # LF there would let a configuration inject headers.
    if _ENCODED_CONTROL_RE.search(url):
        raise refuse("camera URL contains a percent-encoded control character")
    if "#" in url:
        raise refuse("camera URL must not contain a fragment ('#')")

    after_slashes = rest[2:]
    authority = re.split(r"[/?]", after_slashes, maxsplit=1)[0]
    # Both FFmpeg and urllib take the last "@" before the path as the end of the
    # credentials, so a password may contain "@".
    _userinfo, _at, hostport = authority.rpartition("@")
    _check_host_and_port(hostport, refuse)
    return url


def _check_host_and_port(hostport: str, refuse: _Refuse) -> None:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise refuse("camera URL has an unterminated IPv6 address ('[' without ']')")
        host_literal = hostport[1:end]
        port_part = hostport[end + 1 :]
        if port_part and not port_part.startswith(":"):
            raise refuse("camera URL has characters after the IPv6 address")
        port = port_part[1:] if port_part else None
        _check_ipv6_host(host_literal, refuse)
    else:
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
        if not host:
            raise refuse("camera URL has no host")
        _check_named_or_ipv4_host(host, refuse)
    if port is not None and not (port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        raise refuse("camera URL port must be a number from 1 to 65535")


def _check_ipv6_host(literal: str, refuse: _Refuse) -> None:
    if not literal:
        raise refuse("camera URL has no host")
    if "%" in literal:
        raise refuse("camera URL IPv6 zone identifiers are not supported")
    try:
        address = ipaddress.IPv6Address(literal)
    except ValueError:
        raise refuse(f"camera URL host [{literal}] is not a valid IPv6 address") from None
    # An IPv4 address written inside an IPv6 literal slips past filters that look at
    # IPv4 addresses (CVE-class SSRF); the real IPv4 form must be used instead.
    embeds_ipv4 = (
        address.ipv4_mapped is not None
        or address in _NAT64_PREFIX
        or (address in _IPV4_COMPATIBLE and int(address) > 1)
    )
    if embeds_ipv4:
        raise refuse(
            f"camera URL host [{literal}] embeds an IPv4 address in IPv6 form; "
            "write the IPv4 address itself"
        )


def _check_named_or_ipv4_host(host: str, refuse: _Refuse) -> None:
    if len(host) > 253:
        raise refuse("camera URL host name is longer than 253 characters")
    if _looks_numeric(host):
        # Only the canonical dotted quad: the C resolver also reads "2130706433",
        # "0x7f.1" or "0177.0.0.1" as addresses, which hides what the host really is.
        try:
            canonical = str(ipaddress.IPv4Address(host))
        except ValueError:
            canonical = ""
        if canonical != host:
            raise refuse(f"camera URL host {host!r} is not a canonical IPv4 address")
        return
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not all(_HOST_LABEL_RE.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise refuse(f"camera URL host {host!r} is not a valid host name or IP address")


def _looks_numeric(host: str) -> bool:
    """True for hosts a resolver may read as a number: dotted digits or 0x-hex parts."""
    return all(
        part.isdigit()
        or (part[:2].lower() == "0x" and all(c in string.hexdigits for c in part[2:]))
        for part in host.split(".")
        if part
    )


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`; safe on malformed input."""
    scheme_end = url.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    authority_end = len(url)
    for stop in "/?#":
        index = url.find(stop, start)
        if index >= 0:
            authority_end = min(authority_end, index)
    at = url.rfind("@", start, authority_end)
    if at < 0:
        return url
    userinfo = url[start:at]
    user, colon, _password = userinfo.partition(":")
    redacted = f"{user}:***" if colon else user
    return url[:start] + redacted + url[at:]


def scrub_url_secrets(text: str, url: str) -> str:
    """`text` with `url` redacted and its password replaced, wherever a library echoed them."""
    redacted = redact_url(url)
    text = text.replace(url, redacted)
    rest = url.split("://", 1)[-1]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, _host = authority.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    return text.replace(password, "***") if password else text
