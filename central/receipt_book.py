"""The central's ingest receipts: for every chunk it stores, its own signature over (chunk
hash, site, instant received), kept so exports can carry them.

Every chunk that enters the central's store has passed the site's checks first (signature,
payload hash, chain: `relay_recorder`, `transfer_acceptance`); the receipt then records
*when the central held it*, signed with the central's key (`central/export/ingest_receipt.py`
has the format). Receipts live in an LMDB environment of their own beside the media store,
keyed by chunk hash (one small record per chunk, about 130 bytes), written in batches from
a worker thread. A receipt is kept while its chunk may still be in the store: `prune`
deletes receipts older than the store's age limit. Issuing is idempotent: a chunk stored
again (by a retrieval after the live recording) keeps its first receipt.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import lmdb
import msgpack

from central.export.ingest_receipt import IngestReceipt
from shared.chunk import SignedChunk, Signer
from shared.clock import Clock

MAP_SIZE_BYTES = 4 * 1024**3  # sparse; about 30 million receipts


class ReceiptBook:
    """See the module docstring. Thread-safe; every method blocks (call from a thread)."""

    def __init__(self, environment: lmdb.Environment, signer: Signer, *, clock: Clock) -> None:
        self._env = environment
        self._signer = signer
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, signer: Signer, *, clock: Clock) -> ReceiptBook:
        path.mkdir(parents=True, exist_ok=True)
        environment = lmdb.open(str(path), map_size=MAP_SIZE_BYTES, max_dbs=0, subdir=True)
        return cls(environment, signer, clock=clock)

    def close(self) -> None:
        self._env.close()

    def issue(self, chunks: Iterable[SignedChunk]) -> list[IngestReceipt]:
        """Receipts for chunks just stored (the first receipt stays for a chunk seen again)."""
        now_ns = self._clock.now_ns()
        issued: list[IngestReceipt] = []
        with self._lock, self._env.begin(write=True) as txn:
            for chunk in chunks:
                key = chunk.chunk_hash
                existing = txn.get(key)
                if existing is not None:
                    issued.append(_decode(key, existing))
                    continue
                receipt = IngestReceipt.issue(
                    self._signer,
                    chunk_hash=key,
                    site_id=chunk.header.site_id,
                    received_ns=now_ns,
                )
                txn.put(key, _encode(receipt))
                issued.append(receipt)
        return issued

    def receipts(self, chunk_hashes: Iterable[bytes]) -> list[IngestReceipt]:
        """The receipts held for these chunks (those without one are left out)."""
        found = []
        with self._env.begin() as txn:
            for key in chunk_hashes:
                value = txn.get(key)
                if value is not None:
                    found.append(_decode(key, value))
        return found

    def prune(self, older_than_ns: int, *, batch: int = 10_000) -> int:
        """Delete receipts issued before `older_than_ns`; how many (at most `batch`)."""
        deleted = 0
        with self._lock, self._env.begin(write=True) as txn:
            cursor = txn.cursor()
            for key, value in cursor:
                if _decode(key, value).received_ns < older_than_ns:
                    txn.delete(key)
                    deleted += 1
                    if deleted >= batch:
                        break
        return deleted


def _encode(receipt: IngestReceipt) -> bytes:
    packed: bytes = msgpack.packb(
        [receipt.site_id, receipt.received_ns, receipt.signature], use_bin_type=True
    )
    return packed


def _decode(key: bytes, value: bytes) -> IngestReceipt:
    site_id, received_ns, signature = msgpack.unpackb(value, raw=False)
    return IngestReceipt(bytes(key), site_id, received_ns, signature)
