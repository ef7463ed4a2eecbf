"""The chunk store's writes on one dedicated thread, so a synced commit never blocks the loop.

LMDB allows one writer at a time; putting every write on one thread keeps them in the order
they were asked for (the recorders' chunks interleave with retention batches) without lock
contention. Reads do not come here: they run in any worker thread with their own short
read transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from shared.chunk import SignedChunk
from shared.store.chunk_store import ChunkStore
from shared.store.retention import RetentionReport

T = TypeVar("T")


class StoreWriter:
    """Async front of a `ChunkStore` for writes; see the module docstring."""

    def __init__(self, store: ChunkStore) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")

    async def _call(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def put(self, chunk: SignedChunk, *, sealed_here: bool = False) -> bool:
        """Store `chunk` durably (see `ChunkStore.put`); raises its errors.

        `sealed_here`: the chunk was sealed by this agent from this payload, so its payload
        hash is known to be right and the store need not compute it a second time.
        """
        return await self._call(lambda: self.store.put(chunk, payload_hash_checked=sealed_here))

    async def enforce_retention(self, *, max_chunks: int = 64) -> RetentionReport:
        """One bounded retention batch (see `ChunkStore.enforce_retention`)."""
        return await self._call(lambda: self.store.enforce_retention(max_chunks=max_chunks))

    def close(self) -> None:
        """Finish queued writes and stop the thread (the store itself stays open)."""
        self._executor.shutdown(wait=True)
