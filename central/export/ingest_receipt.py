"""The central's ingest receipt: its signature over (chunk hash, site, instant received).

A receipt says that the central held a chunk at a given time. An export may carry receipts
for its chunks, so a verifier can tell when each chunk reached the central as well as that
the site signed it. The signed bytes are a msgpack array that starts with a context string,
so a receipt signature can never be mistaken for a chunk signature (a chunk header is an
array that starts with an integer), even if one key signed both.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from shared.chunk import HASH_BYTES, MAX_ID_CHARS, SIGNATURE_BYTES, Signer
from shared.signing import verify_signature

RECEIPT_CONTEXT = "siteline-ingest-receipt"
RECEIPT_VERSION = 1


@dataclass(frozen=True, slots=True)
class IngestReceipt:
    """The central received the chunk whose hash is `chunk_hash`, from `site_id`, at
    `received_ns` (UTC ns); `signature` is the central's Ed25519 signature of `signed_bytes`."""

    chunk_hash: bytes
    site_id: str
    received_ns: int
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.chunk_hash, bytes) or len(self.chunk_hash) != HASH_BYTES:
            raise ValueError(f"a receipt's chunk hash must be {HASH_BYTES} bytes")
        if not isinstance(self.site_id, str) or not 0 < len(self.site_id) <= MAX_ID_CHARS:
            raise ValueError(f"a receipt's site id must be 1 to {MAX_ID_CHARS} characters")
        if (
            not isinstance(self.received_ns, int)
            or isinstance(self.received_ns, bool)
            or self.received_ns < 0
        ):
            raise ValueError("a receipt's received_ns must be a non-negative int")
        if not isinstance(self.signature, bytes) or len(self.signature) != SIGNATURE_BYTES:
            raise ValueError(f"a receipt's signature must be {SIGNATURE_BYTES} bytes")

    @classmethod
    def issue(
        cls, signer: Signer, *, chunk_hash: bytes, site_id: str, received_ns: int
    ) -> IngestReceipt:
        """Sign a receipt with the central's key."""
        signed = receipt_bytes(chunk_hash, site_id, received_ns)
        return cls(chunk_hash, site_id, received_ns, signer.sign(signed))

    @property
    def signed_bytes(self) -> bytes:
        return receipt_bytes(self.chunk_hash, self.site_id, self.received_ns)

    def verify(self, public_key: bytes) -> bool:
        """True when `public_key` (the central's) signed this receipt."""
        return verify_signature(public_key, self.signed_bytes, self.signature)


def receipt_bytes(chunk_hash: bytes, site_id: str, received_ns: int) -> bytes:
    """The deterministic bytes a receipt's signature covers."""
    fields = [RECEIPT_CONTEXT, RECEIPT_VERSION, chunk_hash, site_id, received_ns]
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed
