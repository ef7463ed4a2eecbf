"""One task at a time per key: a job's holds, a stream's commits.

A job's holds at the site are placed (at the start of a link, then renewed during it) and
released (when the job ends or is stopped) by different tasks. Each of these reads the holds
the catalog records for the job, asks the site, and records the outcome; two interleaved
could each record over the other, leaving a hold placed at the site that no job records.
So each change of a job's holds takes the job's turn, shared by every link of its site.

A stream's chunk is stored and then its cursor advanced; a link that ends in between must
not let the next link read the cursor before it moved, or the next link asks for that chunk
again. So a commit takes the stream's turn, and a stream starting on a new link waits for
it (`central/retrieval/retrieval_work.py`).

A key's entry exists only while some task holds or waits for its turn, so the map does not
grow with the keys ever used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Turn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # tasks holding or waiting for the lock


class Turns(Generic[K]):
    """See the module docstring."""

    def __init__(self) -> None:
        self._turns: dict[K, _Turn] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: K) -> AsyncIterator[None]:
        """The key's turn: no other task holds it until this one leaves (not re-entrant)."""
        turn = self._turns.get(key)
        if turn is None:
            turn = self._turns[key] = _Turn()
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if turn.users == 0:
                del self._turns[key]

    def waiting(self, key: K) -> int:
        """How many tasks hold or wait for the key's turn (0: none)."""
        turn = self._turns.get(key)
        return 0 if turn is None else turn.users
