"""Camera URL policy: what FFmpeg may be asked to open."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.sources.base import SourceConfigError
from agent.sources.url_policy import redact_url, scrub_url_secrets, validate_camera_url

FIELD = "cameras.front.hq_url"
ONLY_RTSP = "only rtsp:// and rtsps:// are allowed"

GOOD_URLS = [
    "rtsp://192.168.1.64/Streaming/Channels/101",
    "rtsp://admin:secret@192.168.1.64:554/Streaming/Channels/102?transportmode=unicast",
    "rtsps://camera.example.com:322/live",
    "RTSP://Cam-1.local/stream1",
    "rtsp://10.0.0.5:8554/h264?subtype=1&channel=2",
    "rtsp://127.0.0.1:8554/hq",
    "rtsp://[fe80::1]:8554/x",
    "rtsp://[::1]/x",
    "rtsp://user:p%40ss@cam.lan/x",  # an escaped "@" in the password
    "rtsp://user:pa@ss@cam.lan/x",  # a raw "@": the last one ends the credentials
    "rtsp://cam.lan.",
]

BAD_URLS = [
    ("", "camera URL is empty"),
    ("file:///etc/passwd", f"the 'file:' protocol is not allowed for cameras; {ONLY_RTSP}"),
    ("file:/etc/shadow", f"the 'file:' protocol is not allowed for cameras; {ONLY_RTSP}"),
    ("concat:a.mp4|/etc/passwd", f"the 'concat:' protocol is not allowed for cameras; {ONLY_RTSP}"),
    ("pipe:0", f"the 'pipe:' protocol is not allowed for cameras; {ONLY_RTSP}"),
    ("data:text/plain,abc", f"the 'data:' protocol is not allowed for cameras; {ONLY_RTSP}"),
    (
        "crypto:rtsp://cam/x",
        f"the 'crypto:' protocol is not allowed for cameras; {ONLY_RTSP}",
    ),
    ("async:rtsp://cam/x", f"the 'async:' protocol is not allowed for cameras; {ONLY_RTSP}"),
    ("http://cam/x", f"the 'http:' protocol is not allowed for cameras; {ONLY_RTSP}"),
    (
        "subfile,,start,0,end,100,,:/etc/passwd",
        f"camera URL uses an FFmpeg protocol-option prefix ('subfile,'); {ONLY_RTSP}",
    ),
    (
        "rtsp,foo:rtsp://cam/x",
        f"camera URL uses an FFmpeg protocol-option prefix ('rtsp,'); {ONLY_RTSP}",
    ),
    ("rtmp://cam/live", f"scheme 'rtmp' is not allowed; {ONLY_RTSP}"),
    ("udp://239.0.0.1:1234", f"scheme 'udp' is not allowed; {ONLY_RTSP}"),
    ("/etc/passwd", "camera URL must start with rtsp:// or rtsps://"),
    ("garbage", "camera URL must start with rtsp:// or rtsps://"),
    ("rtsp:cam/x", "camera URL must start with rtsp:// or rtsps://"),
    ("rtsp://", "camera URL has no host"),
    ("rtsp:///x", "camera URL has no host"),
    ("rtsp://user:pw@/x", "camera URL has no host"),
    ("rtsp://:554/x", "camera URL has no host"),
    ("rtsp://cam:0/x", "camera URL port must be a number from 1 to 65535"),
    ("rtsp://cam:65536/x", "camera URL port must be a number from 1 to 65535"),
    ("rtsp://cam:http/x", "camera URL port must be a number from 1 to 65535"),
    ("rtsp://cam:/x", "camera URL port must be a number from 1 to 65535"),
    ("rtsp://ca m/x", "camera URL contains whitespace or a control character"),
    ("rtsp://cam/x\r\nInjected: 1", "camera URL contains whitespace or a control character"),
    ("rtsp://cam/x\x00", "camera URL contains whitespace or a control character"),
    ("rtsp://cam/x\t", "camera URL contains whitespace or a control character"),
    (
        "rtsp://user:pw%0d%0aX-Injected:%201@cam/x",
        "camera URL contains a percent-encoded control character",
    ),
    ("rtsp://cam/x%zz", "camera URL has a malformed percent-escape"),
    ("rtsp://cam/x#frag", "camera URL must not contain a fragment ('#')"),
    ("rtsp://cam\\@evil/x", "camera URL contains a character that is not allowed in a URL"),
    ("rtsp://cam/ü", "camera URL contains a character that is not allowed in a URL"),
    (
        "rtsp://[::ffff:127.0.0.1]/x",
        "camera URL host [::ffff:127.0.0.1] embeds an IPv4 address in IPv6 form; "
        "write the IPv4 address itself",
    ),
    (
        "rtsp://[::ffff:7f00:1]:554/x",
        "camera URL host [::ffff:7f00:1] embeds an IPv4 address in IPv6 form; "
        "write the IPv4 address itself",
    ),
    (
        "rtsp://[64:ff9b::a9fe:a9fe]/x",
        "camera URL host [64:ff9b::a9fe:a9fe] embeds an IPv4 address in IPv6 form; "
        "write the IPv4 address itself",
    ),
    (
        "rtsp://[::169.254.169.254]/x",
        "camera URL host [::169.254.169.254] embeds an IPv4 address in IPv6 form; "
        "write the IPv4 address itself",
    ),
    ("rtsp://[fe80::1%25eth0]/x", "camera URL IPv6 zone identifiers are not supported"),
    ("rtsp://[zz::1]/x", "camera URL host [zz::1] is not a valid IPv6 address"),
    ("rtsp://[::1/x", "camera URL has an unterminated IPv6 address ('[' without ']')"),
    ("rtsp://[::1]junk/x", "camera URL has characters after the IPv6 address"),
    ("rtsp://2130706433/x", "camera URL host '2130706433' is not a canonical IPv4 address"),
    ("rtsp://0x7f.1/x", "camera URL host '0x7f.1' is not a canonical IPv4 address"),
    ("rtsp://0177.0.0.1/x", "camera URL host '0177.0.0.1' is not a canonical IPv4 address"),
    ("rtsp://127.1/x", "camera URL host '127.1' is not a canonical IPv4 address"),
    ("rtsp://-cam-/x", "camera URL host '-cam-' is not a valid host name or IP address"),
    ("rtsp://cam..lan/x", "camera URL host 'cam..lan' is not a valid host name or IP address"),
    ("rtsp://cam.123/x", "camera URL host 'cam.123' is not a valid host name or IP address"),
    ("rtsp://" + "a" * 2048, "camera URL is longer than 2048 characters"),
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_good_urls_are_returned_unchanged(url: str) -> None:
    assert validate_camera_url(url, field=FIELD) == url


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_bad_urls_are_refused_with_the_field_and_the_reason(url: str, reason: str) -> None:
    with pytest.raises(SourceConfigError) as caught:
        validate_camera_url(url, field=FIELD)
    assert str(caught.value) == f"{FIELD}: {reason}"


def test_refusal_is_a_value_error_for_config_loaders() -> None:
    with pytest.raises(ValueError, match="lq_url: camera URL has no host"):
        validate_camera_url("rtsp://", field="lq_url")


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("rtsp://admin:secret@cam/x", "rtsp://admin:***@cam/x"),
        ("rtsp://admin@cam/x", "rtsp://admin@cam/x"),
        ("rtsp://cam/x", "rtsp://cam/x"),
        ("rtsp://a:b@c@cam:554/p@q", "rtsp://a:***@cam:554/p@q"),
        ("rtsp://:onlypass@cam/", "rtsp://:***@cam/"),
        ("user:pw@cam", "user:***@cam"),
        ("", ""),
    ],
)
def test_redact_url_hides_only_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_scrub_removes_url_and_password_echoed_by_a_library() -> None:
    url = "rtsp://admin:hunter22@cam.lan/x"
    text = f"[Errno 111] Connection refused: '{url}' (password hunter22)"
    assert scrub_url_secrets(text, url) == (
        "[Errno 111] Connection refused: 'rtsp://admin:***@cam.lan/x' (password ***)"
    )


# The "~" marker cannot occur in any refusal message, so a match can only be a leak.
_PASSWORDS = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:"),
    min_size=1,
    max_size=24,
).map(lambda tail: "~" + tail)
_BROKEN_TAILS = st.sampled_from(
    [
        "@/x",
        "@cam:0/x",
        "@[::ffff:10.0.0.1]/x",
        "@2130706433/x",
        "@cam/x y",
        "@cam/x#f",
        "@cam/%0a",
        "@-bad-/x",
        "@cam:99999",
        "@[::1",
    ]
)


@given(password=_PASSWORDS, tail=_BROKEN_TAILS)
def test_refusals_never_contain_the_password(password: str, tail: str) -> None:
    url = f"rtsp://admin:{password}{tail}"
    with pytest.raises(SourceConfigError) as caught:
        validate_camera_url(url, field=FIELD)
    assert password not in str(caught.value)


@given(password=_PASSWORDS)
def test_redacted_urls_never_contain_the_password(password: str) -> None:
    redacted = redact_url(f"rtsp://admin:{password}@cam.lan:554/path?q=1")
    assert password not in redacted
    assert redacted == "rtsp://admin:***@cam.lan:554/path?q=1"
