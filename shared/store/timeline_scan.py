"""Timeline spans straight from the headers table: the scan behind `ChunkStore.timeline`.

A month of a stream cut every second is millions of chunks. Building a `StoredHeader` for
each (signature and signed header bytes copied out of the map) would cost memory and time in
proportion to the chunks, on a device with little of either. This scan walks the headers
cursor in a read transaction opened with `buffers=True`, where keys and values are views
into the memory map; of each row it unpacks only the key (stream id, start instant) and the
value's fixed 24-byte prefix (end, seq, payload size), and hands the numbers to a
`SpanMerger`. Memory grows with the number of spans, not of chunks.

The rows it selects are exactly those of `TableTxn.headers_overlapping`, in the same order,
so the result equals `merge_spans` over them.
"""

from __future__ import annotations

import lmdb

from shared.store.chunk_meta import decode_header_prefix
from shared.store.environment import Database
from shared.store.errors import StoreFormatError
from shared.store.keys import STREAM_KEY_BYTES, U64_MAX, split_stream_key, stream_key
from shared.store.timeline import Span, SpanMerger, overlaps


def scan_spans(
    txn: lmdb.Transaction[memoryview],
    headers: Database,
    stream_id: int,
    *,
    start_ns: int,
    end_ns: int,
    join_tolerance_ns: int,
) -> list[Span]:
    """Spans of the stream's chunks overlapping [start_ns, end_ns), merged while scanning.

    `txn` must be a read transaction with buffers: every view is used before the cursor
    moves, which is as long as LMDB keeps it valid.
    """
    merger = SpanMerger(join_tolerance_ns)
    with txn.cursor(db=headers) as cursor:
        # Chunks of a stream never overlap each other, so at most one chunk that starts
        # before the range can reach into it: the one just before the range's start key.
        found = cursor.set_range(stream_key(stream_id, min(start_ns, U64_MAX)))
        moved = cursor.prev() if found else cursor.last()
        if moved:
            key_stream, chunk_start_ns = _split_key(cursor.key())
            if key_stream == stream_id:
                chunk_end_ns, seq, size = decode_header_prefix(
                    stream_id, chunk_start_ns, cursor.value()
                )
                if overlaps(chunk_start_ns, chunk_end_ns, start_ns, end_ns):
                    merger.add(chunk_start_ns, chunk_end_ns, seq, size)
        if start_ns > U64_MAX or not cursor.set_range(stream_key(stream_id, start_ns)):
            return merger.spans()
        # From here on every chunk starts at or after start_ns, so it overlaps the range
        # exactly when it starts before the range's end (an empty range still covers its
        # start instant, as `overlaps` has it).
        limit_ns = max(end_ns, start_ns + 1)
        for key, value in cursor:
            key_stream, chunk_start_ns = _split_key(key)
            if key_stream != stream_id or chunk_start_ns >= limit_ns:
                break
            chunk_end_ns, seq, size = decode_header_prefix(stream_id, chunk_start_ns, value)
            merger.add(chunk_start_ns, chunk_end_ns, seq, size)
    return merger.spans()


def _split_key(key: memoryview) -> tuple[int, int]:
    if len(key) != STREAM_KEY_BYTES:
        raise StoreFormatError(f"headers table has a key of {len(key)} bytes")
    return split_stream_key(key)
