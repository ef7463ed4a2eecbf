"""CPU time of processes, read from /proc: user + system time of every thread, in seconds.

A `CpuWindow` takes each process's CPU time at its start and at its end, with the wall time
between, so a benchmark can say what share of a core each process used over a steady window.
Linux only (the benchmarks run on the Linux development VM).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads) so far."""
    if pid == os.getpid():
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    return _stat_cpu_s(Path(f"/proc/{pid}/stat"))


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of process `pid` and of its running descendants
    (a child that ends meanwhile is left out)."""
    total = _stat_cpu_s(Path(f"/proc/{pid}/stat"))
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
            try:
                total += process_tree_cpu_s(int(child))
            except OSError:  # it ended meanwhile
                continue
    return total


def main_thread_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the main thread of process `pid` (where an asyncio
    program runs its event loop), so far."""
    return _stat_cpu_s(Path(f"/proc/{pid}/task/{pid}/stat"))


def _stat_cpu_s(path: Path) -> float:
    text = path.read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = text.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _TICKS_PER_S


@dataclass(frozen=True)
class CpuShare:
    """What one process used over a window."""

    cpu_s: float
    wall_s: float

    @property
    def cores(self) -> float:
        """Cores used on average (1.0: one core all the time)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class CpuWindow:
    """CPU of named processes between `start()` and `stop()`; for each process also its
    main thread, named "<name> main thread"."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = dict(pids)
        self._started: dict[str, float] = {}
        self._wall_started = 0.0

    def _read(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for name, pid in self._pids.items():
            found[name] = process_cpu_s(pid)
            found[f"{name} main thread"] = main_thread_cpu_s(pid)
        return found

    def start(self) -> None:
        self._wall_started = time.monotonic()
        self._started = self._read()

    def stop(self) -> dict[str, CpuShare]:
        ended = self._read()
        wall_s = time.monotonic() - self._wall_started
        return {name: CpuShare(ended[name] - self._started[name], wall_s) for name in ended}
