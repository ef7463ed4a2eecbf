"""A benchmark's helper process: started with this interpreter, it prints one JSON line when it
is ready (what it listens on) and runs until SIGTERM; its log goes to a file."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
BENCH = Path(__file__).resolve().parent


class JsonChild:
    def __init__(self, process: asyncio.subprocess.Process, info: dict[str, Any]) -> None:
        self.process = process
        self.info = info

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(cls, script: str, *arguments: str, log: Path) -> JsonChild:
        """Run bench/`script` with `arguments`; return once it printed its JSON line."""
        with log.open("ab") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BENCH / script),
                *arguments,
                cwd=BENCH.parent,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                limit=1 << 20,
            )
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                assert process.stdout is not None
                line = await process.stdout.readline()
            if not line:
                raise RuntimeError(f"{script} ended before it was ready; see {log}")
            info: dict[str, Any] = json.loads(line)
        except BaseException:
            process.kill()
            await process.wait()
            raise
        return cls(process, info)

    async def stop(self) -> None:
        if self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_S):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
