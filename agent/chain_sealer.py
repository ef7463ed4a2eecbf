"""Numbers, chains and signs the chunks of one stream, continuing the chain stored on disk.

The head advances only after the store has committed a chunk (`committed`). A chunk that
could not be stored (disk full) therefore leaves no hole in the chain: the next chunk takes
the same seq and declares a discontinuity, which is the truth (a recording gap), rather than
looking like a chunk removed by someone.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.chunk import GENESIS_HASH, ChunkDraft, SignedChunk, Signer, seal_chunk


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last stored chunk of a stream: its seq and chunk hash."""

    seq: int
    chunk_hash: bytes


class ChainSealer:
    """Seals drafts of one (device, stream) for this site; see the module docstring."""

    def __init__(
        self, *, site_id: str, device_id: str, stream: str, signer: Signer, head: ChainHead | None
    ) -> None:
        self.site_id = site_id
        self.device_id = device_id
        self.stream = stream
        self._signer = signer
        self._head = head
        # After a restart the time since the last stored chunk is a real recording gap.
        self._gap_pending = head is not None

    @property
    def head(self) -> ChainHead | None:
        return self._head

    def seal(self, draft: ChunkDraft, *, discontinuity: bool) -> SignedChunk:
        """A signed chunk that extends the current head (nothing changes until `committed`)."""
        if (draft.device_id, draft.stream) != (self.device_id, self.stream):
            raise ValueError(
                f"draft of {draft.device_id}/{draft.stream} given to the sealer of "
                f"{self.device_id}/{self.stream}"
            )
        seq = 0 if self._head is None else self._head.seq + 1
        prev = GENESIS_HASH if self._head is None else self._head.chunk_hash
        return seal_chunk(
            draft,
            site_id=self.site_id,
            seq=seq,
            prev_chunk_hash=prev,
            # Nothing precedes the first chunk of a stream, so there is no gap to declare.
            discontinuity=self._head is not None and (discontinuity or self._gap_pending),
            signer=self._signer,
        )

    def committed(self, chunk: SignedChunk) -> None:
        """Record that `chunk` (from `seal`) is durably stored; the chain now ends with it."""
        expected = 0 if self._head is None else self._head.seq + 1
        if chunk.header.seq != expected:
            raise ValueError(f"committed seq {chunk.header.seq}, expected {expected}")
        self._head = ChainHead(chunk.header.seq, chunk.chunk_hash)
        self._gap_pending = False

    def dropped(self) -> None:
        """A sealed chunk could not be stored: the next stored chunk follows a recording gap."""
        self._gap_pending = True
