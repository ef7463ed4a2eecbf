"""Every way the chunk store refuses or fails, as one small hierarchy under `StoreError`."""

from __future__ import annotations


class StoreError(Exception):
    """Base of all chunk store errors; the message says what happened and to what."""


class StoreOpenError(StoreError):
    """The path cannot be opened as a chunk store (missing, not a directory, not a store)."""


class StoreFormatError(StoreError):
    """Bytes on disk do not have the expected shape: unknown format version, corrupt record."""


class StoreReadOnlyError(StoreError):
    """A write was attempted on a store opened read-only."""


class ChunkInvalid(StoreError):
    """A chunk whose payload does not match its own header (length or SHA-256)."""


class ChunkConflict(StoreError):
    """A chunk that contradicts what is stored: another chunk at its seq, start or time span."""


class StoreFull(StoreError):
    """The map or the disk is full and retention could not free enough unheld chunks."""


class StoreIOError(StoreError):
    """The disk reported an I/O error that is not explained by a lack of space."""


class HoldRefused(StoreError):
    """A hold was not placed: bad range or owner, or it would exceed the hold budget."""
