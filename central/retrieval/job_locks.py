"""One change of a retrieval job's holds at a time.

A job's holds at the site are placed (at the start of a link, then renewed during it) and
released (when the job ends or is stopped) by different tasks. Each of these reads the holds
the catalog records for the job, asks the site, and records the outcome; two interleaved
could each record over the other, leaving a hold placed at the site that no job records.
`JobLocks` gives each job one turn at a time, shared by every link of its site.

A job's entry exists only while some task holds or waits for its turn, so the map does not
grow with the jobs ever held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # tasks holding or waiting for the lock


class JobLocks:
    """See the module docstring."""

    def __init__(self) -> None:
        self._turns: dict[str, _Turn] = {}

    @contextlib.asynccontextmanager
    async def turn(self, job_id: str) -> AsyncIterator[None]:
        """The job's turn: no other task holds it until this one leaves (not re-entrant)."""
        turn = self._turns.get(job_id)
        if turn is None:
            turn = self._turns[job_id] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[job_id]

    def waiting(self, job_id: str) -> int:
        """How many tasks hold or wait for the job's turn (0: none)."""
        turn = self._turns.get(job_id)
        return 0 if turn is None else turn.users
