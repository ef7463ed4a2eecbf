"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.rtsp_server import SYSTEM_PYTHON, RtspServerProcess, system_python_has_gi


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def rtsp_server() -> Iterator[RtspServerProcess]:
    """A running GStreamer RTSP camera with /hq (with audio) and /lq mounts on a free port.

    Fails (never skips) when the system Python lacks GStreamer's RTSP bindings.
    """
    if not system_python_has_gi():
        pytest.fail(
            f"{SYSTEM_PYTHON} cannot import GStreamer's RTSP server bindings (gi, "
            "GstRtspServer); run scripts/test.sh, which installs the Debian packages"
        )
    server = RtspServerProcess(_free_tcp_port(), audio=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
