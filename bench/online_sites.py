"""Sites that are online, for the central's listing benchmark: idle replay sites, their
catalog entries, and the wait until the central holds a live link to each.

`OnlineSites` runs `count` sites as bench/replay_site.py `--shop --idle` children, `per_process`
sites to a process: each site is the agent's own link server (HTTPS, its own certificate and
signing key, the account the central logs in with) listing a small shop's six devices, whose
cameras publish nothing. `write_online_sites` writes them into a central's catalog before it
starts (each site at its real port, with its fingerprint pinned and its password, enabled;
its devices exactly as the site lists them, so the first link changes none of them, and each
with `live_feed` never and `recording` site_only, so the central pulls no stream).
`wait_online` polls the central's site list until every site is online.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central_process import CentralClient, CentralFolder, open_catalog
from json_child import JsonChild

from central.catalog.records import NewSite
from central.site_device_list import discovered_devices

SITES_PER_PROCESS = 250
"""One process carries 1,000 idle sites (4% of a core at rest), but its ready line (1.6 MB,
the device lists) is longer than `JsonChild` reads; 250 sites print 0.4 MB."""
SITES_NICENESS = 19
"""The sites stand for other machines: here they share the central's two cores, and while
1,000 of them check the central's logins (scrypt, 36 ms of CPU each) they would take the
cores from the central (its answers 4-9 s late); at the lowest priority they take what the
central leaves."""
POLL_S = 2.0
PROGRESS_EVERY_S = 10.0


class OnlineSites:
    """`count` idle shop sites in child processes, numbered from 0 (site `i` is named
    "Site i", like the other scenarios' sites); an async context manager."""

    def __init__(self, directory: Path, count: int, *, per_process: int = SITES_PER_PROCESS):
        self._directory = directory
        self._count = count
        self._per_process = per_process
        self._children: list[JsonChild] = []
        self.sites: list[dict[str, Any]] = []

    @property
    def pids(self) -> dict[str, int]:
        """The site processes by name (`sites 0`, `sites 1`, ...)."""
        return {f"sites {n}": child.pid for n, child in enumerate(self._children)}

    async def __aenter__(self) -> OnlineSites:
        self._directory.mkdir(parents=True, exist_ok=True)
        try:
            for first in range(0, self._count, self._per_process):
                sites = min(self._per_process, self._count - first)
                child = await JsonChild.start(
                    "replay_site.py",
                    str(self._directory / "sites"),
                    "--shop",
                    "--idle",
                    "--sites",
                    str(sites),
                    "--first-index",
                    str(first),
                    "--nice",
                    str(SITES_NICENESS),
                    log=self._directory / f"sites-{first}.log",
                )
                self._children.append(child)
                self.sites += child.info["sites"]
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._stop()

    async def _stop(self) -> None:
        for child in self._children:
            with contextlib.suppress(ProcessLookupError):
                await child.stop()


def write_online_sites(folder: CentralFolder, sites: list[dict[str, Any]]) -> None:
    """The sites into the central's catalog, as if added long ago (blocking)."""
    catalog = open_catalog(folder)
    try:
        for index, site in enumerate(sites):
            devices = [
                dataclasses.replace(d, live_feed="never", recording="site_only")
                for d in discovered_devices(site["device_list"])
            ]
            catalog.add_site(
                NewSite(
                    name=f"Site {index}",
                    dial="central",
                    address="127.0.0.1",
                    port=site["port"],
                    scheme="https",
                    username=site["username"],
                    fingerprint=site["fingerprint"],
                    enabled=True,
                ),
                site["password"],
                devices,
            )
    finally:
        catalog.close()


@dataclass(frozen=True)
class OnlineWait:
    """How bringing the sites online went: `seconds` until all were (None: not within the
    timeout), and the sites' states and most frequent problems when the wait ended."""

    seconds: float | None
    states: Counter[str]
    problems: Counter[str]


async def wait_online(
    client: CentralClient, count: int, *, timeout_s: float, started: float
) -> OnlineWait:
    """Poll `GET /sites` until `count` sites are online, printing the progress; the times
    count from `started` (`time.monotonic()`, when the central started)."""
    reported = time.monotonic()
    while True:
        listed = (await client.call("GET", "/sites"))["sites"]
        states = Counter(s["status"]["state"] for s in listed)
        now = time.monotonic()
        if states["online"] >= count:
            return OnlineWait(now - started, states, Counter())
        problems = Counter(
            _problem_kind(s["status"]["problem"]) for s in listed if s["status"]["problem"]
        )
        if now - started > timeout_s:
            return OnlineWait(None, states, problems)
        if now - reported >= PROGRESS_EVERY_S:
            reported = now
            summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            if problems:
                problem, number = problems.most_common(1)[0]
                summary += f"; {number} x {problem}"
            print(f"    {now - started:5.0f} s: {summary}", flush=True)
        await asyncio.sleep(POLL_S)


def _problem_kind(problem: str) -> str:
    """A problem without the site's own address and port, so that alike ones count together."""
    return problem.split(": ", 1)[1] if problem.startswith("https://") else problem
