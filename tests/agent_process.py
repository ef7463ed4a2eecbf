"""`siteline agent run` as a real child process, with its output collected line by line."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


@dataclass
class AgentProcess:
    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def until_serving(self, client: aiohttp.ClientSession, url: str) -> None:
        """Wait until `url` (an authenticated route) answers 401; fail on a traceback."""
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                assert not any("Traceback" in line for line in self.lines), self.output
                try:
                    async with client.get(url) as reply:
                        assert reply.status == 401
                        return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.2)

    async def stop(self) -> int:
        """SIGTERM, then the exit code."""
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_TIMEOUT_S):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def running_agent(
    config_file: Path,
    *,
    wrap: Callable[[Sequence[str]], Sequence[str]] = lambda argv: argv,
) -> AsyncIterator[AgentProcess]:
    """The running agent (killed if still running at the end); `wrap` turns its command
    line into another (to run it inside a network namespace, say)."""
    argv = [
        sys.executable,
        "-m",
        "shared.command_line",
        "agent",
        "run",
        "--config",
        str(config_file),
        "--status-interval",
        "1",
    ]
    command = list(wrap(argv))
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    agent = AgentProcess(process)

    async def collect() -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            agent.lines.append(line.decode().rstrip("\n"))

    collecting = asyncio.create_task(collect())
    try:
        yield agent
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await collecting
