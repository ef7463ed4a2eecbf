"""The LMDB chunk store shared by the agent (edge recording) and the central (media store).

`ChunkStore` is the entry point; `check_store` verifies a store on disk. See
`docs/design/storage.md` for the layout, the invariants and the procedures.
"""

from shared.store.check import CheckedStream, StoreCheckReport, Violation, check_store
from shared.store.chunk_meta import ChunkMeta
from shared.store.chunk_store import ChunkStore
from shared.store.environment import FORMAT_VERSION, map_size_for_quota
from shared.store.errors import (
    ChunkConflict,
    ChunkInvalid,
    HoldRefused,
    StoreError,
    StoreFormatError,
    StoreFull,
    StoreIOError,
    StoreOpenError,
    StoreReadOnlyError,
)
from shared.store.holds import Hold
from shared.store.retention import RetentionPolicy, RetentionReport
from shared.store.streams import StreamHead, StreamSummary
from shared.store.timeline import DEFAULT_JOIN_TOLERANCE_NS, Gap, Span, gaps_between
from shared.store.tombstones import DeletionReason, Tombstone
from shared.store.usage import StoreUsage

__all__ = [
    "DEFAULT_JOIN_TOLERANCE_NS",
    "FORMAT_VERSION",
    "CheckedStream",
    "ChunkConflict",
    "ChunkInvalid",
    "ChunkMeta",
    "ChunkStore",
    "DeletionReason",
    "Gap",
    "Hold",
    "HoldRefused",
    "RetentionPolicy",
    "RetentionReport",
    "Span",
    "StoreCheckReport",
    "StoreError",
    "StoreFormatError",
    "StoreFull",
    "StoreIOError",
    "StoreOpenError",
    "StoreReadOnlyError",
    "StoreUsage",
    "StreamHead",
    "StreamSummary",
    "Tombstone",
    "Violation",
    "check_store",
    "gaps_between",
    "map_size_for_quota",
]
