"""The protocol package may not import I/O: the lint rule that says so is in force."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["asyncio", "aiohttp", "socket"])
def test_importing_io_in_the_protocol_is_a_lint_error(module: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--stdin-filename",
            "shared/link/anything.py",
            "-",
        ],
        input=f"import {module}\n\nprint({module})\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "TID251" in result.stdout
    assert "sans-I/O" in result.stdout


def test_the_same_import_elsewhere_is_allowed() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--stdin-filename",
            "shared/link_io/anything.py",
            "-",
        ],
        input="import asyncio\n\nprint(asyncio)\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
