"""Fixtures shared by the whole test suite, and its hygiene: every test fails if it leaves a
thread running or if any step of its event loop blocks for longer than a few tenths of a
second (blocking work belongs in worker threads)."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
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


_THREAD_EXIT_GRACE_S = 3.0
# A loop step longer than this means blocking work on the loop. Steps on this machine take
# a few milliseconds; on the 2-core CI machine, with encoder threads busy, a step of plain
# setup code once took 0.305 s, so the limit sits well above scheduling noise.
_SLOW_CALLBACK_S = 0.5


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    """Fail the test if threads it started are still alive shortly after it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + _THREAD_EXIT_GRACE_S
    while True:
        leftover = [
            t
            for t in threading.enumerate()
            # The loop's default executor ("asyncio_N") belongs to the loop, not the test.
            if t not in before and t.is_alive() and not t.name.startswith("asyncio_")
        ]
        if not leftover or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leftover, f"threads left running: {[t.name for t in leftover]}"


class _SlowStepLog(logging.Handler):
    """Collects asyncio debug mode's reports of loop steps that took too long."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing "):
            self.reports.append(message)


@pytest.fixture(autouse=True)
async def no_blocking_of_the_event_loop() -> AsyncIterator[None]:
    """Fail the test if any step of the event loop ran longer than `_SLOW_CALLBACK_S`."""
    loop = asyncio.get_running_loop()
    log = _SlowStepLog()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(log)
    loop.set_debug(True)
    loop.slow_callback_duration = _SLOW_CALLBACK_S
    try:
        yield
    finally:
        loop.set_debug(False)
        asyncio_logger.removeHandler(log)
    assert not log.reports, f"the event loop was blocked: {log.reports}"
