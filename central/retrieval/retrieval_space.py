"""The central's room for retrievals: holds in its own store over what unfinished jobs bring,
and the share of the store those holds may fill.

Every write to the central's store keeps it within its quota by deleting the oldest chunks
nothing holds. Left alone, a retrieval larger than the room left would delete its own first
chunks to store its last ones, and still complete. So, while a job is unfinished, each of
its device streams has a hold in the central's store over the job's span (owner
`retrieval <job id>`): what the job brought stays, and the quota guard deletes older, unheld
recordings instead. When the job ends (completed, failed, stopped) its holds are released
and what it brought follows normal retention.

The store's hold budget (`[storage] hold_budget_fraction` of the quota) bounds what holds
protect, so the rest of the quota stays for what nothing holds (live recording, finished
retrievals). The store checks the budget when a hold is placed, over the chunks stored in
its span then; chunks that arrive later inside the span are protected too, so this object
keeps the running total: `reserve`, before a retrieved chunk is stored, says why not when
the held bytes would pass the budget, and the job pauses instead of storing it. The total is
read again from the store (`refresh`) when holds are released, at start, and when a pause
retries; between reads it follows the chunks retrieval stores (it may miss chunks stored
into a held span by live recording until the next read).

Holds are rows of the store and outlive the central; job states are rows of the catalog.
A job that ended while the central was down, or between the two writes, leaves a hold that
`tidy` releases: at start, at the start of every site's run, and when a pause retries.

Async methods run the store's blocking calls in worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from shared.clock import NS_PER_S, Clock
from shared.store.chunk_store import ChunkStore
from shared.store.holds import Hold

HOLD_OWNER_PREFIX = "retrieval "
HOLD_DAYS = 365
"""How long a job's hold lasts in the central's store. It is released when the job ends
(or by `tidy`); the expiry only bounds a hold whose release was somehow never reached."""


@dataclass(frozen=True, slots=True)
class HeldStream:
    """A stream as the central's store names it: by the site's own ids (the chunks' headers)."""

    site_id: str
    device_id: str
    stream: str


def hold_owner(job_id: str) -> str:
    """The owner of a job's holds in the central's store."""
    return f"{HOLD_OWNER_PREFIX}{job_id}"


def job_of_hold(hold: Hold) -> str | None:
    """The job a hold of the central's store was placed for, or None if not a retrieval's."""
    if hold.owner.startswith(HOLD_OWNER_PREFIX):
        return hold.owner[len(HOLD_OWNER_PREFIX) :]
    return None


class RetrievalSpace:
    """See the module docstring."""

    def __init__(self, store: ChunkStore, *, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._held_bytes = 0
        self._budget_bytes = 0
        self._quota_bytes = 0
        self._in_flight_bytes = 0  # reserved, not yet stored or given back
        self.releases = 0
        """How many times holds were released: a run paused for space resumes when it grew."""

    async def refresh(self) -> None:
        """Read the held bytes and the budget from the store (a scan of the held spans)."""
        usage = await asyncio.to_thread(self._store.usage)
        self._held_bytes = usage.held_bytes
        self._budget_bytes = usage.hold_budget_bytes
        self._quota_bytes = usage.quota_bytes

    def has_room(self) -> bool:
        """Whether anything more may be held now."""
        return self._held_bytes + self._in_flight_bytes < self._budget_bytes

    def reserve(self, size: int) -> str | None:
        """Count `size` bytes of a retrieved chunk about to be stored; or, if holding them
        would pass the hold budget, why not (nothing is counted then). Each reservation is
        settled once with `settle`."""
        total = self._held_bytes + self._in_flight_bytes + size
        if total > self._budget_bytes:
            share = self._budget_bytes / self._quota_bytes if self._quota_bytes else 0.0
            return (
                f"{self._store.path}: the recordings of unfinished retrievals would take "
                f"{total} bytes, over the store's hold budget of {self._budget_bytes} bytes "
                f"({share:.1%} of the {self._quota_bytes}-byte quota)"
            )
        self._in_flight_bytes += size
        return None

    def settle(self, size: int, *, stored: bool) -> None:
        """A reserved chunk was stored now (`stored`), or was not (already held, refused)."""
        self._in_flight_bytes = max(0, self._in_flight_bytes - size)
        if stored:
            self._held_bytes += size

    async def hold(self, job_id: str, stream: HeldStream, start_ns: int, end_ns: int) -> None:
        """Hold the job's span of `stream` in the central's store, unless already held for
        the job. Raises `HoldRefused` (naming the budget) when the chunks already stored in
        the span do not fit in what the budget has left."""
        owner = hold_owner(job_id)

        def place() -> bool:
            for hold in self._store.list_holds():
                if (
                    hold.owner == owner
                    and (hold.site_id, hold.device_id, hold.stream)
                    == (stream.site_id, stream.device_id, stream.stream)
                    and (hold.start_ns, hold.end_ns) == (start_ns, end_ns)
                ):
                    return False
            self._store.place_hold(
                stream.device_id,
                stream.stream,
                start_ns,
                end_ns,
                expires_ns=self._clock.now_ns() + HOLD_DAYS * 86_400 * NS_PER_S,
                owner=owner,
                site_id=stream.site_id,
            )
            return True

        if await asyncio.to_thread(place):
            await self.refresh()  # the span may hold chunks already

    async def release(self, job_id: str) -> int:
        """Release the job's holds (the job ended); how many there were."""
        owner = hold_owner(job_id)

        def drop() -> int:
            held = [hold.hold_id for hold in self._store.list_holds() if hold.owner == owner]
            return sum(1 for hold_id in held if self._store.release_hold(hold_id))

        released = await asyncio.to_thread(drop)
        if released:
            self.releases += 1
            await self.refresh()
        return released

    async def tidy(self, unfinished: Callable[[str], bool]) -> int:
        """Release the holds of jobs that are not unfinished (ended, or gone); how many.
        `unfinished(job_id)` is blocking (a catalog read) and runs in the worker thread."""

        def drop() -> int:
            released = 0
            for hold in self._store.list_holds():
                job_id = job_of_hold(hold)
                if job_id is not None and not unfinished(job_id):
                    released += self._store.release_hold(hold.hold_id)
            return released

        released = await asyncio.to_thread(drop)
        if released:
            self.releases += 1
        await self.refresh()
        return released
