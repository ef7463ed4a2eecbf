"""The evidence file beside an export: the chunk chain, signatures and public keys that let
anyone check the export offline, without trusting the machines it passed through.

Format (version 1). `OUT.evidence` beside `OUT` is a ZIP archive, every member stored
uncompressed (video does not compress; a reader never inflates attacker-chosen data):

- `manifest.json`: a JSON object, see `EvidenceManifest.to_json` and docs/design/export.md:
  `format` ("siteline-export-evidence") and `version` (1); the media file's name,
  container, SHA-256, size and packet count; the site, device and device name; the
  requested range, the origin (the wall-clock instant of the file's time zero) and when
  the export was made; the site public keys by site id; the central's public key and its
  ingest receipts, if any; and the plan: in file order, each segment (stream, seq, first
  and last packet in decode order, start and end instants, whether parameter sets were
  added in band, and the member prefix of its chunk) and each gap (start, end, declared).
- `chunks/<stream>/<seq>.header`, `.signature`, `.payload`: each chunk the plan uses, whole:
  the header bytes exactly as signed, the 64-byte signature and the full payload, so even a
  chunk that was cut at a switch can be hash-checked.

Bytes in the manifest (hashes, keys, signatures) are lowercase hex. Nothing in the manifest
is trusted by the verifier beyond what the signed chunk headers confirm; it is a map.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from central.export.errors import EvidenceFormatError, ExportError
from central.export.ingest_receipt import IngestReceipt
from central.export.quality_plan import PlanGap, PlanItem, PlanSegment, QualityPlan
from shared.chain_verification import RawChunk
from shared.chunk import MAX_HEADER_BYTES, SIGNATURE_BYTES, SignedChunk

EVIDENCE_FORMAT = "siteline-export-evidence"
EVIDENCE_VERSION = 1
EVIDENCE_SUFFIX = ".evidence"
MANIFEST_MEMBER = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
MAX_PAYLOAD_BYTES = 256 << 20
"""Far above any chunk a recorder cuts (64 MiB at most), so only hostile files hit it."""

MAX_TEXT_CHARS = 256
"""Longest string field of a manifest (ids, names, member names)."""

_SAFE_STREAM = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # members carry no wall time: same export, same bytes
_PARTS = (".header", ".signature", ".payload")


def evidence_path_for(media_path: Path) -> Path:
    """Where the evidence of the export `media_path` lives: `media_path` + ".evidence"."""
    return media_path.with_name(media_path.name + EVIDENCE_SUFFIX)


@dataclass(frozen=True, slots=True)
class ExportedMedia:
    """The media file an evidence file describes."""

    file_name: str
    container: str  # "mp4" or "mkv"
    sha256: bytes
    size_bytes: int
    packets: int


@dataclass(frozen=True, slots=True)
class EvidenceSegment:
    """A plan segment with where its chunk is in the archive and how it was written."""

    segment: PlanSegment
    chunk_member: str
    parameter_sets_added: bool

    @property
    def start_ns(self) -> int:
        return self.segment.start_ns

    @property
    def end_ns(self) -> int:
        return self.segment.end_ns


EvidenceItem = EvidenceSegment | PlanGap


@dataclass(frozen=True, slots=True)
class EvidenceManifest:
    """Everything in `manifest.json`; see the module docstring."""

    media: ExportedMedia
    site_id: str
    device_id: str
    device_name: str | None
    start_ns: int
    end_ns: int
    origin_ns: int
    created_ns: int
    exporter: str
    public_keys: Mapping[str, bytes]
    central_public_key: bytes | None
    receipts: tuple[IngestReceipt, ...]
    items: tuple[EvidenceItem, ...]

    @property
    def segments(self) -> tuple[EvidenceSegment, ...]:
        return tuple(item for item in self.items if isinstance(item, EvidenceSegment))

    @property
    def plan(self) -> QualityPlan:
        items: list[PlanItem] = [
            item.segment if isinstance(item, EvidenceSegment) else item for item in self.items
        ]
        return QualityPlan(self.start_ns, self.end_ns, tuple(items))

    def to_json(self) -> bytes:
        document = {
            "format": EVIDENCE_FORMAT,
            "version": EVIDENCE_VERSION,
            "media": {
                "file": self.media.file_name,
                "container": self.media.container,
                "sha256": self.media.sha256.hex(),
                "bytes": self.media.size_bytes,
                "packets": self.media.packets,
            },
            "site_id": self.site_id,
            "device_id": self.device_id,
            "device_name": self.device_name,
            "range": {"start_ns": self.start_ns, "end_ns": self.end_ns},
            "origin_ns": self.origin_ns,
            "created_ns": self.created_ns,
            "exporter": self.exporter,
            "public_keys": {site: key.hex() for site, key in sorted(self.public_keys.items())},
            "central_public_key": (
                self.central_public_key.hex() if self.central_public_key is not None else None
            ),
            "receipts": [
                {
                    "chunk_hash": r.chunk_hash.hex(),
                    "site_id": r.site_id,
                    "received_ns": r.received_ns,
                    "signature": r.signature.hex(),
                }
                for r in self.receipts
            ],
            "plan": [_item_json(item) for item in self.items],
        }
        return json.dumps(document, indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> EvidenceManifest:
        """Parse `manifest.json`, naming the first field that is wrong."""
        try:
            document = json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise EvidenceFormatError(f"{MANIFEST_MEMBER} is not JSON: {exc}") from exc
        root = _Object(document, "manifest")
        if root.text("format") != EVIDENCE_FORMAT:
            raise EvidenceFormatError(f"this is not a {EVIDENCE_FORMAT} manifest")
        version = root.integer("version")
        if version != EVIDENCE_VERSION:
            raise EvidenceFormatError(
                f"evidence format version {version} is not supported (this verifier reads "
                f"version {EVIDENCE_VERSION})"
            )
        media = root.child("media")
        file_name = media.text("file")
        if "/" in file_name or "\\" in file_name or file_name in (".", ".."):
            raise EvidenceFormatError("manifest media.file must be a plain file name")
        keys = root.child("public_keys")
        central_key = root.optional_hex("central_public_key")
        window = root.child("range")
        return cls(
            media=ExportedMedia(
                file_name,
                media.text("container"),
                media.hex("sha256", 32),
                media.integer("bytes"),
                media.integer("packets"),
            ),
            site_id=root.text("site_id"),
            device_id=root.text("device_id"),
            device_name=root.optional_text("device_name"),
            start_ns=window.integer("start_ns"),
            end_ns=window.integer("end_ns"),
            origin_ns=root.integer("origin_ns"),
            created_ns=root.integer("created_ns"),
            exporter=root.text("exporter"),
            public_keys={site: keys.hex(site, 32) for site in keys.names()},
            central_public_key=central_key,
            receipts=tuple(_receipt(item) for item in root.objects("receipts")),
            items=tuple(_item(item) for item in root.objects("plan")),
        )


class EvidenceWriter:
    """Writes an evidence archive: chunks as they are exported, the manifest last."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._archive = zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._members: set[str] = set()

    def __enter__(self) -> EvidenceWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def add_chunk(self, chunk: SignedChunk) -> str:
        """Store the chunk whole; return the member prefix the manifest names it by."""
        header = chunk.header
        if not _SAFE_STREAM.fullmatch(header.stream):
            raise ExportError(f"stream name {header.stream!r} cannot name an evidence member")
        member = f"chunks/{header.stream}/{header.seq:010d}"
        if member in self._members:
            raise ExportError(f"{self._path}: chunk {header.stream} seq {header.seq} added twice")
        self._members.add(member)
        for suffix, data in zip(
            _PARTS, (chunk.header_bytes, chunk.signature, chunk.payload), strict=True
        ):
            self._write(member + suffix, data)
        return member

    def finish(self, manifest: EvidenceManifest) -> None:
        """Write the manifest and close the archive."""
        self._write(MANIFEST_MEMBER, manifest.to_json())
        self.close()

    def close(self) -> None:
        self._archive.close()

    def _write(self, name: str, data: bytes) -> None:
        info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        self._archive.writestr(info, data)


class EvidenceReader:
    """Reads an evidence archive; every size is bounded, every problem an
    `EvidenceFormatError` that names the member."""

    def __init__(self, path: Path) -> None:
        try:
            self._archive = zipfile.ZipFile(path, "r")
        except (zipfile.BadZipFile, OSError) as exc:
            raise EvidenceFormatError(f"{path} is not a readable evidence archive: {exc}") from exc
        try:
            self.manifest = EvidenceManifest.from_json(
                self._read(MANIFEST_MEMBER, MAX_MANIFEST_BYTES)
            )
        except BaseException:
            self._archive.close()
            raise

    def __enter__(self) -> EvidenceReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._archive.close()

    def read_signed_header(self, member: str) -> tuple[bytes, bytes]:
        """The header bytes and signature of the chunk stored under `member` (no payload)."""
        header_bytes = self._read(member + ".header", MAX_HEADER_BYTES)
        return header_bytes, self._read(member + ".signature", SIGNATURE_BYTES)

    def read_chunk(self, member: str) -> RawChunk:
        """The three parts of the chunk stored under `member`, as bytes (nothing decoded)."""
        header_bytes = self._read(member + ".header", MAX_HEADER_BYTES)
        signature = self._read(member + ".signature", SIGNATURE_BYTES)
        payload = self._read(member + ".payload", MAX_PAYLOAD_BYTES)
        return RawChunk(header_bytes, signature, payload)

    def _read(self, name: str, limit: int) -> bytes:
        try:
            with self._archive.open(name) as member:
                data = member.read(limit + 1)
        except KeyError:
            raise EvidenceFormatError(f"the evidence has no member {name}") from None
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
            raise EvidenceFormatError(f"evidence member {name} is unreadable: {exc}") from exc
        if len(data) > limit:
            raise EvidenceFormatError(f"evidence member {name} is over {limit} bytes")
        return data


# ---------------------------------------------------------------------------------------------
# JSON parts


def _item_json(item: EvidenceItem) -> dict[str, object]:
    if isinstance(item, PlanGap):
        return {
            "kind": "gap",
            "start_ns": item.start_ns,
            "end_ns": item.end_ns,
            "declared": item.declared,
        }
    segment = item.segment
    return {
        "kind": "segment",
        "stream": segment.stream,
        "seq": segment.seq,
        "first_packet": segment.first_packet,
        "last_packet": segment.last_packet,
        "start_ns": segment.start_ns,
        "end_ns": segment.end_ns,
        "parameter_sets_added": item.parameter_sets_added,
        "chunk": item.chunk_member,
    }


def _item(value: _Object) -> EvidenceItem:
    kind = value.text("kind")
    if kind == "gap":
        return PlanGap(value.integer("start_ns"), value.integer("end_ns"), value.flag("declared"))
    if kind != "segment":
        raise EvidenceFormatError(f"{value.where}.kind must be 'segment' or 'gap', not {kind!r}")
    chunk_member = value.text("chunk")
    if not chunk_member.startswith("chunks/") or ".." in chunk_member:
        raise EvidenceFormatError(f"{value.where}.chunk must name a member under chunks/")
    segment = PlanSegment(
        value.text("stream"),
        value.integer("seq"),
        value.integer("first_packet"),
        value.integer("last_packet"),
        value.integer("start_ns"),
        value.integer("end_ns"),
    )
    return EvidenceSegment(segment, chunk_member, value.flag("parameter_sets_added"))


def _receipt(value: _Object) -> IngestReceipt:
    try:
        return IngestReceipt(
            value.hex("chunk_hash", 32),
            value.text("site_id"),
            value.integer("received_ns"),
            value.hex("signature", SIGNATURE_BYTES),
        )
    except ValueError as exc:
        raise EvidenceFormatError(f"{value.where}: {exc}") from exc


class _Object:
    """A JSON object read field by field; each wrong field raises with its path."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise EvidenceFormatError(f"{where} must be a JSON object")
        self._value: dict[str, object] = value
        self.where = where

    def names(self) -> list[str]:
        return sorted(self._value)

    def _get(self, name: str) -> object:
        if name not in self._value:
            raise EvidenceFormatError(f"{self.where} has no field {name!r}")
        return self._value[name]

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT_CHARS:
            raise EvidenceFormatError(
                f"{self.where}.{name} must be a string of 1 to {MAX_TEXT_CHARS} characters"
            )
        return value

    def optional_text(self, name: str) -> str | None:
        return None if self._value.get(name) is None else self.text(name)

    def integer(self, name: str) -> int:
        value = self._get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise EvidenceFormatError(f"{self.where}.{name} must be a non-negative integer")
        return value

    def flag(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise EvidenceFormatError(f"{self.where}.{name} must be true or false")
        return value

    def hex(self, name: str, size: int) -> bytes:
        value = self._get(name)
        try:
            data = bytes.fromhex(value) if isinstance(value, str) else None
        except ValueError:
            data = None
        if data is None or len(data) != size:
            raise EvidenceFormatError(f"{self.where}.{name} must be {size} bytes in hex")
        return data

    def optional_hex(self, name: str) -> bytes | None:
        return None if self._value.get(name) is None else self.hex(name, 32)

    def child(self, name: str) -> _Object:
        return _Object(self._get(name), f"{self.where}.{name}")

    def objects(self, name: str) -> list[_Object]:
        value = self._get(name)
        if not isinstance(value, list):
            raise EvidenceFormatError(f"{self.where}.{name} must be a list")
        return [_Object(item, f"{self.where}.{name}[{index}]") for index, item in enumerate(value)]
