"""A central as a child process, run the way an operator runs it, and a client for its API.

`make_central` writes the central's folder with `init_central` (what `siteline central init`
does: HTTPS, a fresh identity, the user ``admin``); sites may then be written straight into
its catalog (`open_catalog`) before it starts. `CentralProcess.start` runs
``python -m shared.command_line central run`` and reads the API address and the certificate's
fingerprint from what it prints; its log goes to a file in the folder. `CentralClient` is an
HTTPS session pinned to that certificate, with the admin's token.

Running the central in its own process keeps the measuring client off its event loop, and
lets a benchmark read the central's CPU time from /proc (bench/process_cpu.py).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_catalog import SqliteCatalog
from central.central_init import init_central
from central.config import load_central_config
from shared.clock import SystemClock

REPO = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "bench-admin-pw"  # noqa: S105 - a throwaway central on loopback
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
ONLINE_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@dataclass(frozen=True)
class CentralFolder:
    directory: Path
    config_path: Path


def make_central(directory: Path) -> CentralFolder:
    """A central's folder as `siteline central init` writes it, on a free loopback port
    (blocking: scrypt for the admin's password)."""
    result = init_central(
        directory, clock=SystemClock(), admin_password=ADMIN_PASSWORD, port=free_port()
    )
    return CentralFolder(directory, result.config_path)


def open_catalog(folder: CentralFolder) -> SqliteCatalog:
    """The central's catalog, to write sites into before it starts (blocking)."""
    config = load_central_config(folder.config_path)
    return SqliteCatalog.open(
        config.storage.catalog_path,
        clock=SystemClock(),
        secret_box=SecretBox.load_or_create(config.storage.secret_key),
    )


class CentralProcess:
    """`siteline central run` in a child process."""

    def __init__(self, process: asyncio.subprocess.Process, base_url: str, fingerprint: str):
        self.process = process
        self.base_url = base_url
        self.fingerprint = fingerprint

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(
        cls,
        folder: CentralFolder,
        *,
        log_level: str = "WARNING",
        profile: Path | None = None,
    ) -> CentralProcess:
        """Start it; with `profile`, under cProfile, whose statistics go to that file when
        the central stops."""
        profiling = () if profile is None else ("-m", "cProfile", "-o", str(profile))
        log = (folder.directory / "central.log").open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *profiling,
                "-m",
                "shared.command_line",
                "central",
                "run",
                "--config",
                str(folder.config_path),
                "--log-level",
                log_level,
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        finally:
            log.close()
        base_url = fingerprint = ""
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                assert process.stdout is not None
                while not (base_url and fingerprint):
                    line = (await process.stdout.readline()).decode()
                    if not line:
                        raise RuntimeError(
                            f"the central ended at start; see {folder.directory / 'central.log'}"
                        )
                    label, _, value = line.strip().partition(":")
                    if label == "API":
                        base_url = (
                            value.strip()
                            .removesuffix(" (OpenAPI at /api/v1/openapi.json)")
                            .removesuffix("/api/v1")
                        )
                    elif label == "certificate":
                        fingerprint = value.strip().removeprefix("SHA-256").strip()
        except BaseException:
            process.kill()
            await process.wait()
            raise
        return cls(process, base_url, fingerprint)

    async def stop(self) -> None:
        """SIGTERM, and wait for a clean stop (SIGKILL after a minute)."""
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                assert self.process.stdout is not None
                await self.process.stdout.read()
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class CentralClient:
    """An HTTPS session pinned to the central's certificate, logged in as admin."""

    def __init__(self, base_url: str, fingerprint: str) -> None:
        self.base_url = base_url
        self.fingerprint = fingerprint
        self.token = ""
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                ssl=aiohttp.Fingerprint(bytes.fromhex(fingerprint.replace(":", ""))), limit=0
            )
        )

    def url(self, path: str) -> str:
        return f"{self.base_url}/api/v1{path}"

    def ws_url(self, path: str) -> str:
        return self.url(path).replace("https://", "wss://", 1).replace("http://", "ws://", 1)

    async def login(self, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
        async with self.session.post(
            self.url("/auth/login"), json={"username": username, "password": password}
        ) as reply:
            body = await reply.json()
            if reply.status != 200:
                raise RuntimeError(f"login as {username} answered {reply.status}: {body}")
        token: str = body["token"]
        self.token = token
        return token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of one request that must succeed."""
        async with self.session.request(
            method, self.url(path), headers=self.headers, **kwargs
        ) as reply:
            body = await reply.json() if reply.content_type == "application/json" else None
            if reply.status >= 300:
                raise RuntimeError(f"{method} {path} answered {reply.status}: {body}")
            return body

    async def close(self) -> None:
        await self.session.close()


async def add_replay_sites(client: CentralClient, sites: list[dict[str, object]]) -> list[str]:
    """Add every replay site through the API (probed), wait until all are online; the
    central's ids of the cameras, in the order of their ids at the sites."""
    for site in sites:
        await client.call(
            "POST",
            "/sites",
            json={
                "name": site["site_id"],
                "address": "127.0.0.1",
                "port": site["port"],
                "username": site["username"],
                "password": site["password"],
                "fingerprint": site["fingerprint"],
            },
        )
    async with asyncio.timeout(ONLINE_TIMEOUT_S):
        while True:
            listed = await client.call("GET", "/sites")
            if all(s["status"]["state"] == "online" for s in listed["sites"]):
                break
            await asyncio.sleep(0.5)
    devices = (await client.call("GET", "/devices"))["devices"]
    cameras = sorted(
        (d for d in devices if d["kind"] == "camera"), key=lambda d: d["remote_device_id"]
    )
    return [d["id"] for d in cameras]
