"""Exports made at the central on request: the recordings of one or more devices over one
range, written to a folder of exports and downloadable for a day.

Each export lives in a folder of its own, named by a random id, holding one media file per
device with its evidence beside it (each file plays alone and `siteline verify FILE` checks it
alone), and `.export.json`, written last, which records what the export is and whose it is. A
lone device's file is named as the client asked, so the evidence's manifest names the file
the client keeps; with several devices each file has the default name (the device and the
start). A folder without that record is an export still running, or debris of one that
failed or was interrupted.

A device with nothing recorded at the central in the range is skipped, and the export says
so (with the reason); when every device asked for has nothing, there is no export
(`NothingRecorded`). Any other failure on any device fails the whole export, and its folder
is removed.

The work itself is `central.export.exporter.export_range`, blocking, run in a worker thread
against the central's chunk store; chunks there carry the site's own ids (the site's
`remote_site_id`, the device's `remote_device_id`) and are checked against the public key the
central pinned when it added the site. At most `max_running` exports run at once (more are
refused, not queued: each holds a thread and writes files that may be large; the devices of
one export are exported one after the other), and before each new export, exports older than
`keep_s` and debris are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from central.catalog.catalog import Catalog
from central.catalog.records import DeviceRecord
from central.export.chunk_source import ChunkSource
from central.export.errors import ExportError
from central.export.evidence import evidence_path_for
from central.export.export_writer import ExportContainer
from central.export.exporter import export_range
from central.export.ingest_receipt import IngestReceipt
from central.export.quality_plan import HQ_STREAM, LQ_STREAM
from central.receipt_book import ReceiptBook
from shared.api_input import format_instant
from shared.atomic_file import write_atomically
from shared.chunk import SignedChunk
from shared.clock import NS_PER_S, Clock
from shared.store.chunk_meta import ChunkMeta

__all__ = [
    "EXPORT_KEEP_S",
    "MAX_EXPORT_DEVICES",
    "MAX_EXPORT_RANGE_S",
    "MAX_RUNNING_EXPORTS",
    "ExportRequest",
    "ExportService",
    "ExportedFile",
    "ExportsBusy",
    "FinishedExport",
    "NothingRecorded",
    "SkippedDevice",
    "check_file_name",
]

EXPORT_KEEP_S = 24 * 3600
MAX_EXPORT_RANGE_S = 24 * 3600
MAX_EXPORT_DEVICES = 16
MAX_RUNNING_EXPORTS = 2
MAX_FILE_NAME_CHARS = 200
RECORD_NAME = ".export.json"
RECORD_FORMAT = 2  # 1 (no "format" member) recorded a single device's export
_EXPORT_ID = re.compile(r"[0-9a-f]{32}")
_UNSAFE_IN_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


class ExportsBusy(Exception):
    """As many exports as allowed are running; the caller may try again later."""


class NothingRecorded(ExportError):
    """The central holds no video of the device in the range."""


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export, for whom: the same range of 1 to `MAX_EXPORT_DEVICES` devices.
    `file_name` names the media file of a lone device (the default names the device and the
    start); with several devices each file has the default name."""

    device_ids: tuple[str, ...]  # the central's ids
    start_ns: int
    end_ns: int
    container: ExportContainer
    username: str
    file_name: str | None = None

    def __post_init__(self) -> None:
        if not 0 < len(self.device_ids) <= MAX_EXPORT_DEVICES:
            raise ValueError(
                f"an export covers 1 to {MAX_EXPORT_DEVICES} devices, not {len(self.device_ids)}"
            )
        if len(set(self.device_ids)) != len(self.device_ids):
            raise ValueError(f"devices {list(self.device_ids)!r} name a device twice")
        if self.end_ns <= self.start_ns:
            raise ValueError(f"the range [{self.start_ns}, {self.end_ns}) is empty")
        if self.end_ns - self.start_ns > MAX_EXPORT_RANGE_S * NS_PER_S:
            raise ValueError(f"the range is longer than {MAX_EXPORT_RANGE_S} s")
        if self.file_name is not None:
            if len(self.device_ids) > 1:
                raise ValueError("a file name is for an export of one device only")
            if problem := check_file_name(self.file_name):
                raise ValueError(f"file name {self.file_name!r}: {problem}")


@dataclass(frozen=True, slots=True)
class ExportedFile:
    """One device's media file in an export (its evidence is beside it)."""

    device_id: str  # the central's id
    file_name: str
    media_bytes: int
    media_sha256: str  # hex
    evidence_bytes: int
    duration_ns: int

    @property
    def evidence_name(self) -> str:
        return evidence_path_for(Path(self.file_name)).name

    @classmethod
    def from_json(cls, value: object) -> ExportedFile:
        fields = _json_fields(value, "a file")
        return cls(
            device_id=_text(fields, "device_id"),
            file_name=_text(fields, "file_name"),
            media_bytes=_count(fields, "media_bytes"),
            media_sha256=_text(fields, "media_sha256"),
            evidence_bytes=_count(fields, "evidence_bytes"),
            duration_ns=_count(fields, "duration_ns"),
        )


@dataclass(frozen=True, slots=True)
class SkippedDevice:
    """A device asked for that the export has no file of, and why."""

    device_id: str
    reason: str

    @classmethod
    def from_json(cls, value: object) -> SkippedDevice:
        fields = _json_fields(value, "a skipped device")
        return cls(device_id=_text(fields, "device_id"), reason=_text(fields, "reason"))


@dataclass(frozen=True, slots=True)
class FinishedExport:
    """An export on disk, as its record describes it: a file per device exported, in the
    order asked for, and the devices skipped."""

    export_id: str
    username: str
    start_ns: int
    end_ns: int
    container: str
    files: tuple[ExportedFile, ...]
    skipped: tuple[SkippedDevice, ...]
    created_ns: int
    folder: Path

    @property
    def device_ids(self) -> tuple[str, ...]:
        """Every device the export was asked for."""
        return tuple(f.device_id for f in self.files) + tuple(s.device_id for s in self.skipped)

    @property
    def lone_file(self) -> ExportedFile | None:
        """The file of an export asked for one device; None for an export of several."""
        return self.files[0] if len(self.device_ids) == 1 else None

    def file_of(self, device_id: str) -> ExportedFile | None:
        return next((f for f in self.files if f.device_id == device_id), None)

    def media_path(self, file: ExportedFile) -> Path:
        return self.folder / file.file_name

    def evidence_path(self, file: ExportedFile) -> Path:
        return self.folder / file.evidence_name

    def record_json(self) -> bytes:
        fields = asdict(self)
        del fields["folder"]
        return json.dumps({"format": RECORD_FORMAT, **fields}, indent=1).encode()

    @classmethod
    def from_record(cls, folder: Path, data: bytes) -> FinishedExport:
        """The export a record describes; ValueError when it is malformed, or of a format
        this central does not read (exports last a day, so records of the single-device
        format an older central wrote are not read: they are deleted as debris)."""
        fields = _json_fields(json.loads(data), "the record")
        if fields.get("format") != RECORD_FORMAT:
            raise ValueError(f"the record's format is not {RECORD_FORMAT}")
        return cls(
            export_id=_text(fields, "export_id"),
            username=_text(fields, "username"),
            start_ns=_count(fields, "start_ns"),
            end_ns=_count(fields, "end_ns"),
            container=_text(fields, "container"),
            files=tuple(ExportedFile.from_json(f) for f in _list(fields, "files")),
            skipped=tuple(SkippedDevice.from_json(s) for s in _list(fields, "skipped")),
            created_ns=_count(fields, "created_ns"),
            folder=folder,
        )

    def problem(self) -> str | None:
        """None if the export may be served from its folder, else what is wrong with it."""
        if not self.files:
            return "it has no file"
        if len(set(self.device_ids)) != len(self.device_ids):
            return "it names a device twice"
        names = [f.file_name for f in self.files] + [f.evidence_name for f in self.files]
        if len(set(names)) != len(names):
            return "two of its files have one name"
        for file in self.files:
            if problem := check_file_name(file.file_name):
                return f"file name {file.file_name!r}: {problem}"
        return None


def _json_fields(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


def _text(fields: dict[str, object], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a string")
    return value


def _count(fields: dict[str, object], name: str) -> int:
    value = fields.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} is not a whole number of at least 0")
    return value


def _list(fields: dict[str, object], name: str) -> list[object]:
    value = fields.get(name)
    if not isinstance(value, list):
        raise ValueError(f"{name} is not a list")
    return value


def check_file_name(name: str) -> str | None:
    """None if `name` may name an export's media file, else what is wrong with it."""
    if not 0 < len(name) <= MAX_FILE_NAME_CHARS:
        return f"must be 1 to {MAX_FILE_NAME_CHARS} characters"
    if not _is_unicode(name):
        return "must be Unicode text (it holds a lone surrogate)"
    if _UNSAFE_IN_NAME.search(name):
        return "must be a plain file name: no slashes, backslashes or control characters"
    if name in (".", "..", RECORD_NAME):
        return f"{name!r} cannot name a file"
    return None


class _ClosableSource:
    """The chunk source as exports read it: closed before the store is, so that no export
    thread still running reads a closed store (it fails with `ExportError` instead)."""

    def __init__(self, source: ChunkSource) -> None:
        self._source = source
        self._condition = threading.Condition()
        self._reads = 0
        self._closed = False

    def chunk_metas(
        self, device_id: str, stream: str, start_ns: int, end_ns: int, *, site_id: str
    ) -> Sequence[ChunkMeta]:
        with self._reading():
            return self._source.chunk_metas(device_id, stream, start_ns, end_ns, site_id=site_id)

    def read_chunk(
        self, device_id: str, stream: str, seq: int, *, site_id: str
    ) -> SignedChunk | None:
        with self._reading():
            return self._source.read_chunk(device_id, stream, seq, site_id=site_id)

    def close(self) -> None:
        """Wait for the reads in progress; none starts after (blocking)."""
        with self._condition:
            self._closed = True
            self._condition.wait_for(lambda: self._reads == 0)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        with self._condition:
            if self._closed:
                raise ExportError("the central is stopping; the export was abandoned")
            self._reads += 1
        try:
            yield
        finally:
            with self._condition:
                self._reads -= 1
                self._condition.notify_all()


@dataclass(frozen=True, slots=True)
class _ExportedDevice:
    """A device to export, with its site's own id and the key its chunks are checked with."""

    record: DeviceRecord
    remote_site_id: str
    site_public_key: bytes


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ExportService:
    """See the module docstring."""

    def __init__(
        self,
        catalog: Catalog,
        source: ChunkSource,
        folder: Path,
        *,
        clock: Clock,
        keep_s: float = EXPORT_KEEP_S,
        max_running: int = MAX_RUNNING_EXPORTS,
        receipts: ReceiptBook | None = None,
        central_public_key: bytes | None = None,
    ) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, not {max_running}")
        self._catalog = catalog
        self._source = _ClosableSource(source)
        self._folder = folder
        self._clock = clock
        self._keep_ns = round(keep_s * NS_PER_S)
        self._max_running = max_running
        self._receipts = receipts
        self._central_public_key = central_public_key
        self._active = 0  # exports whose worker thread has not finished (event loop only)
        self._lock = threading.Lock()  # folder scans against exports starting
        self._running: set[str] = set()  # ids whose folders are being written (under _lock)

    def _receipts_for(
        self, site_id: str, device_id: str, start_ns: int, end_ns: int
    ) -> list[IngestReceipt]:
        """The central's receipts for the chunks of the range (the exporter keeps those of
        the chunks it uses)."""
        if self._receipts is None:
            return []
        hashes = [
            meta.chunk_hash
            for stream in (LQ_STREAM, HQ_STREAM)
            for meta in self._source.chunk_metas(
                device_id, stream, start_ns, end_ns, site_id=site_id
            )
        ]
        return self._receipts.receipts(hashes)

    @property
    def folder(self) -> Path:
        return self._folder

    async def export(self, request: ExportRequest) -> FinishedExport:
        """Make the export `request` asks for.

        Raises `NotFound` for an unknown device, `ExportsBusy` when `max_running` exports are
        running, `NothingRecorded` when the central holds no video of any of the devices in
        the range (those of some are skipped), and `ExportError` when the export of any
        device cannot be made otherwise.
        """
        if self._active >= self._max_running:
            raise ExportsBusy(
                f"{self._active} exports are running, the most this central makes at once; "
                "try again when one has finished"
            )
        self._active += 1
        work = asyncio.ensure_future(asyncio.to_thread(self._export, request))
        # Counted until the thread ends, even when the request that started it goes away.
        work.add_done_callback(self._finished)
        return await asyncio.shield(work)

    def _finished(self, _: asyncio.Future[FinishedExport]) -> None:
        self._active -= 1

    async def close(self) -> None:
        """Stop reading the chunk store: call before closing it. Exports still running fail."""
        await asyncio.to_thread(self._source.close)

    async def finished(self, export_id: str) -> FinishedExport | None:
        """The finished, unexpired export with this id, or None."""
        if not _EXPORT_ID.fullmatch(export_id):
            return None
        export = await asyncio.to_thread(self._read_record, self._folder / export_id)
        if export is None or self._expired(export):
            return None
        return export

    def remove_expired(self) -> int:
        """Delete exports older than `keep_s` and the debris of failed ones; how many were
        deleted (blocking)."""
        with self._lock:
            if not self._folder.is_dir():
                return 0
            removed = 0
            for entry in sorted(self._folder.iterdir()):
                if entry.name in self._running or not entry.is_dir():
                    continue
                export = self._read_record(entry)
                if export is None or self._expired(export):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
            return removed

    # -- inside (worker thread) ------------------------------------------------------------

    def _export(self, request: ExportRequest) -> FinishedExport:
        start_ns, end_ns = request.start_ns, request.end_ns
        # Every device is looked up before anything is written: an unknown one fails the
        # export with nothing made.
        devices = [self._exported_device(device_id) for device_id in request.device_ids]
        recorded = [d for d in devices if self._has_video(d, start_ns, end_ns)]
        skipped = tuple(
            SkippedDevice(d.record.device_id, _nothing_recorded(d.record, start_ns, end_ns))
            for d in devices
            if d not in recorded
        )
        if not recorded:
            raise NothingRecorded(_nothing_recorded_by_any(skipped))
        if request.file_name is not None:
            names = [request.file_name]
        else:
            names = _default_file_names([d.record for d in recorded], start_ns, request.container)
        self.remove_expired()
        export_id = secrets.token_hex(16)
        folder = self._folder / export_id
        with self._lock:
            self._running.add(export_id)
        try:
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            folder.mkdir(mode=0o700)  # recordings: not for every local account to read
            files = tuple(
                self._export_device(device, request, folder / name)
                for device, name in zip(recorded, names, strict=True)
            )
            export = FinishedExport(
                export_id=export_id,
                username=request.username,
                start_ns=start_ns,
                end_ns=end_ns,
                container=request.container.value,
                files=files,
                skipped=skipped,
                created_ns=self._clock.now_ns(),
                folder=folder,
            )
            write_atomically(folder / RECORD_NAME, export.record_json(), mode=0o640)
            return export
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            with self._lock:
                self._running.discard(export_id)

    def _exported_device(self, device_id: str) -> _ExportedDevice:
        """The device and what its chunks are checked with; `NotFound` for an unknown one,
        `ExportError` when its site was never reached."""
        device = self._catalog.device(device_id)
        site = self._catalog.site(device.site_id)
        if site.remote_site_id is None or site.public_key is None:
            raise ExportError(
                f"site {site.site_id} ({site.name!r}) of device {device.device_id} was never "
                "reached, so the central holds nothing of it"
            )
        return _ExportedDevice(device, site.remote_site_id, site.public_key)

    def _export_device(
        self, device: _ExportedDevice, request: ExportRequest, media_path: Path
    ) -> ExportedFile:
        remote_device_id = device.record.remote_device_id
        summary = export_range(
            self._source,
            {device.remote_site_id: device.site_public_key},
            device.remote_site_id,
            remote_device_id,
            request.start_ns,
            request.end_ns,
            media_path,
            request.container,
            clock=self._clock,
            device_name=device.record.name,
            receipts=self._receipts_for(
                device.remote_site_id, remote_device_id, request.start_ns, request.end_ns
            ),
            central_public_key=self._central_public_key,
        )
        return ExportedFile(
            device_id=device.record.device_id,
            file_name=media_path.name,
            media_bytes=summary.media_bytes,
            media_sha256=summary.media_sha256.hex(),
            evidence_bytes=summary.evidence_path.stat().st_size,
            duration_ns=summary.duration_ns,
        )

    def _has_video(self, device: _ExportedDevice, start_ns: int, end_ns: int) -> bool:
        return any(
            self._source.chunk_metas(
                device.record.remote_device_id,
                stream,
                start_ns,
                end_ns,
                site_id=device.remote_site_id,
            )
            for stream in (LQ_STREAM, HQ_STREAM)
        )

    def _expired(self, export: FinishedExport) -> bool:
        return self._clock.now_ns() - export.created_ns >= self._keep_ns

    @staticmethod
    def _read_record(folder: Path) -> FinishedExport | None:
        try:
            export = FinishedExport.from_record(folder, (folder / RECORD_NAME).read_bytes())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if export.export_id != folder.name or export.problem() is not None:
            return None
        return export


def _nothing_recorded(device: DeviceRecord, start_ns: int, end_ns: int) -> str:
    return (
        f"device {device.device_id} ({device.name!r}): the central holds no video of it from "
        f"{format_instant(start_ns)} to {format_instant(end_ns)}. A recording kept only at "
        "the site must be retrieved to the central before it can be exported (this device's "
        f"recording setting is {device.recording!r})"
    )


def _nothing_recorded_by_any(skipped: Sequence[SkippedDevice]) -> str:
    if len(skipped) == 1:
        return skipped[0].reason
    return f"none of the {len(skipped)} devices has video at the central in the range: " + (
        "; ".join(s.reason for s in skipped)
    )


def _default_file_names(
    devices: Sequence[DeviceRecord], start_ns: int, container: ExportContainer
) -> list[str]:
    """`<device>-<start>.<container>` for each device, unique within the export (two ids
    that differ only in characters a file name replaces get a number)."""
    instant = format_instant(start_ns).replace(":", "").replace("-", "")
    names: list[str] = []
    for device in devices:
        stem = re.sub(r"[^A-Za-z0-9._-]", "-", device.device_id)
        name = f"{stem}-{instant}.{container.value}"
        number = 1
        while name in names:
            number += 1
            name = f"{stem}-{instant}-{number}.{container.value}"
        names.append(name)
    return names
