"""Builders of the records the catalog tests feed in: sites and devices as a site lists them,
retrieval jobs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from central.catalog import JobOrigin, NewDevice, NewRetrievalJob, NewSite, StreamInfo
from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_catalog import SqliteCatalog
from central.retrieval.job_records import Quality
from shared.clock import NS_PER_S, Clock
from shared.media import MediaKind

FINGERPRINT = "AB:" * 31 + "CD"
"""A pinned certificate fingerprint in the form `openssl` prints."""


def dial_out_site(
    name: str = "Shop 12", *, address: str = "10.0.0.12", port: int = 8443
) -> NewSite:
    """A site the central dials over https, with its certificate pinned."""
    return NewSite(name=name, dial="central", address=address, port=port, fingerprint=FINGERPRINT)


def dial_in_site(name: str = "Bus 7", *, remote_site_id: str | None = "site-bus-7") -> NewSite:
    return NewSite(name=name, dial="site", remote_site_id=remote_site_id)


def camera(remote_id: str, name: str | None = None, *, width: int = 1920) -> NewDevice:
    """A camera with an hq and an lq H.264 stream."""
    return NewDevice(
        remote_device_id=remote_id,
        kind="camera",
        original_name=name or f"Camera {remote_id}",
        streams=(
            StreamInfo("hq", MediaKind.VIDEO, "h264", width, width * 9 // 16),
            StreamInfo("lq", MediaKind.VIDEO, "h264", 640, 360),
        ),
    )


def door_input(remote_id: str = "door") -> NewDevice:
    return NewDevice(
        remote_device_id=remote_id,
        kind="input",
        original_name="Back door",
        streams=(StreamInfo("state", MediaKind.EVENTS, "siteline-records"),),
    )


def digest_of(token: str) -> bytes:
    """What the central stores for a bearer or enrolment token: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


SPAN_START_NS = 1_699_990_000 * NS_PER_S
"""The start of the spans the retrieval tests ask for (before the ManualClock's start)."""


def retrieval(
    site_id: str,
    device_ids: Sequence[str],
    *,
    minutes: int = 10,
    quality: Quality = "hq",
    origin: JobOrigin = JobOrigin.USER,
    created_by: str | None = "alice",
    rule_id: str | None = None,
) -> NewRetrievalJob:
    """A job for `minutes` from `SPAN_START_NS` of the devices, as alice asks for it."""
    return NewRetrievalJob(
        site_id=site_id,
        device_ids=tuple(device_ids),
        start_ns=SPAN_START_NS,
        end_ns=SPAN_START_NS + minutes * 60 * NS_PER_S,
        quality=quality,
        origin=origin,
        created_by=created_by,
        rule_id=rule_id,
    )


def chunk_hash(seq: int) -> bytes:
    """A stand-in for the SHA-256 of the chunk with sequence number `seq`."""
    return hashlib.sha256(f"chunk {seq}".encode()).digest()


def open_catalog(directory: Path, clock: Clock) -> Iterator[SqliteCatalog]:
    """A fresh catalog in `directory`, closed when the generator ends (for fixtures:
    `yield from open_catalog(tmp_path, clock)`)."""
    opened = SqliteCatalog.open(
        directory / "catalog.sqlite3",
        clock=clock,
        secret_box=SecretBox.load_or_create(directory / "secret.key"),
    )
    yield opened
    opened.close()
