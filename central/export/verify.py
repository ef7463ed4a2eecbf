"""Offline verification of an export: is the media file exactly what the site signed, and
does it cover the range it claims?

Theory of operation
-------------------
The evidence file is a map, not an authority: every claim in its manifest is checked
against the signed chunk headers it carries, and the media file against the chunks. The
checks, each reported as a finding (a problem, or information):

1. Keys. The site key is the one the evidence carries, or the one pinned by the caller;
   when both are given they must be equal. Without a pin, a consistent forgery signed with
   another key is not detected: the report says so.
2. Chunks and chains. The plan's segments are cut into *runs*, maximal sequences of
   segments of one stream between two switches. Each run is verified with the chain
   verifier (`shared.chain_verification.verify_stream`) anchored on its own first chunk:
   signatures, the signed identity, payload hashes, and seq continuity inside the run
   (MODIFIED, MALFORMED, FOREIGN, MISSING, INSERTED, REORDERED). A run anchors on itself
   because the chunks between two runs of a stream were replaced by the other stream.
3. The plan against the signed headers. Each segment must be the chunk it names (stream,
   seq, site, device), start at the chunk's keyframe and keep exactly the decode-order
   prefix that `quality_plan` prescribes for its cut. Items must tile the range without
   overlap. A gap is declared only when the signed header of the chunk after it says
   `discontinuity`; an undeclared gap, or a range the items do not reach, makes the export
   incomplete (a problem). A declared gap is information.
4. Receipts, when present: each must be signed by the central key (carried or pinned) and
   name a chunk of the export.
5. The media file. Its SHA-256 must be the one recorded. Its packets must be, one for one
   and in order, the packets `output_packets` derives from the plan and the chunks:
   compared NAL unit by NAL unit (so the muxer's start-code to length-prefix conversion
   does not matter but any byte change does), with presentation times equal to the signed
   timing within one tick of the container's clock. Parameter sets the container carries
   (its codec configuration, and each new sample entry at a switch) must be ones the
   packet at that point carries, so a container cannot smuggle in a different picture
   configuration (a crop, a size) than the one signed.

The export is authentic and complete exactly when no finding is a problem.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.container import InputContainer

from central.export.errors import EvidenceFormatError
from central.export.evidence import (
    EVIDENCE_SUFFIX,
    EvidenceManifest,
    EvidenceReader,
    EvidenceSegment,
    evidence_path_for,
)
from central.export.output_packets import OUTPUT_TIME_BASE, OutputPacket, output_packets
from central.export.parameter_sets import (
    SUPPORTED_CODECS,
    parameter_sets_in,
    record_length_size,
)
from central.export.quality_plan import PlanGap, PlanSegment, decode_order_prefix
from shared.chain_verification import ChainLink, FindingKind, RawChunk, verify_stream
from shared.chunk import ChunkHeader, SignedChunk, chunk_hash_of
from shared.clock import NS_PER_S
from shared.nal_units import (
    BitstreamError,
    annexb_units,
    configuration_units,
    length_prefixed_units,
)
from shared.signing import verify_signature

MAX_DETAILED_MISMATCHES = 5
"""Packet mismatches described one by one; the rest are counted."""
_HASH_BLOCK_BYTES = 1 << 20


class CheckKind(StrEnum):
    """Which part of the verification a finding comes from."""

    EVIDENCE = "evidence"  # the evidence file itself: unreadable, inconsistent
    KEYS = "keys"  # which keys were used, and whether they are the pinned ones
    CHAIN = "chain"  # signatures, payload hashes, chain continuity
    PLAN = "plan"  # the plan against the signed headers
    COVERAGE = "coverage"  # gaps: declared (information) or not (incomplete)
    RECEIPTS = "receipts"  # the central's ingest receipts
    MEDIA = "media"  # the media file against the chunks


@dataclass(frozen=True, slots=True)
class VerifyFinding:
    """One thing verification found; `problem` findings make the export fail."""

    kind: CheckKind
    problem: bool
    message: str


@dataclass(frozen=True, slots=True)
class ExportVerification:
    """The outcome of `verify_export`."""

    media_path: Path | None
    evidence_path: Path
    manifest: EvidenceManifest | None
    findings: tuple[VerifyFinding, ...]
    site_key: bytes | None
    key_pinned: bool
    chunks_authentic: int
    packets_compared: int

    @property
    def ok(self) -> bool:
        """Authentic and complete: no finding is a problem."""
        return not self.problems

    @property
    def problems(self) -> tuple[VerifyFinding, ...]:
        return tuple(f for f in self.findings if f.problem)

    @property
    def information(self) -> tuple[VerifyFinding, ...]:
        return tuple(f for f in self.findings if not f.problem)


def verify_export(
    path: Path,
    *,
    pinned_site_key: bytes | None = None,
    pinned_central_key: bytes | None = None,
) -> ExportVerification:
    """Verify the export at `path` (its media file or its evidence file); never raises on
    bad files: every defect is a finding. Blocking (it reads and demuxes the whole file)."""
    if path.name.endswith(EVIDENCE_SUFFIX):
        evidence_path, media_path = path, None
    else:
        evidence_path, media_path = evidence_path_for(path), path
    try:
        reader = EvidenceReader(evidence_path)
    except EvidenceFormatError as exc:
        finding = VerifyFinding(CheckKind.EVIDENCE, True, str(exc))
        return ExportVerification(media_path, evidence_path, None, (finding,), None, False, 0, 0)
    with reader:
        manifest = reader.manifest
        if media_path is None:
            media_path = evidence_path.with_name(manifest.media.file_name)
        run = _Verification(reader, manifest, pinned_site_key, pinned_central_key)
        run.verify(media_path)
    return ExportVerification(
        media_path,
        evidence_path,
        manifest,
        tuple(run.findings),
        run.site_key,
        pinned_site_key is not None,
        run.chunks_authentic,
        run.packets_compared,
    )


def format_report(result: ExportVerification) -> str:
    """A report for people: what was checked, what was found, and the verdict."""
    lines = [f"Verifying {result.media_path or result.evidence_path}"]
    manifest = result.manifest
    lines.append(f"  evidence   {result.evidence_path}")
    if manifest is not None:
        name = f' "{manifest.device_name}"' if manifest.device_name else ""
        lines.append(f"  recording  site {manifest.site_id}, device {manifest.device_id}{name}")
        lines.append(
            f"  range      {_utc(manifest.start_ns)} to {_utc(manifest.end_ns)} "
            f"({_seconds(manifest.end_ns - manifest.start_ns)})"
        )
        lines.append(f"  exported   {_utc(manifest.created_ns)} by {manifest.exporter}")
        plan = manifest.plan
        per_stream = ", ".join(
            f"{stream} {_seconds(plan.duration_of(stream))}"
            for stream in sorted({s.stream for s in plan.segments})
        )
        lines.append(
            f"  plan       {len(plan.segments)} segments ({per_stream}), {len(plan.gaps)} gaps"
        )
    if result.site_key is not None:
        pin = (
            "pinned"
            if result.key_pinned
            else "NOT pinned: compare it with the key the site registered"
        )
        lines.append(f"  site key   {result.site_key.hex()} ({pin})")
    lines.append(
        f"  checked    {result.chunks_authentic} authentic chunks, "
        f"{result.packets_compared} media packets"
    )
    if result.information:
        lines.append("Information:")
        lines += [f"  - [{f.kind}] {f.message}" for f in result.information]
    if result.problems:
        lines.append("PROBLEMS:")
        lines += [f"  - [{f.kind}] {f.message}" for f in result.problems]
        lines.append(f"RESULT: NOT VERIFIED ({len(result.problems)} problems)")
    else:
        lines.append("RESULT: AUTHENTIC AND COMPLETE")
    # Names and ids come from the evidence, which anyone can edit: no control characters
    # (a forged name must not rewrite the terminal's lines).
    return "\n".join("".join(c if c.isprintable() else "?" for c in line) for line in lines)


# ---------------------------------------------------------------------------------------------
# Internals


@dataclass
class _Verification:
    """One run of the verifier; its state dies with the call."""

    reader: EvidenceReader
    manifest: EvidenceManifest
    pinned_site_key: bytes | None
    pinned_central_key: bytes | None
    findings: list[VerifyFinding] = field(default_factory=list)
    site_key: bytes | None = None
    chunks_authentic: int = 0
    packets_compared: int = 0
    headers: dict[int, ChunkHeader | None] = field(default_factory=dict)
    chunk_hashes: dict[int, bytes] = field(default_factory=dict)
    segments: tuple[EvidenceSegment, ...] = ()

    def __post_init__(self) -> None:
        self.segments = self.manifest.segments

    def problem(self, kind: CheckKind, message: str) -> None:
        self.findings.append(VerifyFinding(kind, True, message))

    def info(self, kind: CheckKind, message: str) -> None:
        self.findings.append(VerifyFinding(kind, False, message))

    def verify(self, media_path: Path) -> None:
        self.site_key = self._site_key()
        self._verify_chains(self.site_key)
        self._verify_plan()
        self._verify_receipts()
        self._verify_media(media_path)

    # -- 1. keys --------------------------------------------------------------------------------

    def _site_key(self) -> bytes | None:
        site_id = self.manifest.site_id
        carried = self.manifest.public_keys.get(site_id)
        pinned = self.pinned_site_key
        if pinned is None:
            if carried is None:
                self.problem(CheckKind.KEYS, f"the evidence carries no public key for {site_id}")
            return carried
        if carried is not None and carried != pinned:
            self.problem(
                CheckKind.KEYS,
                f"the evidence carries key {carried.hex()} for site {site_id}, not the pinned "
                f"key {pinned.hex()}: the chunks are checked against the pinned key",
            )
        return pinned

    # -- 2. chunks and chains -------------------------------------------------------------------

    def _verify_chains(self, site_key: bytes | None) -> None:
        other_keys = {
            key: (
                f"site {site}"
                if site != self.manifest.site_id
                else "the key this evidence carries, which is not the pinned one"
            )
            for site, key in self.manifest.public_keys.items()
            if key != site_key
        }
        for stream, indexes in _runs(self.segments):
            chunks = self._run_chunks(indexes)
            if site_key is None:
                for _ in chunks:  # no key to check with: only read the headers for the plan
                    pass
                continue
            verification = verify_stream(
                chunks,
                public_key=site_key,
                site_id=self.manifest.site_id,
                device_id=self.manifest.device_id,
                stream=stream,
                anchor=self._run_anchor(indexes, site_key),
                other_keys=other_keys,
            )
            self.chunks_authentic += verification.chunks_authentic
            seqs = [self.segments[i].segment.seq for i in indexes]
            where = f"{stream} seqs {min(seqs)}..{max(seqs)}"
            for finding in verification.findings:
                if finding.kind in (FindingKind.AUTHENTIC, FindingKind.RECORDING_GAP):
                    continue  # gaps are judged against the plan, below
                text = f"{where}: {finding.kind.value.upper()}: {finding.message}"
                if finding.is_problem:
                    self.problem(CheckKind.CHAIN, text)
                else:
                    self.info(CheckKind.CHAIN, text)

    def _run_anchor(self, indexes: Sequence[int], site_key: bytes) -> ChainLink | None:
        """The link that the run's lowest seq signed by the site claims to follow: the run
        anchors on itself, so its chain is checked whatever order its chunks are listed in."""
        lowest: ChunkHeader | None = None
        for index in indexes:
            try:
                header_bytes, signature = self.reader.read_signed_header(
                    self.segments[index].chunk_member
                )
            except EvidenceFormatError:
                continue  # reported when the whole chunk is read
            header = _decoded(header_bytes)
            if (
                header is not None
                and verify_signature(site_key, header_bytes, signature)
                and (lowest is None or header.seq < lowest.seq)
            ):
                lowest = header
        if lowest is None or lowest.seq == 0:
            return None
        return ChainLink(lowest.seq - 1, lowest.prev_chunk_hash)

    def _run_chunks(self, indexes: Sequence[int]) -> Iterator[RawChunk]:
        """The run's chunks from the archive, decoding each header once for later checks."""
        for index in indexes:
            chunk = self._read(index)
            if chunk is None:
                continue
            self.headers[index] = _decoded(chunk.header_bytes)
            self.chunk_hashes[index] = chunk_hash_of(chunk.header_bytes)
            yield chunk

    def _read(self, index: int) -> RawChunk | None:
        member = self.segments[index].chunk_member
        try:
            return self.reader.read_chunk(member)
        except EvidenceFormatError as exc:
            if index not in self.headers:  # report once, on the first of the two passes
                self.headers[index] = None
                self.problem(CheckKind.EVIDENCE, str(exc))
            return None

    # -- 3. the plan ----------------------------------------------------------------------------

    def _verify_plan(self) -> None:
        manifest = self.manifest
        items = manifest.items
        if not self.segments:
            self.problem(CheckKind.PLAN, "the plan has no segments: nothing was exported")
            return
        if manifest.end_ns <= manifest.start_ns:
            self.problem(CheckKind.PLAN, "the evidence's range is empty or reversed")
        if manifest.origin_ns != self.segments[0].segment.start_ns:
            self.problem(
                CheckKind.PLAN,
                f"the evidence puts time zero at {_utc(manifest.origin_ns)}, but the first "
                f"segment starts at {_utc(self.segments[0].segment.start_ns)}",
            )
        seen: set[tuple[str, int]] = set()
        for position, item in enumerate(self.segments):
            key = (item.segment.stream, item.segment.seq)
            if key in seen:
                self.problem(CheckKind.PLAN, f"{_name(item.segment)} is used twice by the plan")
            seen.add(key)
            self._verify_segment(position, item.segment)
        # The header of the segment at each item index (None for gaps and unreadable chunks).
        positions = {id(item): position for position, item in enumerate(self.segments)}
        after: list[ChunkHeader | None] = [
            self.headers.get(positions[id(item)]) if isinstance(item, EvidenceSegment) else None
            for item in items
        ]
        if items[0].start_ns > manifest.start_ns:
            self._gap(manifest.start_ns, items[0].start_ns, after[0], claimed=None)
        for index in range(1, len(items)):
            before, current = items[index - 1], items[index]
            if current.start_ns < before.end_ns:
                self.problem(
                    CheckKind.PLAN,
                    f"the plan goes back in time: an item starting at {_utc(current.start_ns)} "
                    f"follows one ending at {_utc(before.end_ns)} (reordered or overlapping)",
                )
            elif current.start_ns > before.end_ns:
                self._gap(before.end_ns, current.start_ns, after[index], claimed=None)
        for index, entry in enumerate(items):
            if isinstance(entry, PlanGap):
                following = after[index + 1] if index + 1 < len(items) else None
                self._gap(entry.start_ns, entry.end_ns, following, claimed=entry.declared)
        last_end_ns = items[-1].end_ns
        if last_end_ns < manifest.end_ns:
            self._gap(last_end_ns, manifest.end_ns, None, claimed=None)
        elif last_end_ns > manifest.end_ns:
            self.problem(CheckKind.PLAN, "the plan runs past the range's end")

    def _verify_segment(self, position: int, segment: PlanSegment) -> None:
        header = self.headers.get(position)
        if header is None:
            return  # unreadable or malformed: already a finding
        claimed = (self.manifest.site_id, self.manifest.device_id, segment.stream, segment.seq)
        signed = (header.site_id, header.device_id, header.stream, header.seq)
        if claimed != signed:
            self.problem(
                CheckKind.PLAN,
                f"plan segment {position} names {'/'.join(map(str, claimed))}, but its chunk "
                f"is signed as {'/'.join(map(str, signed))}",
            )
            return
        if segment.first_packet != 0 or not header.packets or not header.packets[0].keyframe:
            self.problem(
                CheckKind.PLAN, f"{_name(segment)}: the segment does not start at a keyframe"
            )
            return
        if segment.start_ns != header.start_ns or not (
            segment.start_ns < segment.end_ns <= header.end_ns
        ):
            self.problem(
                CheckKind.PLAN,
                f"{_name(segment)}: the segment's times do not fit the signed chunk "
                f"({_utc(header.start_ns)} to {_utc(header.end_ns)})",
            )
            return
        if segment.end_ns < header.end_ns:
            expected_last = decode_order_prefix(header, segment.end_ns) - 1
        else:
            expected_last = len(header.packets) - 1
        if segment.last_packet != expected_last:
            self.problem(
                CheckKind.PLAN,
                f"{_name(segment)}: the segment keeps packets 0..{segment.last_packet}, but the "
                f"decode-order prefix before its end is 0..{expected_last}",
            )

    def _gap(
        self, start_ns: int, end_ns: int, after: ChunkHeader | None, *, claimed: bool | None
    ) -> None:
        """Judge a stretch of the range without pictures; `after` is the header of the chunk
        that follows it, if any."""
        declarer = after if after is not None and after.discontinuity else None
        span = f"{_seconds(end_ns - start_ns)} from {_utc(start_ns)} to {_utc(end_ns)}"
        if claimed is not None and claimed != (declarer is not None):
            self.problem(
                CheckKind.PLAN,
                f"the evidence marks the gap of {span} as "
                f"{'declared' if claimed else 'undeclared'}, but the signed headers say "
                f"{'undeclared' if claimed else 'declared'}",
            )
        if declarer is not None:
            self.info(
                CheckKind.COVERAGE,
                f"recording gap of {span}: declared by the site ({declarer.stream} seq "
                f"{declarer.seq} follows a discontinuity); the camera did not record, not "
                "tampering",
            )
        else:
            self.problem(
                CheckKind.COVERAGE,
                f"incomplete: {span} not covered, and the site declared no recording gap "
                "there (chunks missing, or the recording does not reach the range's end)",
            )

    # -- 4. receipts ----------------------------------------------------------------------------

    def _verify_receipts(self) -> None:
        receipts = self.manifest.receipts
        carried = self.manifest.central_public_key
        key = self.pinned_central_key or carried
        if self.pinned_central_key is not None and carried not in (None, self.pinned_central_key):
            self.problem(CheckKind.KEYS, "the evidence's central key is not the pinned central key")
        if not receipts:
            self.info(CheckKind.RECEIPTS, "no central ingest receipts")
            return
        if key is None:
            self.problem(CheckKind.RECEIPTS, "receipts are present but no central key is known")
            return
        used = set(self.chunk_hashes.values())
        valid = 0
        for receipt in receipts:
            label = f"receipt for chunk {receipt.chunk_hash.hex()[:16]}"
            if not receipt.verify(key):
                self.problem(CheckKind.RECEIPTS, f"{label}: not signed by the central key")
            elif receipt.chunk_hash not in used or receipt.site_id != self.manifest.site_id:
                self.problem(CheckKind.RECEIPTS, f"{label}: names no chunk of this export")
            else:
                valid += 1
        self.info(
            CheckKind.RECEIPTS,
            f"{valid} of {len(self.segments)} chunks have a valid central ingest receipt",
        )

    # -- 5. the media file ----------------------------------------------------------------------

    def _verify_media(self, media_path: Path) -> None:
        media = self.manifest.media
        try:
            digest, size = _file_digest(media_path)
        except OSError as exc:
            self.problem(CheckKind.MEDIA, f"the media file cannot be read: {exc}")
            return
        if (digest, size) != (media.sha256, media.size_bytes):
            self.problem(
                CheckKind.MEDIA,
                f"the media file's SHA-256 is {digest.hex()} ({size} bytes), the evidence "
                f"records {media.sha256.hex()} ({media.size_bytes} bytes): the file was "
                "changed after the export",
            )
        else:
            self.info(CheckKind.MEDIA, f"the media file's SHA-256 {digest.hex()} matches")
        try:
            container = av.open(str(media_path))
        except (av.FFmpegError, OSError) as exc:
            self.problem(CheckKind.MEDIA, f"the media file does not open as video: {exc}")
            return
        with container:
            self._compare_packets(container)

    def _compare_packets(self, container: InputContainer) -> None:
        streams = container.streams
        if len(streams) != 1 or streams[0].type != "video":
            self.problem(
                CheckKind.MEDIA,
                f"the media file has {len(streams)} streams; an export has one video track",
            )
            if not streams.video:
                return
        stream = streams.video[0]
        codec = stream.codec_context.name
        if codec not in SUPPORTED_CODECS:
            self.problem(CheckKind.MEDIA, f"the media track is {codec}, not H.264 or H.265")
            return
        extradata = bytes(stream.codec_context.extradata or b"")
        try:
            length_size = record_length_size(extradata, codec)
            container_sets = parameter_sets_in(configuration_units(extradata, codec), codec)
        except BitstreamError as exc:
            self.problem(CheckKind.MEDIA, f"the track's codec configuration is malformed: {exc}")
            return
        time_base = Fraction(stream.time_base or OUTPUT_TIME_BASE)
        comparison = _Comparison(
            codec, length_size, time_base, max(time_base, OUTPUT_TIME_BASE), container_sets
        )
        try:
            for actual, expected in _paired(container.demux(stream), self._expected_packets()):
                comparison.pair(actual, expected)
        except _Underivable as exc:
            self.problem(CheckKind.MEDIA, f"the expected packets cannot be derived: {exc}")
            return
        except (av.FFmpegError, OSError) as exc:
            self.problem(CheckKind.MEDIA, f"the media file cannot be demuxed: {exc}")
            return
        actual_count, expected_count = comparison.actual_count, comparison.expected_count
        self.packets_compared = min(actual_count, expected_count)
        for message in comparison.messages():
            self.problem(CheckKind.MEDIA, message)
        if actual_count != expected_count:
            self.problem(
                CheckKind.MEDIA,
                f"the media file has {actual_count} video packets, the plan names "
                f"{expected_count}: packets were added or removed",
            )
        elif not comparison.mismatches:
            self.info(
                CheckKind.MEDIA,
                f"all {actual_count} packets are the signed chunks' packets, NAL unit for NAL "
                "unit, at their signed times",
            )
        if expected_count != self.manifest.media.packets:
            self.problem(
                CheckKind.EVIDENCE,
                f"the evidence says the file has {self.manifest.media.packets} packets, the "
                f"plan names {expected_count}",
            )
        self._check_added_flags(comparison.added)

    def _expected_packets(self) -> Iterator[OutputPacket]:
        def chunks() -> Iterator[tuple[PlanSegment, SignedChunk]]:
            for index, item in enumerate(self.segments):
                raw = self._read(index)
                if raw is None:
                    raise _Underivable(f"the chunk of {_name(item.segment)} is unreadable")
                try:
                    chunk = SignedChunk.from_parts(raw.header_bytes, raw.signature, raw.payload)
                except Exception as exc:  # hostile bytes: any decoder failure is a finding
                    raise _Underivable(f"the header of {_name(item.segment)}: {exc}") from None
                if (
                    not 0
                    <= item.segment.first_packet
                    <= item.segment.last_packet
                    < len(chunk.header.packets)
                ):
                    raise _Underivable(f"{_name(item.segment)} names packets it does not have")
                yield item.segment, chunk

        packets = output_packets(chunks(), origin_ns=self.manifest.origin_ns)
        try:
            yield from packets
        except (BitstreamError, ValueError) as exc:
            raise _Underivable(str(exc)) from exc

    def _check_added_flags(self, added: set[int]) -> None:
        for index, item in enumerate(self.segments):
            if item.parameter_sets_added != (index in added):
                self.problem(
                    CheckKind.PLAN,
                    f"{_name(item.segment)}: the evidence says parameter sets were "
                    f"{'' if item.parameter_sets_added else 'not '}added in band; the rule "
                    "says otherwise",
                )


class _Underivable(Exception):
    """The expected packets cannot be computed from the evidence."""


@dataclass
class _Comparison:
    """Packet-by-packet comparison of the media file with the expected packets."""

    codec: str
    length_size: int | None
    time_base: Fraction
    tolerance: Fraction
    track_parameter_sets: tuple[bytes, ...]
    mismatches: int = 0
    details: list[str] = field(default_factory=list)
    actual_count: int = 0
    expected_count: int = 0
    added: set[int] = field(default_factory=set)

    def pair(self, actual: av.Packet[Any] | None, expected: OutputPacket | None) -> None:
        """Compare the file's next packet with the next expected one (either may be None
        once its side has run out)."""
        index = self.actual_count
        if expected is not None:
            self.expected_count += 1
            if expected.parameter_sets_added:
                self.added.add(expected.segment_index)
        if actual is None:
            return
        self.actual_count += 1
        if expected is None:
            return
        if index == 0:
            self.configuration(index, self.track_parameter_sets, expected)
        for side_data in actual.iter_sidedata():
            if side_data.data_type == "new_extradata":
                self.new_configuration(index, bytes(side_data), expected)
        self.packet(index, bytes(actual), actual.pts, expected)

    def _mismatch(self, message: str) -> None:
        self.mismatches += 1
        if len(self.details) < MAX_DETAILED_MISMATCHES:
            self.details.append(message)

    def messages(self) -> list[str]:
        extra = self.mismatches - len(self.details)
        if extra > 0:
            return [*self.details, f"... and {extra} more packet mismatches"]
        return list(self.details)

    def packet(self, index: int, data: bytes, pts: int | None, expected: OutputPacket) -> None:
        where = f"packet {index} ({_packet_source(expected)})"
        try:
            if self.length_size is None:
                units = annexb_units(data)
            else:
                units = length_prefixed_units(data, self.length_size)
        except BitstreamError as exc:
            self._mismatch(f"{where} is not well-framed NAL units: {exc}")
            return
        actual_units = [u.rstrip(b"\x00") for u in units]
        if actual_units != [u.rstrip(b"\x00") for u in expected.units]:
            self._mismatch(f"{where} differs from the signed chunk's bytes")
            return
        if pts is None:
            self._mismatch(f"{where} has no presentation time")
            return
        shown = pts * self.time_base
        signed = expected.pts * OUTPUT_TIME_BASE
        if abs(shown - signed) > self.tolerance:
            self._mismatch(
                f"{where} is shown at {float(shown):.6f} s, its signed time is "
                f"{float(signed):.6f} s"
            )

    def configuration(
        self, index: int, parameter_sets: Sequence[bytes], expected: OutputPacket
    ) -> None:
        # Muxers may keep the zero byte of a four-byte start code on a unit's end; no unit
        # ends with a zero byte, so such zeros are not part of the unit.
        carried = {unit.rstrip(b"\x00") for unit in expected.units}
        if any(unit.rstrip(b"\x00") not in carried for unit in parameter_sets):
            self._mismatch(
                f"the track's codec configuration holds parameter sets that the signed packet "
                f"{index} does not carry"
            )

    def new_configuration(self, index: int, record: bytes, expected: OutputPacket) -> None:
        try:
            parameter_sets = parameter_sets_in(configuration_units(record, self.codec), self.codec)
        except BitstreamError as exc:
            self._mismatch(f"the codec configuration at packet {index} is malformed: {exc}")
            return
        if not expected.config_change:
            self._mismatch(
                f"the file changes codec configuration at packet {index}, where the signed "
                "stream does not"
            )
            return
        self.configuration(index, parameter_sets, expected)


def _paired(
    demuxed: Iterator[av.Packet[Any]], expected: Iterator[OutputPacket]
) -> Iterator[tuple[av.Packet[Any] | None, OutputPacket | None]]:
    """The file's packets (empty flush packets skipped) beside the expected ones, until
    both run out."""
    actual = (p for p in demuxed if p.size > 0)
    while True:
        pair = (next(actual, None), next(expected, None))
        if pair[0] is None and pair[1] is None:
            return
        yield pair


def _runs(segments: Sequence[EvidenceSegment]) -> Iterator[tuple[str, list[int]]]:
    """Maximal lists of consecutive segments (by position) of one stream."""
    current: list[int] = []
    stream = ""
    for index, item in enumerate(segments):
        if current and item.segment.stream != stream:
            yield stream, current
            current = []
        stream = item.segment.stream
        current.append(index)
    if current:
        yield stream, current


def _decoded(header_bytes: bytes) -> ChunkHeader | None:
    try:
        return ChunkHeader.decode(header_bytes)
    except Exception:  # hostile bytes: any decoder failure makes the chunk MALFORMED
        return None


def _file_digest(path: Path) -> tuple[bytes, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK_BYTES):
            digest.update(block)
            size += len(block)
    return digest.digest(), size


def _packet_source(packet: OutputPacket) -> str:
    return f"segment {packet.segment_index}, chunk packet {packet.packet_index}"


def _name(segment: PlanSegment) -> str:
    return f"{segment.stream} seq {segment.seq}"


def _utc(instant_ns: int) -> str:
    try:
        moment = datetime.fromtimestamp(instant_ns // NS_PER_S, tz=UTC)
    except (OverflowError, ValueError, OSError):  # an instant no calendar holds
        return f"{instant_ns} ns"
    return moment.strftime("%Y-%m-%d %H:%M:%S") + f".{instant_ns % NS_PER_S // 1_000_000:03d}Z"


def _seconds(duration_ns: int) -> str:
    return f"{duration_ns / NS_PER_S:.3f} s"
