"""Deleting the oldest unheld chunks inside one write transaction.

Retention by age, retention by bytes, the quota guard of `put` and emergency freeing all
come down to the same walk: chunks oldest first (by end, then start) across streams,
skipping every chunk that overlaps an active hold, deleting each and leaving a tombstone,
until a byte target or the batch limit is reached; then tombstones that fell below a
stream's oldest chunk are compacted to the horizon.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from shared.store.chunk_meta import StoredHeader
from shared.store.holds import Hold
from shared.store.streams import StreamRecord
from shared.store.tables import TableTxn
from shared.store.timeline import overlaps
from shared.store.tombstones import DeletionReason


@dataclass(frozen=True, slots=True)
class EvictionResult:
    """What one eviction walk deleted, and whether it stopped with work left."""

    deleted: int
    deleted_bytes: int
    blocked_by_holds: bool
    pending: bool
    tombstones_compacted: int


class OldestFirst:
    """Chunks of the given streams, oldest first, skipping chunks under an active hold.

    Each step looks the next chunk up afresh, so the caller may delete the chunk it was
    given before asking for the next. With `cutoffs`, a stream is walked only while its
    chunks end at or before its cutoff instant (retention by age).
    """

    def __init__(
        self,
        txn: TableTxn,
        records: dict[int, StreamRecord],
        active_holds: list[Hold],
        cutoffs: dict[int, int] | None = None,
    ) -> None:
        self._txn = txn
        self._records = records
        self._cutoffs = cutoffs
        self._holds: dict[tuple[str, str, str], list[Hold]] = {}
        for hold in active_holds:
            self._holds.setdefault((hold.site_id, hold.device_id, hold.stream), []).append(hold)
        self.blocked_by_holds = False

    def __iter__(self) -> Iterator[StoredHeader]:
        heap: list[tuple[int, int, int, StoredHeader]] = []
        for stream_id, record in self._records.items():
            if record.chunk_count and (self._cutoffs is None or stream_id in self._cutoffs):
                self._push(heap, self._txn.first_header(stream_id))
        while heap:
            _end_ns, _start_ns, stream_id, header = heapq.heappop(heap)
            if self._cutoffs is not None and header.end_ns > self._cutoffs[stream_id]:
                continue  # the rest of this stream is newer still
            held_until_ns = self._held_until(stream_id, header)
            if held_until_ns is not None:
                self.blocked_by_holds = True
                # Every chunk starting before the hold's end overlaps it too: jump past.
                resume_ns = max(header.start_ns + 1, held_until_ns)
                self._push(heap, self._txn.first_header_from(stream_id, resume_ns))
                continue
            self._push(heap, self._txn.header_after(stream_id, header.start_ns))
            yield header

    @staticmethod
    def _push(heap: list[tuple[int, int, int, StoredHeader]], header: StoredHeader | None) -> None:
        if header is not None:
            heapq.heappush(heap, (header.end_ns, header.start_ns, header.stream_id, header))

    def _held_until(self, stream_id: int, header: StoredHeader) -> int | None:
        record = self._records[stream_id]
        ends = [
            hold.end_ns
            for hold in self._holds.get((record.site_id, record.device_id, record.stream), ())
            if overlaps(hold.start_ns, hold.end_ns, header.start_ns, header.end_ns)
        ]
        return max(ends) if ends else None


def evict_oldest(
    txn: TableTxn,
    records: dict[int, StreamRecord],
    *,
    reason: DeletionReason,
    now_ns: int,
    active_holds: list[Hold],
    max_chunks: int,
    bytes_to_free: int | None = None,
    cutoffs: dict[int, int] | None = None,
) -> EvictionResult:
    """Delete the oldest unheld chunks, at most `max_chunks` of them.

    With `bytes_to_free`, stop once that many quota bytes are freed; with `cutoffs`
    (stream id to instant), delete only chunks ending at or before their stream's cutoff.
    `records` is updated in place as chunks go.
    """
    walk = OldestFirst(txn, records, active_holds, cutoffs)
    deleted = 0
    freed = 0
    pending = False
    touched: set[int] = set()
    for header in walk:
        if bytes_to_free is not None and freed >= bytes_to_free:
            break
        if deleted >= max_chunks:
            pending = True
            break
        stream_id = header.stream_id
        records[stream_id] = txn.delete_chunk(records[stream_id], header, reason, now_ns)
        deleted += 1
        freed += header.stored_bytes
        touched.add(stream_id)
    compacted = sum(txn.compact_tombstones(stream_id) for stream_id in sorted(touched))
    return EvictionResult(deleted, freed, walk.blocked_by_holds, pending, compacted)
