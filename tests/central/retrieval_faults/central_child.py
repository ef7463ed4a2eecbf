"""`siteline central run` as a child process that a test can kill with SIGKILL, and its API.

The way bench/central_process.py runs it (bench/ is not importable from the tests): the
folder is made by `init_central` (here with the short link timeouts of `LINKS_TOML`), the
child prints the API address and the certificate's fingerprint, its log goes to a file in
the folder. `ChildCentralApi` is an HTTPS session pinned to that certificate, logged in as
admin, answering (status, JSON body) like the in-process fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from central.central_init import init_central
from shared.clock import SystemClock
from tests.central.central_fixture import ADMIN_PASSWORD
from tests.central.retrieval_faults.fault_run import LINKS_TOML

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


def make_central_folder(directory: Path) -> Path:
    """The central's folder on a free loopback port; its config file (blocking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    made = init_central(directory, clock=SystemClock(), admin_password=ADMIN_PASSWORD, port=port)
    head, _, _ = made.config_path.read_text().partition("[links]")
    made.config_path.write_text(head + "[links]\n" + LINKS_TOML + "\n")
    return made.config_path


@dataclass
class CentralChild:
    process: asyncio.subprocess.Process
    base_url: str
    fingerprint: str
    draining: asyncio.Task[None]  # reads what it prints later, so that it never blocks

    def kill(self) -> None:
        """SIGKILL: no chance to close anything."""
        self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after STOP_TIMEOUT_S); nothing if it has ended."""
        if self.process.returncode is None:
            self.process.terminate()
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
        await self.process.wait()
        await self.draining


async def start_central(config_path: Path) -> CentralChild:
    log = (config_path.parent / "central.log").open("ab")
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shared.command_line", "central", "run",
            "--config", str(config_path), "--log-level", "WARNING",
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
    finally:
        log.close()
    base_url = fingerprint = ""
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            assert process.stdout is not None
            while not (base_url and fingerprint):
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise RuntimeError(f"the central ended at start; see {log.name}")
                label, _, value = line.strip().partition(":")
                if label == "API":
                    base_url = value.split()[0].removesuffix("/api/v1")
                elif label == "certificate":
                    fingerprint = value.strip().removeprefix("SHA-256").strip()
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return CentralChild(process, base_url, fingerprint, asyncio.create_task(_drain(process)))


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    while await process.stdout.read(65536):
        pass


class ChildCentralApi:
    """See the module docstring."""

    def __init__(self, child: CentralChild) -> None:
        fingerprint = bytes.fromhex(child.fingerprint.replace(":", ""))
        self._base = f"{child.base_url}/api/v1"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=aiohttp.Fingerprint(fingerprint))
        )
        self._token = ""

    async def login(self) -> None:
        status, body = await self.call(
            "POST", "/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert status == 200, body
        self._token = body["token"]

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        async with self._session.request(
            method, self._base + path, headers=headers, **kwargs
        ) as reply:
            body = await reply.json() if reply.content_type == "application/json" else None
            return reply.status, body

    async def close(self) -> None:
        await self._session.close()


@contextlib.asynccontextmanager
async def central_child(
    config_path: Path,
) -> AsyncIterator[tuple[CentralChild, ChildCentralApi]]:
    """The started central and its API; stopped (SIGTERM) at the end unless killed."""
    child = await start_central(config_path)
    api = ChildCentralApi(child)
    try:
        await api.login()
        yield child, api
    finally:
        await api.close()
        await child.stop()
