"""The central's group commit: every chunk that enters the central store goes through one
`IngestWriter`, which stores what all its callers handed in meanwhile in one synced
transaction and issues their ingest receipts in one more.

Why: the central records hundreds of streams at once, each sealing a chunk a second or so.
One synced LMDB transaction per chunk (plus one per receipt) costs a disk sync each, and
at a few hundred chunks a second the syncs alone fill the time: writers queue behind the
store's write lock and recording falls behind the live stream. Grouping the chunks that
arrive while the previous commit runs turns N syncs into one, whatever N is, with no
added wait when the central is quiet (a lone chunk is committed at once).

Callers hand in chunks they have verified (signature and chain by `accept_chunk`, payload
against the header's hash), so the store does not hash payloads again. Each caller gets,
chunk by chunk, what `ChunkStore.put` would have said: True (stored), False (already
held), or the `StoreError` refusing it (a conflict, a full store). A caller cancelled
while its chunks wait does not withdraw them: they are stored, as the signed record of
what the site sent. Receipts are issued for the chunks the store holds afterwards (stored
now, or already); a receipt that cannot be issued is logged, and never undoes a store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from central.receipt_book import ReceiptBook
from shared.chunk import SignedChunk
from shared.store.chunk_store import ChunkStore
from shared.store.errors import StoreError

_log = logging.getLogger(__name__)

MAX_CHUNKS_PER_COMMIT = 1024
"""Above this, a commit is split (bounds one transaction's size and its callers' wait)."""

PutOutcome = bool | StoreError
"""What storing one chunk gave: True stored, False already held, else why it was not."""


class ChunkSink(Protocol):
    """Where verified chunks go to be stored (an `IngestWriter`)."""

    async def put_verified(self, chunks: Sequence[SignedChunk]) -> list[PutOutcome]: ...


class IngestClosed(StoreError):
    """The ingest writer was closed; nothing more is stored."""


@dataclass(slots=True)
class _Request:
    chunks: Sequence[SignedChunk]
    done: asyncio.Future[list[PutOutcome]] = field(repr=False)


class IngestWriter:
    """See the module docstring."""

    def __init__(
        self,
        store: ChunkStore,
        receipts: ReceiptBook | None,
        *,
        max_chunks_per_commit: int = MAX_CHUNKS_PER_COMMIT,
    ) -> None:
        self._store = store
        self._receipts = receipts
        self._max_chunks = max_chunks_per_commit
        self._waiting: deque[_Request] = deque()
        self._committer: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0  # how many transactions stored chunks (for tests and benchmarks)
        self.chunks_offered = 0

    async def put_verified(self, chunks: Sequence[SignedChunk]) -> list[PutOutcome]:
        """Store `chunks` (verified by the caller) with whatever else waits; each one's
        outcome, in order. `IngestClosed` once `close` has begun."""
        if self._closed:
            raise IngestClosed(f"{self._store.path}: the central is stopping; chunk not stored")
        if not chunks:
            return []
        request = _Request(chunks, asyncio.get_running_loop().create_future())
        self._waiting.append(request)
        self.chunks_offered += len(chunks)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_waiting(), name="ingest-commit")
        # Shielded: a caller cancelled now leaves its chunks to be stored all the same.
        return await asyncio.shield(request.done)

    async def close(self) -> None:
        """Store what waits, then refuse more."""
        self._closed = True
        committer = self._committer
        if committer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await committer

    async def _commit_waiting(self) -> None:
        """Commit what waits, a group at a time, until nothing does."""
        while self._waiting:
            group: list[_Request] = []
            count = 0
            while self._waiting:
                size = len(self._waiting[0].chunks)
                if group and count + size > self._max_chunks:
                    break
                group.append(self._waiting.popleft())
                count += size
            chunks = [chunk for request in group for chunk in request.chunks]
            try:
                outcomes = await asyncio.to_thread(self._commit, chunks)
            except StoreError as exc:  # the store as a whole (closed, damaged)
                outcomes = [exc] * len(chunks)
            except Exception as exc:  # a defect: every caller of the group hears of it
                _log.exception("storing a group of %d chunks", len(chunks))
                outcomes = [StoreError(f"{self._store.path}: {exc!r}")] * len(chunks)
            self.commits += 1
            start = 0
            for request in group:
                end = start + len(request.chunks)
                if not request.done.done():
                    request.done.set_result(outcomes[start:end])
                start = end

    def _commit(self, chunks: list[SignedChunk]) -> list[PutOutcome]:
        """One group (worker thread): the store's transaction, then the receipts'."""
        outcomes = self._store.put_many(chunks, payload_hash_checked=True)
        held = [
            chunk
            for chunk, outcome in zip(chunks, outcomes, strict=True)
            if not isinstance(outcome, StoreError)
        ]
        if held and self._receipts is not None:
            try:
                self._receipts.issue(held)
            except Exception:
                _log.exception("ingest receipts for %d stored chunks not issued", len(held))
        return outcomes
