"""The `siteline` command as a real child process, for tests of the client commands: its
exit code and output, with the environment a test gives it (and nothing of the caller's
SITELINE_* variables or home folder)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class CommandResult:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def central_env(
    base_url: str, config_dir: Path, *, user: str = "admin", password: str | None = None
) -> dict[str, str]:
    """The variables naming a central and its login, and where known centrals are kept."""
    env = {
        "SITELINE_CENTRAL": base_url,
        "SITELINE_USER": user,
        "SITELINE_CONFIG_DIR": str(config_dir),
    }
    if password is not None:
        env["SITELINE_PASSWORD"] = password
    return env


async def siteline(*argv: str, env: Mapping[str, str]) -> CommandResult:
    """Run `siteline ARGV...` to its end; `env` gives HOME or SITELINE_CONFIG_DIR."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("SITELINE_")}
    child_env.update(env)
    if "HOME" not in env:  # never the real home folder
        child_env["HOME"] = str(Path(env["SITELINE_CONFIG_DIR"]).parent)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.command_line",
        *argv,
        cwd=REPO,
        env=child_env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return CommandResult(process.returncode, out.decode(), err.decode())
