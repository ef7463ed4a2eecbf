"""Exporting a device's recording of a time range: the media file and its evidence beside it.

A plain blocking function (the server runs it in a worker thread). It plans the best quality
for each moment (`quality_plan`), reads each chunk the plan uses once, checks it is
authentic, stores it whole in the evidence and remuxes its packets into the media file, so a
long export holds one chunk in memory at a time. Both files are written under temporary
names and renamed into place only when complete, so a failed export leaves nothing that
looks finished.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from central.export.chunk_source import ChunkSource
from central.export.errors import ExportError
from central.export.evidence import (
    EvidenceItem,
    EvidenceManifest,
    EvidenceSegment,
    EvidenceWriter,
    ExportedMedia,
    evidence_path_for,
)
from central.export.export_writer import ExportContainer, write_media
from central.export.ingest_receipt import IngestReceipt
from central.export.output_packets import OutputPacket, output_packets
from central.export.parameter_sets import SUPPORTED_CODECS
from central.export.quality_plan import (
    HQ_STREAM,
    LQ_STREAM,
    PlanGap,
    PlanSegment,
    QualityPlan,
    plan_playback,
)
from shared.chunk import ChunkHeader, SignedChunk
from shared.clock import Clock
from shared.decoder_configuration import decoder_configuration
from shared.media import CodecConfig, MediaFormatError
from shared.nal_units import BitstreamError
from shared.signing import verify_signature
from shared.store.chunk_meta import ChunkMeta

_HASH_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export wrote."""

    media_path: Path
    evidence_path: Path
    container: ExportContainer
    plan: QualityPlan
    packets: int
    media_sha256: bytes
    media_bytes: int

    @property
    def duration_ns(self) -> int:
        """From the first picture to the end of the last segment (gaps included)."""
        segments = self.plan.segments
        return segments[-1].end_ns - segments[0].start_ns

    @property
    def hq_ns(self) -> int:
        return self.plan.duration_of(HQ_STREAM)

    @property
    def lq_ns(self) -> int:
        return self.plan.duration_of(LQ_STREAM)

    @property
    def gaps(self) -> tuple[PlanGap, ...]:
        return self.plan.gaps


def export_range(  # noqa: PLR0917 - the positional signature the server calls
    source: ChunkSource,
    keys: Mapping[str, bytes],
    site_id: str,
    device_id: str,
    start_ns: int,
    end_ns: int,
    out_path: Path,
    container: ExportContainer | str,
    *,
    clock: Clock,
    device_name: str | None = None,
    receipts: Iterable[IngestReceipt] = (),
    central_public_key: bytes | None = None,
) -> ExportSummary:
    """Export [start_ns, end_ns) of `device_id` at `site_id` to `out_path` (MP4 or MKV)
    and its evidence to `out_path` + ".evidence"; blocking.

    `keys` maps site ids to Ed25519 public keys. `receipts` may hold the central's ingest
    receipts; those of chunks the export uses go into the evidence, with
    `central_public_key`. Raises `ExportError` when nothing is recorded in the range, a chunk
    the plan needs is gone or not authentic, or the media cannot be written.
    """
    if container not in tuple(ExportContainer):
        raise ExportError(f"container {container!r} is not one of: mp4, mkv")
    container = ExportContainer(container)
    public_key = keys.get(site_id)
    if public_key is None:
        raise ExportError(f"no public key is known for site {site_id!r}")
    metas, plan = planned_range(source, site_id, device_id, start_ns, end_ns)
    origin_ns = plan.origin_ns
    if origin_ns is None:
        raise ExportError(
            f"{site_id}/{device_id} has no video recorded in [{start_ns}, {end_ns}) "
            "(neither lq nor hq)"
        )
    headers = [metas[(s.stream, s.seq)].header for s in plan.segments]
    codec = _track_codec(headers)
    width, height = _largest_picture(h.codec for h in headers)

    evidence_path = evidence_path_for(out_path)
    media_partial = out_path.with_name(out_path.name + ".partial")
    evidence_partial = evidence_path.with_name(evidence_path.name + ".partial")
    try:
        with EvidenceWriter(evidence_partial) as evidence:
            members: list[str] = []
            added: set[int] = set()

            def plan_chunks() -> Iterator[tuple[PlanSegment, SignedChunk]]:
                for segment in plan.segments:
                    meta = metas[(segment.stream, segment.seq)]
                    chunk = authentic_chunk(source, site_id, device_id, meta, public_key)
                    members.append(evidence.add_chunk(chunk))
                    yield segment, chunk

            def noting_additions(packets: Iterable[OutputPacket]) -> Iterator[OutputPacket]:
                for packet in packets:
                    if packet.parameter_sets_added:
                        added.add(packet.segment_index)
                    yield packet

            try:
                packet_count = write_media(
                    noting_additions(output_packets(plan_chunks(), origin_ns=origin_ns)),
                    media_partial,
                    container,
                    codec=codec,
                    width=width,
                    height=height,
                    recorded_ns=origin_ns,
                )
            except BitstreamError as exc:
                raise ExportError(f"a chunk's packet is not Annex B H.264/H.265: {exc}") from exc
            media_sha256, media_bytes = _file_digest(media_partial)
            used_hashes = {metas[(s.stream, s.seq)].chunk_hash for s in plan.segments}
            manifest = EvidenceManifest(
                media=ExportedMedia(
                    out_path.name, container.value, media_sha256, media_bytes, packet_count
                ),
                site_id=site_id,
                device_id=device_id,
                device_name=device_name,
                start_ns=start_ns,
                end_ns=end_ns,
                origin_ns=origin_ns,
                created_ns=clock.now_ns(),
                exporter=f"siteline {_package_version()}",
                public_keys={site_id: public_key},
                central_public_key=central_public_key,
                receipts=tuple(
                    r for r in receipts if r.chunk_hash in used_hashes and r.site_id == site_id
                ),
                items=_evidence_items(plan, members, added),
            )
            evidence.finish(manifest)
        _durably_rename(media_partial, out_path)
        _durably_rename(evidence_partial, evidence_path)
    except BaseException:
        media_partial.unlink(missing_ok=True)
        evidence_partial.unlink(missing_ok=True)
        raise
    return ExportSummary(
        out_path, evidence_path, container, plan, packet_count, media_sha256, media_bytes
    )


def planned_range(
    source: ChunkSource, site_id: str, device_id: str, start_ns: int, end_ns: int
) -> tuple[dict[tuple[str, int], ChunkMeta], QualityPlan]:
    """The metas of the device's LQ and HQ chunks in the range, by (stream, seq), and the
    plan that plays the range from them (blocking: reads the store)."""
    metas = {
        (meta.header.stream, meta.seq): meta
        for stream in (LQ_STREAM, HQ_STREAM)
        for meta in source.chunk_metas(device_id, stream, start_ns, end_ns, site_id=site_id)
    }
    plan = plan_playback(
        lq=[m.header for (stream, _), m in metas.items() if stream == LQ_STREAM],
        hq=[m.header for (stream, _), m in metas.items() if stream == HQ_STREAM],
        start_ns=start_ns,
        end_ns=end_ns,
    )
    return metas, plan


def authentic_chunk(
    source: ChunkSource, site_id: str, device_id: str, meta: ChunkMeta, public_key: bytes
) -> SignedChunk:
    """The chunk `meta` lists, read whole and checked; an export never carries a forgery."""
    header = meta.header
    name = f"{site_id}/{device_id}/{header.stream} seq {header.seq}"
    chunk = source.read_chunk(device_id, header.stream, header.seq, site_id=site_id)
    if chunk is None:
        raise ExportError(f"{name} was listed but is no longer stored (deleted by retention?)")
    if chunk.header_bytes != meta.header_bytes:
        raise ExportError(f"{name} changed between listing and reading")
    if (chunk.header.site_id, chunk.header.device_id) != (site_id, device_id):
        raise ExportError(f"{name} is signed for another site or device")
    if not verify_signature(public_key, chunk.header_bytes, chunk.signature):
        raise ExportError(f"{name} is not signed by the site's key; refusing to export it")
    if hashlib.sha256(chunk.payload).digest() != chunk.header.payload_sha256:
        raise ExportError(f"{name} has a payload that differs from its signed hash")
    return chunk


def _track_codec(headers: Sequence[ChunkHeader]) -> str:
    codecs = sorted({h.codec.codec for h in headers})
    if len(codecs) != 1:
        raise ExportError(
            f"the range mixes codecs {', '.join(codecs)}; one video track cannot switch codec"
        )
    if codecs[0] not in SUPPORTED_CODECS:
        raise ExportError(f"codec {codecs[0]!r} cannot be exported (supported: h264, hevc)")
    return codecs[0]


def _largest_picture(configs: Iterable[CodecConfig]) -> tuple[int, int]:
    """The largest picture size among the configurations; from the SPS where it parses."""
    sizes = []
    for config in configs:
        try:
            parsed = decoder_configuration(config)
            sizes.append((parsed.width, parsed.height))
        except MediaFormatError:
            sizes.append((config.width, config.height))
    return max(sizes, key=lambda size: size[0] * size[1])


def _evidence_items(
    plan: QualityPlan, members: Sequence[str], added: set[int]
) -> tuple[EvidenceItem, ...]:
    items: list[EvidenceItem] = []
    segment_index = 0
    for item in plan.items:
        if isinstance(item, PlanGap):
            items.append(item)
            continue
        items.append(EvidenceSegment(item, members[segment_index], segment_index in added))
        segment_index += 1
    return tuple(items)


def _file_digest(path: Path) -> tuple[bytes, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            digest.update(block)
            size += len(block)
    return digest.digest(), size


def _durably_rename(partial: Path, final: Path) -> None:
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, final)


def _package_version() -> str:
    try:
        return metadata.version("siteline")
    except metadata.PackageNotFoundError:
        return "0+unknown"
