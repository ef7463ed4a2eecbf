"""The central's ingest receipt: signed over (chunk hash, site, received instant), verified
with the central's key only, and never confused with a chunk signature."""

from __future__ import annotations

import dataclasses

import pytest

from central.export import IngestReceipt
from central.export.ingest_receipt import receipt_bytes
from shared.signing import SiteSigner, verify_signature
from tests.central.export.recorded_site import SITE, RecordedSite, at


def test_a_receipt_verifies_with_the_central_key_only(recorded: RecordedSite) -> None:
    central = SiteSigner.generate()
    chunk = recorded.lq_chunks[0]
    receipt = IngestReceipt.issue(
        central, chunk_hash=chunk.chunk_hash, site_id=SITE, received_ns=at(1500)
    )
    assert receipt.verify(central.public_key)
    assert not receipt.verify(recorded.signer.public_key)
    # Every field is covered by the signature.
    for changed in (
        dataclasses.replace(receipt, chunk_hash=recorded.lq_chunks[1].chunk_hash),
        dataclasses.replace(receipt, site_id="site-2"),
        dataclasses.replace(receipt, received_ns=receipt.received_ns + 1),
    ):
        assert not changed.verify(central.public_key)


def test_receipt_and_chunk_signatures_cannot_stand_for_each_other(
    recorded: RecordedSite,
) -> None:
    chunk = recorded.lq_chunks[0]
    signed = receipt_bytes(chunk.chunk_hash, SITE, at(0))
    assert signed != chunk.header_bytes
    # A chunk signature offered as a receipt signature (same key) fails, and the reverse.
    forged = IngestReceipt(chunk.chunk_hash, SITE, at(0), chunk.signature)
    assert not forged.verify(recorded.signer.public_key)
    receipt = IngestReceipt.issue(
        recorded.signer, chunk_hash=chunk.chunk_hash, site_id=SITE, received_ns=at(0)
    )
    assert not verify_signature(recorded.signer.public_key, chunk.header_bytes, receipt.signature)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"chunk_hash": b"short"}, "chunk hash must be 32 bytes"),
        ({"site_id": ""}, "site id must be 1 to 128 characters"),
        ({"received_ns": -1}, "received_ns must be a non-negative int"),
        ({"signature": bytes(10)}, "signature must be 64 bytes"),
    ],
)
def test_malformed_receipts_are_refused(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "chunk_hash": bytes(32),
        "site_id": SITE,
        "received_ns": 0,
        "signature": bytes(64),
    }
    with pytest.raises(ValueError, match=message):
        IngestReceipt(**(values | fields))  # type: ignore[arg-type]
