"""Space accounting of a store, as reported by `ChunkStore.usage()`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoreUsage:
    """Live and physical space of a store.

    `live_bytes` counts header, signature and payload bytes of stored chunks (the quota's
    unit). `file_bytes` is the size of the data file, which also holds B-tree pages, page
    rounding of large values and free pages waiting for reuse; it never shrinks.
    """

    live_bytes: int
    quota_bytes: int
    map_size_bytes: int
    file_bytes: int
    held_bytes: int
    hold_budget_bytes: int
    chunk_count: int
    stream_count: int
