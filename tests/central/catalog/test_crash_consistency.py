"""kill -9 of a process writing to the catalog: on reopen, every reported commit is there,
and every transaction is all there or not at all (a site never lacks its devices).

Rounds: 3, each killing the writer after a random number of reported commits (seeded:
SITELINE_CATALOG_CRASH_SEED), so the kill lands at varying points of a transaction.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from central.catalog import SecretBox, SqliteCatalog
from shared.clock import ManualClock
from tests.central.catalog.catalog_writer import CAMERAS_PER_SITE

REPO = Path(__file__).resolve().parents[3]
ROUNDS = 3


def _write_until_killed(catalog_path: Path, key_path: Path, lines_before_kill: int) -> list[str]:
    """Run the writer and SIGKILL it once it reported `lines_before_kill` commits; its report."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.central.catalog.catalog_writer",
            str(catalog_path),
            str(key_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    lines: list[str] = []
    while len(lines) < lines_before_kill:
        line = process.stdout.readline()
        if not line:
            process.kill()
            process.wait()
            raise AssertionError(f"the writer stopped by itself: {process.stderr.read()}")
        lines.append(line.strip())
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    lines += [line.strip() for line in process.stdout.read().splitlines() if line.strip()]
    process.stdout.close()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    return lines


def _numbers(report: list[str], word: str) -> set[int]:
    return {int(line.split()[1]) for line in report if line.split()[0] == word}


def _check(catalog_path: Path, key_path: Path, report: list[str], kills: int) -> int:
    """Check the catalog against everything reported so far; the number of sites."""
    with sqlite3.connect(catalog_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    raw.close()
    added, relisted = _numbers(report, "added"), _numbers(report, "relisted")
    as_added = [f"cam-{{n}}-{k}" for k in range(CAMERAS_PER_SITE)]
    after_relist = [f"cam-{{n}}-{k}" for k in range(1, CAMERAS_PER_SITE + 1)]
    with SqliteCatalog.open(
        catalog_path, clock=ManualClock(), secret_box=SecretBox.load_or_create(key_path)
    ) as catalog:
        sites = {int(site.name.split()[1]): site for site in catalog.sites()}
        assert added <= set(sites)
        # Beyond the report, at most the transaction under way at each kill got through.
        assert len(sites) <= len(added) + kills
        assert catalog.setting("round") in (max(_numbers(report, "round")), max(added))
        for n, site in sites.items():
            devices = catalog.devices(site.site_id)
            state = (
                len(devices),
                sorted(d.remote_device_id for d in devices if d.present),
            )
            fresh = (CAMERAS_PER_SITE, [name.format(n=n) for name in as_added])
            moved = (CAMERAS_PER_SITE + 1, [name.format(n=n) for name in after_relist])
            assert state in (fresh, moved)  # never a half-applied transaction
            if n in relisted:
                assert state == moved
            assert catalog.site_password(site.site_id) == f"pw-{n}"
        return len(sites)


def test_kill_9_mid_write_leaves_a_consistent_catalog(tmp_path: Path) -> None:
    catalog_path = tmp_path / "catalog.sqlite3"
    key_path = tmp_path / "secret.key"
    rng = random.Random(int(os.environ.get("SITELINE_CATALOG_CRASH_SEED", "20261124")))
    report: list[str] = []
    sites = 0
    for kills in range(1, ROUNDS + 1):
        report += _write_until_killed(catalog_path, key_path, rng.randrange(10, 40))
        now = _check(catalog_path, key_path, report, kills)
        assert now > sites
        sites = now
