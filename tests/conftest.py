"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

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


TmpfsFactory = Callable[[str], Path]


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[TmpfsFactory]:
    """Mounts small tmpfs disks (size as for mount, e.g. "8m"), unmounted after the test.

    Needs root (as in CI and scripts/test.sh); where mounting is not permitted, the test
    is skipped with the mount's own error.
    """
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        mount_point = tmp_path / f"disk-{len(mounted)}"
        mount_point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"mount -t tmpfs is not permitted here: {result.stderr.strip()}")
        mounted.append(mount_point)
        return mount_point

    try:
        yield mount
    finally:
        for mount_point in mounted:
            subprocess.run(["umount", str(mount_point)], check=False)
