"""Where an export reads chunks from: an interface, so the exporter needs no server.

`ChunkStore` has this shape (its read methods take the site as a keyword), so the central
passes its store as it is; tests pass a store in a temporary folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from shared.chunk import SignedChunk
from shared.store.chunk_meta import ChunkMeta


class ChunkSource(Protocol):
    """Chunks of a site's device streams, by time range and by seq."""

    def chunk_metas(
        self, device_id: str, stream: str, start_ns: int, end_ns: int, *, site_id: str
    ) -> Sequence[ChunkMeta]:
        """Headers and signatures (no payloads) of chunks overlapping [start_ns, end_ns)."""
        ...

    def read_chunk(
        self, device_id: str, stream: str, seq: int, *, site_id: str
    ) -> SignedChunk | None:
        """The chunk with this seq, or None when it is not (or no longer) stored."""
        ...
