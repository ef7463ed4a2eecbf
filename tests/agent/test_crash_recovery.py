"""kill -9 of a recording agent: the store reopens cleanly and every stored chunk verifies.

A child process runs `siteline agent run` and is killed with SIGKILL at a random moment,
several rounds in a row on the same store. After each kill the store must pass the full
check (storage invariants, signatures, chains), must keep everything that was there before,
and the next run must continue the chain. Rounds: 3 in CI; SITELINE_CRASH_ROUNDS for more.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.config import load_agent_config
from agent.store_audit import audit_store
from tests.agent.site_config import small_camera, write_site_config

ROUNDS = int(os.environ.get("SITELINE_CRASH_ROUNDS", "3"))
STARTUP_TIMEOUT_S = 30.0


def _stored_chunks(config_path: Path) -> int:
    audit = audit_store(load_agent_config(config_path))
    problems = [
        (s.summary.device_id, s.summary.stream, s.verification.problems) for s in audit.streams
    ]
    assert audit.store.ok, audit.store.violations
    assert audit.ok, problems
    return audit.store.chunk_count


def _run_until_first_status(config_path: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.command_line",
            "agent",
            "run",
            "--config",
            str(config_path),
            "--status-interval",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("status:"):
            return process
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"the agent did not start recording (exit code {process.poll()})")


def test_kill_9_at_random_moments_loses_nothing_stored(tmp_path: Path) -> None:
    devices = small_camera("cam-a", audio=True) + '\n[[inputs]]\nid = "door"\nperiod_s = 2\n'
    config_path = write_site_config(tmp_path, devices)
    rng = random.Random(int(os.environ.get("SITELINE_CRASH_SEED", "20261123")))
    before = 0
    for _round in range(ROUNDS):
        process = _run_until_first_status(config_path)
        time.sleep(rng.uniform(0.5, 3.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()
        after = _stored_chunks(config_path)
        assert after >= before  # nothing stored earlier was lost
        before = after
    assert before > 0

    # A clean run after the crashes continues every chain.
    process = _run_until_first_status(config_path)
    time.sleep(2.0)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert process.stdout is not None
    process.stdout.close()
    assert _stored_chunks(config_path) > before
