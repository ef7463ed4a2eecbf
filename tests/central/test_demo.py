"""The README's main command: `siteline demo` starts a central and two real agent processes,
adds the sites through the central's API, reports them online, stops by itself, and runs
again on the same folder."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

from tests.agent_process import REPO


def _free_port_run(count: int) -> int:
    """A port P such that P..P+count-1 are free on loopback now."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no run of free ports")


async def _demo(data_dir: Path, port: int, duration_s: int) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.command_line",
        "demo",
        "--duration",
        str(duration_s),
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--admin-password",
        "demo-test-pw",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(duration_s + 120):
        output, _ = await process.communicate()
    return process.returncode or 0, output.decode()


async def test_the_demo_runs_a_central_and_two_sites_and_runs_again(tmp_path: Path) -> None:
    port = _free_port_run(3)
    code, output = await _demo(tmp_path, port, 9)
    assert code == 0, output
    assert f"https://127.0.0.1:{port}/api/v1" in output
    assert "user admin, password demo-test-pw" in output
    assert "2/2 sites online" in output, output
    assert "Traceback" not in output
    assert (tmp_path / "central" / "central.toml").exists()
    code, output = await _demo(tmp_path, port, 8)
    assert code == 0, output
    assert "2/2 sites online" in output, output
